"""gradguard: gradient-aware adversarial defences (Self-Gradient Networks, GradDiv) and honest evaluation.

    import gradguard as gg

    model = gg.build_model("smallcnn", "mnist")                    # [0, 1] images in, normalization inside
    x, y = gg.data.load("mnist", "test").subset(range(500)).tensors()
    x_adv = gg.attacks.PGD(eps=0.3, alpha=0.01, steps=40)(model, x, y)
    result = gg.evaluate(model, x, y, attacks="standard", eps=[0.1, 0.3])
    print(result.summary())

Submodules and names load on first use, so `import gradguard` and the command line start quickly.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {
    "attacks", "checkpoint", "config", "data", "evaluation", "gradients", "graddiv", "losses", "models", "report",
    "runner", "threat", "training",
}
_NAMES = {
    "build_model": "gradguard.models",
    "randomize": "gradguard.models",
    "freeze": "gradguard.models",
    "SelfGradientNetwork": "gradguard.models",
    "threat_model": "gradguard.threat",
    "evaluate": "gradguard.evaluation",
    "predict": "gradguard.evaluation",
    "EvalResult": "gradguard.evaluation",
    "train": "gradguard.training",
    "build_recipe": "gradguard.training.recipes",
    "load_config": "gradguard.config",
    "ExperimentConfig": "gradguard.config",
    "load_model": "gradguard.checkpoint",
    "save_model": "gradguard.checkpoint",
    "run_experiment": "gradguard.runner",
    "graddiv_penalty": "gradguard.graddiv",
    "gradient_statistics": "gradguard.graddiv",
    "transfer_matrix": "gradguard.graddiv",
}

__all__ = sorted(_SUBMODULES | set(_NAMES) | {"__version__"})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"gradguard.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'gradguard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
