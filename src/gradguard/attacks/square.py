"""Square attack (Andriushchenko et al., ECCV 2020): gradient-free random search, L-inf and L2.

Each iteration proposes a change of one random square window per image (L2: moves mass between two windows) and
keeps it if the margin loss improves. The window side shrinks with the fraction `p` of pixels it covers, which
follows the piecewise-constant schedule of the paper (halving at 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000
iterations out of 10,000, rescaled to `n_queries`). Samples leave the batch once fooled, so queries are only spent
on points that are still robust. It never calls backward, which is the point: if it beats the gradient attacks,
the gradients are lying (masking).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Unpack

import torch
from torch import Tensor

from gradguard.attacks.base import Attack, AttackOptions, Model, _bshape
from gradguard.losses import get_loss

__all__ = ["Square", "p_schedule"]

_CHECKPOINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(it: int, n_queries: int, p_init: float) -> float:
    """Fraction of pixels the square covers at iteration `it` (schedule defined on 10,000 queries, rescaled)."""
    it = int(it / n_queries * 10000)
    halvings = sum(it > c for c in _CHECKPOINTS)
    return p_init / (2**halvings)


def _rect(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Concentric rectangles around the centre with weights 1 / (r + 1)^2, unit L2 norm."""
    d = torch.zeros(h, w, device=device, dtype=dtype)
    ch, cw = h // 2, w // 2
    for r in range(max(ch, cw) + 1):
        d[max(ch - r, 0) : min(ch + r + 1, h), max(cw - r, 0) : min(cw + r + 1, w)] += 1.0 / (r + 1) ** 2
    return d / d.norm().clamp_min(1e-12)


