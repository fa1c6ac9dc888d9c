"""The contract between the training loop and a defence.

A recipe turns one batch into a loss. It never knows about epochs, logging, checkpoints or data loading; the
trainer never knows which defence it runs. Defences that need their own modules (SGN's response modules) or
their own randomness wrap the model in `wrap` and hand the plain network back in `unwrap`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import Tensor, nn

from gradguard.threat import ThreatModel

__all__ = ["Recipe", "StepContext", "StepOutput"]


@dataclass
class StepContext:
    """What a recipe may know about the moment it runs in."""

    threat: ThreatModel  # the training threat model, epsilon already ramped for this step
    generator: torch.Generator  # all of the recipe's randomness comes from here
    step: int  # optimizer steps taken so far
    progress: float  # fraction of training done, in [0, 1]
    n_train: int | None = None  # size of the training set (from the data; None when the caller does not know)


@dataclass
class StepOutput:
    loss: Tensor  # scalar to backpropagate
    logits: Tensor  # logits on which the trainer reports training accuracy
    logs: dict[str, float] = field(default_factory=dict)  # extra scalars for metrics.jsonl


class Recipe:
    """Base class: override `step`; the rest has sensible defaults.

    A recipe with settings names its pydantic model in `Config`; `__init__` keeps a validated instance in
    `self.config` (the defaults when none is given) and `describe` records it.
    """

    name: ClassVar[str] = "base"
    Config: ClassVar[type[BaseModel] | None] = None
    #: optimizer steps per batch (Free-AT replays each batch m times); the trainer calls `step` this many times.
    replays: int = 1

    def __init__(self, config: BaseModel | None = None) -> None:
        if self.Config is not None:
            self.config = config or self.Config()

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the optimizer trains (default: the model itself)."""
        return model

    def unwrap(self, trained: nn.Module) -> nn.Module:
        """The plain network to evaluate and export (default: the trained module itself)."""
        return trained

    def counted(self, trained: nn.Module) -> nn.Module:
        """The module whose forwards are the training cost (default: the plain network from `unwrap`)."""
        return self.unwrap(trained)

    def step(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors the recipe carries between steps (Free-AT's perturbation), for exact resume."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            raise ValueError(f"recipe {self.name!r} carries no state but got keys {sorted(state)}")

    def read_record(self, saved: dict[str, Any]) -> dict[str, Any]:
        """A `describe` record an earlier version wrote (a checkpoint's), spelled as this version spells it, so a
        resume compares like with like; recipes that renamed or added settings map them here (default: as is)."""
        return saved

    def describe(self) -> dict[str, Any]:
        """Settings for the run record: the name and, when the recipe has a `Config`, every setting."""
        config = getattr(self, "config", None)
        return {"name": self.name, **(config.model_dump() if isinstance(config, BaseModel) else {})}
