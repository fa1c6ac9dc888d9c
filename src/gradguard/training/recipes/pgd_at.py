"""The ``pgd_at`` recipe: PGD adversarial training (Madry et al., "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018).

Train on cross-entropy at the PGD point only (every sample attacked for all steps, see `training.craft`).
Published settings: MNIST eps 0.3, 40 steps of 0.01, random start;
CIFAR-10 eps 8/255, 7 steps of 2/255 (Rice et al. 2020 use 10 steps of 2/255). Step sizes relative to eps follow an
epsilon ramp-up; set ``alpha`` for an absolute
step.

Defaults: ``steps`` 7 and ``alpha = 2.5 * eps / steps`` (Madry et al.'s rule: the steps can travel 2.5 times the
radius), crafted in eval mode (``craft_mode``, see `training.modes`). The published MNIST baseline sets
``steps = 40, alpha = 0.01`` explicitly (configs/mnist-pgd-at.toml); the reference code crafted in train mode, which
differs only for networks with dropout or BatchNorm.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from gradguard.training.craft import craft_in_mode
from gradguard.training.modes import CraftingSettings, CraftMode
from gradguard.training.recipe import Recipe, StepContext, StepOutput

__all__ = ["PGDATRecipe", "PGDATConfig"]


class PGDATConfig(CraftingSettings):
    steps: int = Field(7, ge=1)
    alpha: float | None = Field(None, gt=0)
    """Absolute step size; None = alpha_ratio * eps, or 2.5 * eps / steps when alpha_ratio is None too."""
    alpha_ratio: float | None = Field(None, gt=0)
    random_start: bool = True

    def step_size(self, eps: float) -> float:
        if self.alpha is not None:
            return self.alpha
        if self.alpha_ratio is not None:
            return self.alpha_ratio * eps
        return 2.5 * eps / self.steps


class PGDATRecipe(Recipe):
    name: ClassVar[str] = "pgd_at"
    Config = PGDATConfig

    config: PGDATConfig

    def step(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
        c = self.config
        return adversarial_ce_step(model, x, y, ctx, steps=c.steps, alpha=c.step_size(ctx.threat.eps),
                                   random_start=c.random_start, craft_mode=c.craft_mode)


def adversarial_ce_step(
    model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext, *, steps: int, alpha: float, random_start: bool,
    craft_mode: CraftMode,
) -> StepOutput:
    """Cross-entropy on PGD examples crafted with `steps` steps of size `alpha` (Fast-AT is the one-step case)."""
    x_adv = craft_in_mode(model, x, y, ctx.threat, craft_mode=craft_mode, steps=steps, alpha=alpha,
                          random_start=random_start, generator=ctx.generator)
    logits = model(x_adv)
    return StepOutput(loss=F.cross_entropy(logits, y), logits=logits)
