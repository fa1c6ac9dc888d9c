"""Carlini-Wagner L2 (S&P 2017): Adam in tanh space, binary search over the trade-off constant `c`.

Minimises ``||x' - x||^2 + c * max(z_y - max_{j != y} z_j, -kappa)`` over ``x' = (tanh(w) + 1) / 2`` (always in
the box), for a per-sample `c` that a binary search adjusts: smaller after a success, larger (x10 until an upper
bound exists) after a failure. It keeps the smallest successful perturbation found over all steps and searches.
CW-L2 is a minimal-perturbation attack: with ``eps=None`` it returns that point (or the clean input where it
failed); with an `eps` the result is projected onto the eps-ball (foolbox semantics), and `sweep` runs it once
for all epsilons. Adam is written out per element so EOT gradients (k draws) plug in unchanged.
"""

from __future__ import annotations

from typing import Unpack

import torch
from torch import Tensor

from gradguard.attacks.base import Attack, AttackOptions, Model, _bshape
from gradguard.losses import get_loss
from gradguard.threat import normalize_norm

__all__ = ["CWL2"]


class CWL2(Attack):
    """``CWL2(c=1e-2, kappa=0, steps=100, lr=0.01, binary_steps=5, eps=None)``."""

    name = "cw-l2"
    minimal = True
    per_sample_eps = True  # only the final projection reads it

    def __init__(
        self,
        *,
        eps: float | Tensor | None = None,
        c: float = 1e-2,
        kappa: float = 0.0,
        steps: int = 100,
        lr: float = 0.01,
        binary_steps: int = 5,
        abort_early: bool = True,
        norm: str = "l2",
        **options: Unpack[AttackOptions],
    ) -> None:
        if normalize_norm(norm) != "l2":
            raise ValueError("CWL2 works in the L2 norm only (use CWLinf for L-inf)")
        super().__init__(eps=eps, norm="l2", **options)
        if steps < 1 or binary_steps < 1 or c <= 0 or kappa < 0:
            raise ValueError(
                f"need steps >= 1, binary_steps >= 1, c > 0, kappa >= 0; got {steps}, {binary_steps}, {c}, {kappa}"
            )
        self.c = float(c)
        self.kappa = float(kappa)
        self.steps = int(steps)
        self.lr = float(lr)
        self.binary_steps = int(binary_steps)
        self.abort_early = bool(abort_early)

    def _perturb(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        n = x.shape[0]
        dev, dt = x.device, x.dtype
        # cw loss = min(max_other - z_y, kappa) (maximised); the CW objective term is f = -loss.
        loss_fn = get_loss("cw", targeted=self.targeted, kappa=self.kappa)
        lt = target if self.targeted else None
        w0 = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        c = torch.full((n,), self.c, device=dev, dtype=dt)
        lo = torch.zeros(n, device=dev, dtype=dt)
        hi = torch.full((n,), float("inf"), device=dev, dtype=dt)
        best_d2 = torch.full((n,), float("inf"), device=dev, dtype=dt)
        best_x = x.clone()
        beta1, beta2, tiny = 0.9, 0.999, 1e-8
        check_every = max(self.steps // 10, 1)
        for _ in range(self.binary_steps):
            w = w0.clone()
            m = torch.zeros_like(w)
            v = torch.zeros_like(w)
            found = torch.zeros(n, dtype=torch.bool, device=dev)
            prev = float("inf")
            for step in range(1, self.steps + 1):
                t = torch.tanh(w)
                xa = (t + 1) / 2
                grad_l, loss, sc = self._grad(model, xa, y, loss_fn, lt)
                diff = xa - x
                d2 = diff.flatten(1).square().sum(1)
                # Success of the current point: misclassified with the required confidence.
                ok = self._success(sc, y, target) & (loss >= self.kappa - 1e-6 if self.kappa > 0 else True)
                better = ok & (d2 < best_d2)
                best_d2 = torch.where(better, d2, best_d2)
                best_x = torch.where(_bshape(better, x), xa, best_x)
                found |= ok
                # d/dxa of d2 + c * f  with f = -loss;  dxa/dw = (1 - t^2) / 2.
                g = (2 * diff - _bshape(c, x) * grad_l) * (1 - t * t) / 2
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                m_hat = m / (1 - beta1**step)
                v_hat = v / (1 - beta2**step)
                w = w - self.lr * m_hat / (v_hat.sqrt() + tiny)
                if self.abort_early and step % check_every == 0:
                    obj = float((d2 - c * loss).sum())
                    if obj > prev * 0.9999:
                        break
                    prev = obj
            # Binary search on c, per sample.
            hi = torch.where(found, torch.minimum(hi, c), hi)
            lo = torch.where(found, lo, torch.maximum(lo, c))
            c = torch.where(torch.isinf(hi), c * 10, (lo + hi) / 2)
        if self.eps is not None:
            best_x = self.threat.project(best_x, x)
        return best_x
