"""The ``standard`` recipe: cross-entropy on clean inputs (the baseline every defence is compared against)."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from gradguard.training.recipe import Recipe, StepContext, StepOutput

__all__ = ["StandardRecipe", "StandardConfig"]


class StandardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label_smoothing: float = Field(0.0, ge=0, lt=1)


class StandardRecipe(Recipe):
    name: ClassVar[str] = "standard"
    Config = StandardConfig

    config: StandardConfig

    def step(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)
        return StepOutput(loss=loss, logits=logits)
