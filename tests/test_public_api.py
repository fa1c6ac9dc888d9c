"""`import gradguard as gg` gives the user models, attacks, recipes and evaluation under stable names."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gradguard as gg


@pytest.mark.parametrize("name", sorted(set(gg.__all__) - {"__version__"}))
def test_every_public_name_resolves(name):
    assert getattr(gg, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        gg.no_such_thing  # noqa: B018


def test_import_is_light():
    """The CLI starts fast: importing gradguard must not import torch-heavy submodules eagerly."""
    code = "import sys, gradguard; print(any(m.startswith('gradguard.attacks') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_cli_help_lists_every_subcommand(capsys):
    from gradguard.cli import SUBCOMMANDS, main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in text


def test_type_checkers_see_every_lazy_name():
    """The imports under TYPE_CHECKING mirror the lazy table, so `gg.build_model` is typed, not Any."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(gg.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    seen = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name} must be re-exported as itself"
            seen[alias.name] = node.module
    expected = {name: "gradguard" for name in gg._SUBMODULES} | dict(gg._NAMES)
    assert seen == expected
