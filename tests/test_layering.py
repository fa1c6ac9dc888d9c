"""Dependencies point one way, down: importing a low layer never loads a higher one (checked in a fresh process)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest


def _loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('gradguard')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize(
    ("module", "must_not_load"),
    [
        ("gradguard.module_state", ("gradguard.attacks", "gradguard.gradients", "gradguard.models")),
        ("gradguard.layout", ("gradguard.attacks", "gradguard.gradients", "gradguard.models")),
        ("gradguard.attacks", ("gradguard.models", "gradguard.data", "gradguard.training", "gradguard.evaluation")),
        ("gradguard.training.modes", ("gradguard.attacks",)),
        ("gradguard.graddiv", ("gradguard.attacks",)),
        ("gradguard.config", ("gradguard.training", "gradguard.attacks", "gradguard.models")),
        ("gradguard.specs", ("gradguard.data", "gradguard.models")),
        ("gradguard.models", ("gradguard.data", "gradguard.attacks", "gradguard.training")),
    ],
)
def test_import_does_not_reach_up(module, must_not_load):
    loaded = _loaded_after_import(module)
    reached = sorted(m for m in loaded if m.startswith(must_not_load))
    assert not reached, f"importing {module} loaded {reached}"


def test_eval_mode_keeps_its_old_homes():
    import gradguard.attacks
    import gradguard.attacks.base
    import gradguard.gradients
    from gradguard.module_state import Model, eval_mode

    assert gradguard.attacks.eval_mode is eval_mode
    assert gradguard.attacks.base.eval_mode is eval_mode
    assert gradguard.gradients.Model is Model


def test_specs_keep_their_old_home():
    import gradguard.data
    import gradguard.data.specs
    import gradguard.specs

    assert gradguard.data.specs.get_spec is gradguard.specs.get_spec
    assert gradguard.data.SPECS is gradguard.specs.SPECS


def _imported_modules(module: str) -> set[str]:
    """Every module named by an import statement in `module`'s own source (lazy imports included)."""
    import gradguard

    path = Path(gradguard.__file__).parent.joinpath(*module.split(".")[1:]).with_suffix(".py")
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("module", ["gradguard.training.optim", "gradguard.training.validation"])
def test_training_helpers_take_values_not_the_config(module):
    assert not {m for m in _imported_modules(module) if m.startswith("gradguard.config")}
