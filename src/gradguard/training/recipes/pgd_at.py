"""The ``pgd_at`` recipe: PGD adversarial training (Madry et al., "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018).

Train on cross-entropy at the PGD point only (every sample attacked for all steps, see `training.craft`).
Published settings: MNIST eps 0.3, 40 steps of 0.01, random start;
CIFAR-10 eps 8/255, 7 steps of 2/255 (Rice et al. 2020 use 10 steps of 2/255). The defaults here are the CIFAR ones,
expressed relative to eps (alpha = eps / 4) so that they follow an epsilon ramp-up; set ``alpha`` for an absolute
step. Attacks are crafted in train mode by default, as in the reference PyTorch code (``bn_mode``).
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from gradguard.training.craft import craft_in_mode
from gradguard.training.modes import BNMode
from gradguard.training.recipe import Recipe, StepContext, StepOutput

__all__ = ["PGDATRecipe", "PGDATConfig"]


class PGDATConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(7, ge=1)
    alpha: float | None = Field(None, gt=0)  # absolute step size; None = alpha_ratio * eps
    alpha_ratio: float = Field(0.25, gt=0)  # 2/255 at 8/255
    random_start: bool = True
    bn_mode: BNMode = "train"  # mode the attack is crafted in


class PGDATRecipe(Recipe):
    name: ClassVar[str] = "pgd_at"
    Config = PGDATConfig

    config: PGDATConfig

    def step(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
        c = self.config
        alpha = c.alpha if c.alpha is not None else c.alpha_ratio * ctx.threat.eps
        return adversarial_ce_step(model, x, y, ctx, steps=c.steps, alpha=alpha, random_start=c.random_start,
                                   bn_mode=c.bn_mode)


def adversarial_ce_step(
    model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext, *, steps: int, alpha: float, random_start: bool,
    bn_mode: BNMode,
) -> StepOutput:
    """Cross-entropy on PGD examples crafted with `steps` steps of size `alpha` (Fast-AT is the one-step case)."""
    x_adv = craft_in_mode(model, x, y, ctx.threat, bn_mode=bn_mode, steps=steps, alpha=alpha,
                          random_start=random_start, generator=ctx.generator)
    logits = model(x_adv)
    return StepOutput(loss=F.cross_entropy(logits, y), logits=logits)