@lru_cache(maxsize=64)
def _eta_pattern(s: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The L2 proposal pattern of the paper: two opposite halves of concentric rectangles, unit norm."""
    if s == 1:
        return torch.ones(1, 1, device=device, dtype=dtype)
    d = torch.cat([_rect(s // 2, s, device, dtype), -_rect(s - s // 2, s, device, dtype)])
    return d / d.norm().clamp_min(1e-12)


def _eta(s: int, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The pattern, transposed with probability 1/2 (drawn from `generator`)."""
    d = _eta_pattern(s, device, dtype)
    if torch.rand((), generator=generator, device=generator.device) > 0.5:
        d = d.t()
    return d


class Square(Attack):
    """``Square(eps=0.3, norm="linf"|"l2", n_queries=5000, p_init=0.8, restarts=1, loss="cw"|"ce")``."""

    name = "square"
    uses_gradients = False

    def __init__(
        self,
        *,
        eps: float,
        norm: str = "linf",
        n_queries: int = 5000,
        p_init: float = 0.8,
        restarts: int = 1,
        loss: str = "cw",
        **options: Unpack[AttackOptions],
    ) -> None:
        super().__init__(eps=eps, norm=norm, **options)
        if n_queries < 1 or restarts < 1 or not 0 < p_init <= 1:
            raise ValueError(
                f"need n_queries >= 1, restarts >= 1, 0 < p_init <= 1; got {n_queries}, {restarts}, {p_init}"
            )
        self.n_queries = int(n_queries)
        self.p_init = float(p_init)
        self.restarts = int(restarts)
        self.loss = loss

    @property
    def steps(self) -> int:
        """Removed alias: a query budget is not a step count, so it has one name, `n_queries`."""
        raise AttributeError("Square has no 'steps' (removed 2026-12-02): its budget is n_queries, "
                             "e.g. Square(eps=0.3, n_queries=5000).n_queries")

    def _perturb(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"Square needs image batches (N, C, H, W), got shape {tuple(x.shape)}")
        loss_fn = get_loss(self.loss, targeted=self.targeted)
        best = self._clean_start(model, x, y, loss_fn, target)
        for _ in range(self.restarts):
            idx = self._to_attack(best.ok)
            if idx.numel() == 0:
                break
            t = None if target is None else target[idx]
            xb, lb, okb = self._run(model, x[idx], y[idx], t, loss_fn)
            # (success, loss) priority, a success never replaced by a failure: one rule with PGD and APGD
            best.merge(idx, xb, lb, okb, first=False)
        return best.x

    def _run(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None, loss_fn) -> tuple[Tensor, Tensor, Tensor]:
        gen, eps = self.gen, self.threat.eps
        n, c, h, w = x.shape
        dev, dt = x.device, x.dtype
        lt = target if self.targeted else None
        if self.norm == "linf":
            signs = torch.randint(0, 2, (n, c, 1, w), generator=gen, device=dev).to(dt) * 2 - 1
            x_best = (x + eps * signs).clamp(0.0, 1.0)  # vertical stripes, as in the paper
        else:
            x_best = self._l2_init(x)
        sc, loss_best = self._scores_loss(model, x_best, y, loss_fn, lt)
        ok = self._success(sc, y, target)
        active = torch.arange(n, device=dev)
        rows_h = torch.arange(h, device=dev)
        rows_w = torch.arange(w, device=dev)
        for it in range(self.n_queries - 1):
            todo = active[~ok[active]]
            if todo.numel() == 0:
                break
            active = todo
            xc, xbc, yc = x[active], x_best[active], y[active]
            tc = None if lt is None else lt[active]
            m = active.numel()
            p = p_schedule(it, self.n_queries, self.p_init)
            if self.norm == "linf":
                s = min(max(int(round(math.sqrt(p * h * w))), 1), h, w)
                vh = torch.randint(0, h - s + 1, (m, 1), generator=gen, device=dev)
                vw = torch.randint(0, w - s + 1, (m, 1), generator=gen, device=dev)
                mask = ((rows_h >= vh) & (rows_h < vh + s)).view(m, 1, h, 1) & (
                    (rows_w >= vw) & (rows_w < vw + s)
                ).view(m, 1, 1, w)
                sg = torch.randint(0, 2, (m, c, 1, 1), generator=gen, device=dev).to(dt) * 2 - 1
                x_new = torch.where(mask, xc + eps * sg, xbc).clamp(0.0, 1.0)
            else:
                x_new = self._l2_proposal(xc, xbc, p)
            sc, loss = self._scores_loss(model, x_new, yc, loss_fn, tc)
            ok_new = self._success(sc, yc, None if target is None else target[active])
            improved = ok_new | (loss > loss_best[active])
            x_best[active] = torch.where(_bshape(improved, x_new), x_new, xbc)
            loss_best[active] = torch.where(improved, loss, loss_best[active])
            ok[active] = ok_new
        return x_best, loss_best, ok

    # ------------------------------------------------------------------------------------------------ L2 parts
    def _l2_init(self, x: Tensor) -> Tensor:
        gen, eps = self.gen, self.threat.eps
        n, c, h, w = x.shape
        delta = torch.zeros_like(x)
        s = max(h // 5, 1)
        start = (h - s * 5) // 2 if h >= 5 else 0
        for i in range(h // s):
            for j in range(w // s):
                vh, vw = start + i * s, start + j * s
                if vh + s > h or vw + s > w:
                    continue
                sg = torch.randint(0, 2, (n, c, 1, 1), generator=gen, device=x.device).to(x.dtype) * 2 - 1
                delta[:, :, vh : vh + s, vw : vw + s] += _eta(s, gen, x.device, x.dtype) * sg
        norm = _bshape(delta.flatten(1).norm(dim=1).clamp_min(1e-12), delta)
        return (x + delta / norm * eps).clamp(0.0, 1.0)

    def _l2_proposal(self, x: Tensor, x_best: Tensor, p: float) -> Tensor:
        gen, eps = self.gen, self.threat.eps
        n, c, h, w = x.shape
        s = max(int(round(math.sqrt(p * h * w))), 3)
        if s % 2 == 0:
            s += 1
        s = min(s, h, w)
        dev = x.device
        vh, vw, vh2, vw2 = (
            int(v) for v in torch.randint(0, max(min(h, w) - s, 0) + 1, (4,), generator=gen, device=dev)
        )
        vh, vw, vh2, vw2 = min(vh, h - s), min(vw, w - s), min(vh2, h - s), min(vw2, w - s)
        delta = x_best - x
        win1 = delta[:, :, vh : vh + s, vw : vw + s]
        norm_win1 = win1.square().sum((-2, -1), keepdim=True).sqrt()
        mask = torch.zeros_like(x[:1])
        mask[:, :, vh : vh + s, vw : vw + s] = 1.0
        mask[:, :, vh2 : vh2 + s, vw2 : vw2 + s] = 1.0
        norm_img = _bshape(delta.flatten(1).norm(dim=1), x)
        norm_windows = _bshape((delta * mask).flatten(1).norm(dim=1), x)
        sg = torch.randint(0, 2, (n, c, 1, 1), generator=gen, device=dev).to(x.dtype) * 2 - 1
        new = _eta(s, gen, dev, x.dtype) * sg + win1 / (norm_win1 + 1e-12)
        budget = ((eps**2 - norm_img**2).clamp_min(0.0) / c + norm_windows**2).sqrt()
        new = new / (new.square().sum((-2, -1), keepdim=True).sqrt() + 1e-12) * budget
        delta = delta.clone()
        delta[:, :, vh2 : vh2 + s, vw2 : vw2 + s] = 0.0
        delta[:, :, vh : vh + s, vw : vw + s] = new
        norm = _bshape(delta.flatten(1).norm(dim=1).clamp_min(1e-12), delta)
        return (x + delta / norm * eps).clamp(0.0, 1.0)
