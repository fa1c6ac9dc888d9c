"""The ``n_fgsm`` recipe: N-FGSM (de Jorge et al., "Make Some Noise: Reliable and Efficient Single-Step Adversarial
Training", NeurIPS 2022), the strongest known one-step baseline.

Noise from a ball *larger* than the threat model (radius ``noise_ratio`` x eps, 2 by default), one signed step of
``alpha_ratio`` x eps (1 by default) from there, and no projection back onto the eps ball (only onto the image box):
the training points may lie up to 3 eps away. The authors show this avoids catastrophic overfitting without the
clipping, early stopping or extra passes that other one-step methods need. Two passes per batch, as Fast-AT.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from gradguard.gradients import input_gradient
from gradguard.threat import threat_model
from gradguard.training.modes import CraftingSettings, crafting_mode
from gradguard.training.recipe import Recipe, StepContext, StepOutput

__all__ = ["NFGSMRecipe", "NFGSMConfig"]


class NFGSMConfig(CraftingSettings):
    noise_ratio: float = Field(2.0, ge=0)
    """Noise radius as a multiple of eps (k = 2 eps in the paper)."""
    alpha_ratio: float = Field(1.0, gt=0)
    """Step size as a multiple of eps (alpha = eps in the paper)."""
    clip: bool = False
    """Project the result onto the eps ball (the paper's point is not to)."""


class NFGSMRecipe(Recipe):
    name: ClassVar[str] = "n_fgsm"
    Config = NFGSMConfig

    config: NFGSMConfig

    def craft(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> Tensor:
        c, threat = self.config, ctx.threat
        if threat.eps <= 0:
            return x
        radius = c.noise_ratio * threat.eps
        noise_ball = threat_model(threat.norm, min(radius, 1.0) if threat.norm == "linf" else radius)
        x_noisy = noise_ball.random_init(x, ctx.generator) if c.noise_ratio > 0 else x
        with crafting_mode(model, c.craft_mode):
            grad = input_gradient(model, x_noisy, y, "ce")[0]
        x_adv = threat.step(x_noisy, grad, c.alpha_ratio * threat.eps)
        x_adv = threat.project(x_adv, x) if c.clip else x_adv.clamp(0.0, 1.0)
        return x_adv.detach()

    def step(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
        logits = model(self.craft(model, x, y, ctx))
        return StepOutput(loss=F.cross_entropy(logits, y), logits=logits)
