"""Projected gradient descent (Madry et al. 2018) in the L-inf or L2 ball, and CW-L-inf (PGD on the CW margin).

Best point per sample: the first point found that is misclassified (or, without early stopping, the misclassified
point of highest loss), else the point of highest loss over all steps and restarts. Only points that are still
robust are attacked further: restarts run on the survivors, and with early stopping a sample leaves the batch as
soon as it is fooled, so a defended point costs the full budget but a fooled one stops costing anything.
"""

from __future__ import annotations

from typing import Unpack

import torch
from torch import Tensor

from gradguard.attacks.base import Attack, AttackOptions, Model, _Best, _bshape
from gradguard.losses import get_loss
from gradguard.threat import ThreatModel

__all__ = ["PGD", "CWLinf"]


class PGD(Attack):
    """PGD: ``PGD(eps=0.3, alpha=0.01, steps=40, norm="linf", random_start=True, restarts=1)``.

    `alpha` defaults to ``2.5 * eps / steps``. `loss` is "ce", "cw" or "dlr" (or a callable
    ``f(logits, y, target)``); with ``targeted=True`` its targeted form is used and a `target` must be passed at
    call time. `early_stop` (default: on when ``eot == 1``) drops fooled samples from the batch; with EOT the
    success check is itself noisy, so by default the attack keeps pushing the loss up instead.
    """

    name = "pgd"
    per_sample_eps = True

    def __init__(
        self,
        *,
        eps: float | Tensor,
        norm: str = "linf",
        steps: int = 40,
        alpha: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        loss: str = "ce",
        kappa: float | None = None,
        early_stop: bool | None = None,
        **options: Unpack[AttackOptions],
    ) -> None:
        super().__init__(eps=eps, norm=norm, **options)
        if steps < 1 or restarts < 1:
            raise ValueError(f"steps and restarts must be >= 1, got steps={steps}, restarts={restarts}")
        self.steps = int(steps)
        self.alpha = alpha
        self.random_start = bool(random_start)
        self.restarts = int(restarts)
        self.loss = loss
        self.kappa = kappa
        self.early_stop = (self.eot == 1) if early_stop is None else bool(early_stop)

    def _loss_fn(self):
        settings = {} if self.kappa is None else {"kappa": float(self.kappa)}
        return get_loss(self.loss, targeted=self.targeted, **settings)

    def _step_size(self, ball: ThreatModel, x: Tensor) -> float | Tensor:
        """`alpha`, or 2.5 * eps / steps of each row of `x` (`ball` holds the batch's radii)."""
        return 2.5 * ball.radius(x) / self.steps if self.alpha is None else float(self.alpha)

    def _perturb(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        threat = self.threat
        loss_fn = self._loss_fn()
        first = self.early_stop
        best = self._clean_start(model, x, y, loss_fn, target)
        for r in range(self.restarts):
            idx = self._to_attack(best.ok)
            if idx.numel() == 0:
                break
            x0, y0 = x[idx], y[idx]
            t0 = None if target is None else target[idx]
            ball = threat.subset(idx)  # the radii of the rows attacked, compacted with them
            xa = ball.random_init(x0, self.gen) if (self.random_start or r > 0) else x0.clone()
            # Local state of the active rows: best point, its loss and success flag.
            bx, bl = xa.clone(), torch.full((idx.numel(),), float("-inf"), device=x.device, dtype=x.dtype)
            bok = torch.zeros(idx.numel(), dtype=torch.bool, device=x.device)
            for step in range(self.steps + 1):
                lt = t0 if self.targeted else None
                if step < self.steps:
                    grad, loss, sc = self._grad(model, xa, y0, loss_fn, lt)
                else:
                    sc, loss = self._scores_loss(model, xa, y0, loss_fn, lt)
                ok = self._success(sc, y0, t0)
                upd = _Best.better(ok, loss, bok, bl, first)
                bx = torch.where(_bshape(upd, bx), xa, bx)
                bl = torch.where(upd, loss, bl)
                bok = bok | ok
                if step == self.steps:
                    break
                if first and bool(bok.any()):
                    best.merge(idx[bok], bx[bok], bl[bok], bok[bok], first)
                    keep = ~bok
                    if not bool(keep.any()):
                        break
                    idx, x0, y0, xa, grad = idx[keep], x0[keep], y0[keep], xa[keep], grad[keep]
                    t0 = None if t0 is None else t0[keep]
                    bx, bl, bok = bx[keep], bl[keep], bok[keep]
                    ball = ball.subset(keep)
                xa = ball.project(ball.step(xa, grad, self._step_size(ball, xa)), x0)
            best.merge(idx, bx, bl, bok, first)
        return best.x


class CWLinf(PGD):
    """CW-L-inf: PGD in the L-inf ball on the Carlini-Wagner margin loss, capped at confidence `kappa`."""

    name = "cw-linf"

    def __init__(self, *, eps: float | Tensor, kappa: float = float("inf"), **kwargs) -> None:
        kwargs.setdefault("norm", "linf")
        if kwargs.pop("loss", "cw") != "cw":
            raise ValueError("CWLinf always uses the cw loss")
        super().__init__(eps=eps, loss="cw", kappa=kappa, **kwargs)
