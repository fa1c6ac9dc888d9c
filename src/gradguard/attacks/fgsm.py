"""FGSM (Goodfellow et al. 2015): one steepest-ascent step of size eps (FGM in L2)."""

from __future__ import annotations

from typing import Unpack

from torch import Tensor

from gradguard.attacks.base import Attack, AttackOptions, Model
from gradguard.losses import get_loss

__all__ = ["FGSM"]


class FGSM(Attack):
    """``FGSM(eps=0.3, norm="linf", loss="ce")``; `eot` averages the one gradient over k draws."""

    name = "fgsm"
    per_sample_eps = True

    def __init__(
        self,
        *,
        eps: float | Tensor,
        norm: str = "linf",
        loss: str = "ce",
        **options: Unpack[AttackOptions],
    ) -> None:
        super().__init__(eps=eps, norm=norm, **options)
        self.loss = loss

    def _perturb(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        threat = self.threat
        loss_fn = get_loss(self.loss, targeted=self.targeted)
        grad, _, _ = self._grad(model, x, y, loss_fn, target if self.targeted else None)
        return threat.project(threat.step(x, grad, threat.radius(x)), x)
