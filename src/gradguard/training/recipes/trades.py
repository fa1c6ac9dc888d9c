"""The ``trades`` recipe: TRADES (Zhang et al., "Theoretically Principled Trade-off between Robustness and
Accuracy", ICML 2019).

Loss = CE(f(x), y) + beta * KL(f(x) || f(x')), where x' maximizes the same KL inside the ball, starting from
x + 0.001 * N(0, 1). Published settings: beta = 6; CIFAR-10 eps 0.031, 10 steps of 0.007; MNIST eps 0.3, 40 steps
of 0.01. The step here is ``step_ratio * eps`` (0.007 / 0.031) unless ``step_size`` is set. The inner maximization is
not a PGD-on-labels attack (its target is the clean prediction, not y), so it is the short loop below rather than
`gradguard.attacks.PGD`; it takes gradients with respect to the input only and crafts in eval mode as the
reference code does.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from gradguard.training.modes import CraftingSettings, crafting_mode
from gradguard.training.recipe import Recipe, StepContext, StepOutput

__all__ = ["TRADESRecipe", "TRADESConfig"]


class TRADESConfig(CraftingSettings):
    beta: float = Field(6.0, ge=0)
    steps: int = Field(10, ge=1)
    step_size: float | None = Field(None, gt=0)  # absolute; None = step_ratio * eps
    step_ratio: float = Field(0.007 / 0.031, gt=0)
    init_std: float = Field(0.001, ge=0)


class TRADESRecipe(Recipe):
    name: ClassVar[str] = "trades"
    Config = TRADESConfig

    config: TRADESConfig

    def _craft(self, model: nn.Module, x: Tensor, ctx: StepContext) -> Tensor:
        c, threat = self.config, ctx.threat
        alpha = c.step_size if c.step_size is not None else c.step_ratio * threat.eps
        with crafting_mode(model, c.craft_mode):
            with torch.no_grad():
                p_clean = F.softmax(model(x), dim=1)
            noise = torch.randn(x.shape, generator=ctx.generator, device=x.device, dtype=x.dtype)
            x_adv = threat.project(x + c.init_std * noise, x)
            for _ in range(c.steps):
                x_adv = x_adv.detach().requires_grad_(True)
                with torch.enable_grad():
                    kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")
                    (grad,) = torch.autograd.grad(kl, x_adv)
                x_adv = threat.project(threat.step(x_adv.detach(), grad, alpha), x)
        return x_adv.detach()

    def step(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
        x_adv = self._craft(model, x, ctx) if ctx.threat.eps > 0 else x
        logits = model(x)
        logits_adv = model(x_adv)
        natural = F.cross_entropy(logits, y)
        robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="batchmean")
        loss = natural + self.config.beta * robust
        with torch.no_grad():
            adv_acc = (logits_adv.argmax(1) == y).float().mean().item()
        return StepOutput(loss=loss, logits=logits,
                          logs={"natural_loss": natural.item(), "kl": robust.item(), "adv_acc": adv_acc})
