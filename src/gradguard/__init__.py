"""gradguard: gradient-aware adversarial defences (Self-Gradient Networks, GradDiv) and honest evaluation.

    import gradguard as gg

    model = gg.build_model("smallcnn", "mnist")                    # [0, 1] images in, normalization inside
    x, y = gg.data.load("mnist", "test").subset(range(500)).tensors()
    x_adv = gg.attacks.PGD(eps=0.3, alpha=0.01, steps=40)(model, x, y)
    result = gg.evaluate(model, x, y, attacks="standard", eps=[0.1, 0.3])
    print(result.summary())

Submodules and names load on first use, so `import gradguard` and the command line start quickly (about 0.05 s
against 5-9 s for importing them all, most of it torch). Type checkers read the same names from the imports under
`TYPE_CHECKING` below, which mirror the lazy table (a test keeps the two in step).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradguard import attacks as attacks
    from gradguard import checkpoint as checkpoint
    from gradguard import config as config
    from gradguard import data as data
    from gradguard import evaluation as evaluation
    from gradguard import graddiv as graddiv
    from gradguard import gradients as gradients
    from gradguard import losses as losses
    from gradguard import models as models
    from gradguard import report as report
    from gradguard import runner as runner
    from gradguard import threat as threat
    from gradguard import training as training
    from gradguard.checkpoint import load_model as load_model
    from gradguard.checkpoint import save_model as save_model
    from gradguard.config import ExperimentConfig as ExperimentConfig
    from gradguard.config import load_config as load_config
    from gradguard.evaluation import EvalResult as EvalResult
    from gradguard.evaluation import evaluate as evaluate
    from gradguard.evaluation.predict import predict as predict
    from gradguard.graddiv import graddiv_penalty as graddiv_penalty
    from gradguard.graddiv import gradient_statistics as gradient_statistics
    from gradguard.graddiv import transfer_matrix as transfer_matrix
    from gradguard.models import SelfGradientNetwork as SelfGradientNetwork
    from gradguard.models import build_model as build_model
    from gradguard.models import freeze as freeze
    from gradguard.models import randomize as randomize
    from gradguard.runner import run_experiment as run_experiment
    from gradguard.threat import threat_model as threat_model
    from gradguard.training import train as train
    from gradguard.training.recipes import build_recipe as build_recipe

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
    "predict": "gradguard.evaluation.predict",
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
