"""The ``fast_at`` recipe: "Fast is better than free" (Wong, Rice and Kolter, ICLR 2020).

One FGSM step from a uniformly random point of the ball, step size 1.25 eps, then train on the result. Wong et al.
pair it with a one-cycle learning rate (``train.schedule = "onecycle"``) and mixed precision (``train.amp``), and
crafted in train mode (here eval mode by default, ``craft_mode``; the same for networks without dropout or
BatchNorm). The single step is `training.craft.pgd_maximize` with ``steps=1`` and a random start, which is exactly
their algorithm (uniform init, clamp to the image box, one signed step, project).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from torch import Tensor, nn

from gradguard.training.modes import CraftingSettings
from gradguard.training.recipe import Recipe, StepContext, StepOutput
from gradguard.training.recipes.pgd_at import adversarial_ce_step

__all__ = ["FastATRecipe", "FastATConfig"]


class FastATConfig(CraftingSettings):
    alpha_ratio: float = Field(1.25, gt=0)  # FGSM step = alpha_ratio * eps
    random_start: bool = True  # False = plain FGSM from the clean point (the variant that overfits catastrophically)


class FastATRecipe(Recipe):
    name: ClassVar[str] = "fast_at"
    Config = FastATConfig

    config: FastATConfig

    def step(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
        c = self.config
        return adversarial_ce_step(model, x, y, ctx, steps=1, alpha=c.alpha_ratio * ctx.threat.eps,
                                   random_start=c.random_start, craft_mode=c.craft_mode)
