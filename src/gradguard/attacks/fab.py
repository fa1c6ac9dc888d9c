"""Fast Adaptive Boundary attack (Croce & Hein, ICML 2020): minimal L-inf / L2 perturbations, FAB and FAB-T.

Each step linearises the decision boundary between the true class `y` and one other class (the target, or for
untargeted FAB the class whose linearised boundary is nearest), and projects onto that hyperplane *within the
[0, 1] box* twice: from the current iterate and from the clean input. The step mixes the two projections, biased
towards the clean input by ``alpha = min(|d_k| / (|d_k| + |d_0|), alpha_max)``, and overshoots by ``eta``. When
the iterate is adversarial it is recorded (if closer than the best so far) and pulled back towards the clean input
by ``beta``. The result is the closest adversarial point found.

FAB-T (`FABT`) runs targeted FAB once per target class (the 2nd .. 10th most likely classes of the clean input) on
the points still robust, and succeeds on any misclassification, as AutoAttack's ``fab-t``. With an `eps`, a point
counts as broken only when its adversarial lies in the eps-ball, and the returned point is projected onto the ball
(CW-L2's foolbox semantics); with ``eps=None`` it is the minimal perturbation found. Written from the paper and a
reading of ``fra31/auto-attack`` ``fab_pt.py`` / ``fab_projections.py``; the box-constrained projections below are
derived afresh (one sort and a cumulative sum per point).
"""

from __future__ import annotations

from typing import Any, Unpack

import torch
from torch import Tensor

from gradguard.attacks.base import Attack, AttackOptions, Model, _Best, _bshape
from gradguard.threat import threat_model

__all__ = ["FAB", "FABT", "project_to_hyperplane"]


def project_to_hyperplane(t: Tensor, w: Tensor, b: Tensor, norm: str) -> Tensor:
    """The smallest `d` (in `norm`) with ``<w, t + d> = b`` and ``t + d`` in [0, 1]; rows of flat (N, D) tensors.

    Moving coordinate i by m_i >= 0 in the direction sign(w_i) gains |w_i| m_i towards the plane and has room
    cap_i (to the box face). The minimiser has m_i = min(s v_i, cap_i) for one scalar s >= 0, with v_i = 1 for
    L-inf (every coordinate moves by the same amount until it hits the box) and v_i = |w_i| for L2 (the KKT
    condition d ~ w, clipped to the box). The gain is piecewise linear and increasing in s, so sorting the
    breakpoints cap_i / v_i finds s exactly. When the plane is out of the box's reach, the box corner that gets
    closest is returned.
    """
    gap = b - (w * t).sum(1)  # signed distance still to cover, in units of <w, .>
    direction = w.sign() * gap.sign().unsqueeze(1)  # move each coordinate this way
    a = w.abs()
    cap = torch.where(direction > 0, 1.0 - t, t)  # room to the box face in that direction
    v = torch.ones_like(a) if norm == "linf" else a
    need = gap.abs().unsqueeze(1)
    brk = torch.where(v > 0, cap / v.clamp_min(1e-30), torch.full_like(cap, float("inf")))
    brk, order = brk.sort(dim=1)
    a_s, v_s, cap_s = a.gather(1, order), v.gather(1, order), cap.gather(1, order)
    saturated = torch.cumsum(a_s * cap_s, 1)  # gain of the coordinates already at their box face
    slope_used = torch.cumsum(a_s * v_s, 1)
    slope_total = slope_used[:, -1:]
    finite = torch.isfinite(brk)
    gain_at_brk = saturated + torch.where(finite, brk, 0.0) * (slope_total - slope_used)
    # k = number of breakpoints passed before the gain reaches `need` (only finite breakpoints count)
    k = ((gain_at_brk < need) & finite).sum(1, keepdim=True)
    zero = torch.zeros_like(need)
    sat_before = torch.where(k > 0, saturated.gather(1, (k - 1).clamp_min(0)), zero)
    slope_before = torch.where(k > 0, slope_used.gather(1, (k - 1).clamp_min(0)), zero)
    s = (need - sat_before) / (slope_total - slope_before).clamp_min(1e-30)
    reachable = k < finite.sum(1, keepdim=True)
    s = torch.where(reachable, s, torch.full_like(s, torch.finfo(s.dtype).max))
    move = torch.minimum(s * v, cap)
    return direction * move


def _lp(d: Tensor, norm: str) -> Tensor:
    """Per-sample norm of flat rows."""
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


def _dual(g: Tensor, norm: str) -> Tensor:
    """Per-sample dual norm of flat rows (L1 for L-inf, L2 for L2)."""
    return g.abs().sum(1) if norm == "linf" else g.norm(dim=1)


def _logit_gap(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """z_target - z_y: positive once `target` beats the true class. Its zero set is the boundary FAB(-T)
    linearises."""
    assert target is not None
    return logits.gather(1, target.view(-1, 1)).squeeze(1) - logits.gather(1, y.view(-1, 1)).squeeze(1)


def _target_margin(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """z_target - max_{j != target} z_j: positive once `target` is the prediction. A user-targeted FAB linearises
    the boundary to the strongest rival, which is `y` at the start but need not stay so."""
    assert target is not None
    rival = logits.scatter(1, target.view(-1, 1), float("-inf")).amax(1)
    return logits.gather(1, target.view(-1, 1)).squeeze(1) - rival


class FAB(Attack):
    """``FAB(eps=None, norm="linf"|"l2", steps=100, restarts=1, alpha_max=0.1, eta=1.05, beta=0.9)``.

    Untargeted by default (each step linearises the boundary to every other class, one gradient each, and takes
    the nearest); ``targeted=True`` with a `target` per sample aims at that class (linearising the boundary to
    its strongest rival) and succeeds only when the prediction is the target. `final_search` bisection steps
    (forward passes only, default 0 as in AutoAttack) move each found adversarial point towards the clean input
    while it stays adversarial. `eps`: see the module docstring.
    """

    name = "fab"
    minimal = True

    def __init__(
        self,
        *,
        eps: float | None = None,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        final_search: int = 0,
        **options: Unpack[AttackOptions],
    ) -> None:
        super().__init__(eps=eps, norm=norm, **options)
        if steps < 1 or restarts < 1 or final_search < 0:
            raise ValueError(f"need steps >= 1, restarts >= 1, final_search >= 0; got {steps}, {restarts}, "
                             f"{final_search}")
        if not 0.0 <= alpha_max <= 1.0 or eta <= 0 or not 0.0 < beta <= 1.0:
            raise ValueError(f"need 0 <= alpha_max <= 1, eta > 0, 0 < beta <= 1; got {alpha_max}, {eta}, {beta}")
        self.steps = int(steps)
        self.restarts = int(restarts)
        self.alpha_max = float(alpha_max)
        self.eta = float(eta)
        self.beta = float(beta)
        self.final_search = int(final_search)

    @property
    def lp(self) -> str:
        """The canonical norm name ("linf" or "l2"), whichever spelling `norm` was given in."""
        return threat_model(self.norm, 0.0).norm

    # --------------------------------------------------------------------------------------------- driver
    def _perturb(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        best = self._clean_best(model, x, y, target)
        self._search(model, x, y, target, best)
        if self.final_search:
            self._bisect(model, x, y, target, best)
        return best.x if self.eps is None else self.threat.project(best.x, x)

    def _search(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None, best: _Best) -> None:
        """Every (plane target, restart) run on the points not yet done, in AutoAttack's order."""
        for plane_target in self._plane_targets(model, x, target):
            for restart in range(self.restarts):
                idx = self._to_attack(self._done(best))
                if idx.numel() == 0:
                    return
                t = None if plane_target is None else plane_target[idx]
                st = None if target is None else target[idx]
                start = x[idx] if restart == 0 else self._random_start(x[idx], -best.loss[idx])
                self._run(model, x[idx], y[idx], t, st, start, best, idx)

    def _plane_targets(self, model: Model, x: Tensor, target: Tensor | None) -> list[Tensor | None]:
        """The classes whose boundary each run linearises: the given target, or None (nearest of all)."""
        return [target] if self.targeted else [None]

    def _clean_best(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> _Best:
        """Best points ranked by (success, -distance); a clean point already fooled is kept at distance 0 when the
        clean check is trusted (one draw)."""
        best = _Best(x)
        if self._trusts_clean_check():
            ok = self._success(self._scores(model, x), y, target)
            best.merge(torch.arange(x.shape[0], device=x.device), x, torch.zeros_like(best.loss), ok, first=False)
        return best

    def _done(self, best: _Best) -> Tensor:
        """Points that need no more work: fooled within eps (any fooled point counts when eps is None, only at
        distance 0, i.e. fooled before the attack)."""
        limit = 0.0 if self.eps is None else self.eps
        return best.ok & (-best.loss <= limit + 1e-7)

    def _random_start(self, x0: Tensor, best_dist: Tensor) -> Tensor:
        """A restart's start: a random point at half of min(eps, best distance so far), in the box (AutoAttack)."""
        radius = best_dist if self.eps is None else best_dist.clamp(max=self.eps)
        radius = torch.where(torch.isfinite(radius), radius, torch.zeros_like(radius)) * 0.5
        if self.lp == "linf":
            r = 2 * torch.rand(x0.shape, generator=self.gen, device=x0.device, dtype=x0.dtype) - 1
        else:
            r = torch.randn(x0.shape, generator=self.gen, device=x0.device, dtype=x0.dtype)
        r = r / _bshape(_lp(r.flatten(1), self.lp).clamp_min(1e-12), r)
        return (x0 + r * _bshape(radius, x0)).clamp(0.0, 1.0)

    # -------------------------------------------------------------------------------------------- one run
    def _run(
        self,
        model: Model,
        x0: Tensor,
        y0: Tensor,
        plane_target: Tensor | None,
        user_target: Tensor | None,
        start: Tensor,
        best: _Best,
        idx: Tensor,
    ) -> None:
        """`steps` FAB iterations from `start` on the points `idx`; closer successes are merged into `best`.

        With an eps and one draw, a point leaves the batch once it is fooled inside the ball (AutoAttack keeps
        iterating to shrink it further, which cannot change the verdict at this eps)."""
        xk = start
        leave = self.eps is not None and self._trusts_clean_check()
        for _ in range(self.steps):
            w, f = self._hyperplane(model, xk, y0, plane_target)
            xk = self._step(xk, x0, w, f)
            ok = self._success(self._scores(model, xk), y0, user_target)
            dist = _lp((xk - x0).flatten(1), self.lp)
            best.merge(idx[ok], xk[ok], -dist[ok], ok[ok], first=False)
            xk = torch.where(_bshape(ok, xk), x0 + self.beta * (xk - x0), xk)  # back towards the clean input
            if leave:
                keep = ~self._done(best)[idx]
                if not bool(keep.all()):
                    if not bool(keep.any()):
                        return
                    xk, x0, y0, idx = xk[keep], x0[keep], y0[keep], idx[keep]
                    plane_target = None if plane_target is None else plane_target[keep]
                    user_target = None if user_target is None else user_target[keep]

    def _hyperplane(self, model: Model, xk: Tensor, y: Tensor, plane_target: Tensor | None) -> tuple[Tensor, Tensor]:
        """(w, f): the boundary to the chosen class, linearised at `xk` as ``f + <w, z - xk> = 0`` (flat rows).

        Targeted: one gradient of z_t - z_y. Untargeted: one per other class, keeping the class whose linearised
        boundary is nearest in this norm (|f_j| / ||w_j||_dual)."""
        if plane_target is not None:
            gap = _target_margin if self.targeted else _logit_gap  # FAB-T: the y-vs-target plane, as AutoAttack
            g, f = self._grad(model, xk, y, gap, plane_target)[:2]
            return g.flatten(1), f
        n = y.shape[0]
        best_dist = torch.full((n,), float("inf"), device=xk.device, dtype=xk.dtype)
        w = torch.zeros(n, xk[0].numel(), device=xk.device, dtype=xk.dtype)
        f = torch.zeros(n, device=xk.device, dtype=xk.dtype)
        j, n_classes = 0, 1  # the class count is read off the first call's scores
        while j < n_classes:
            g, fj, scores = self._grad(model, xk, y, _logit_gap, torch.full_like(y, j))
            n_classes = scores.shape[1]
            g = g.flatten(1)
            dist = fj.abs() / (_dual(g, self.lp) + 1e-12)
            closer = (dist < best_dist) & (y != j)
            best_dist = torch.where(closer, dist, best_dist)
            w = torch.where(closer.unsqueeze(1), g, w)
            f = torch.where(closer, fj, f)
            j += 1
        return w, f

    def _step(self, xk: Tensor, x0: Tensor, w: Tensor, f: Tensor) -> Tensor:
        """Project the iterate and the clean input onto the plane (in the box); mix, biased to the clean input."""
        n = xk.shape[0]
        xk_flat, x0_flat = xk.flatten(1), x0.flatten(1)
        b = (w * xk_flat).sum(1) - f  # the plane is <w, z> = b
        d = project_to_hyperplane(torch.cat([xk_flat, x0_flat]), torch.cat([w, w]), torch.cat([b, b]), self.lp)
        d_k, d_0 = d[:n], d[n:]
        size_k = _lp(d_k, self.lp).clamp_min(1e-8)
        size_0 = _lp(d_0, self.lp).clamp_min(1e-8)
        alpha = (size_k / (size_k + size_0)).clamp(0.0, self.alpha_max).unsqueeze(1)
        mixed = (xk_flat + self.eta * d_k) * (1 - alpha) + (x0_flat + self.eta * d_0) * alpha
        return mixed.clamp(0.0, 1.0).view_as(xk)

    # ------------------------------------------------------------------------------------------ final search
    def _bisect(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None, best: _Best) -> None:
        """Shrink every found adversarial point towards the clean input by bisection on the segment between
        them, keeping the closest point that is still adversarial (forward passes only)."""
        idx = (best.ok & (-best.loss > 0)).nonzero().squeeze(1)
        if idx.numel() == 0:
            return
        x0, delta = x[idx], best.x[idx] - x[idx]
        st = None if target is None else target[idx]
        lo = torch.zeros(idx.numel(), device=x.device, dtype=x.dtype)
        hi = torch.ones_like(lo)
        for _ in range(self.final_search):
            mid = (lo + hi) / 2
            ok = self._success(self._scores(model, x0 + _bshape(mid, x0) * delta), y[idx], st)
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
        x_new = x0 + _bshape(hi, x0) * delta
        best.merge(idx, x_new, -_lp((x_new - x0).flatten(1), self.lp), torch.ones_like(hi, dtype=torch.bool), False)


class FABT(FAB):
    """FAB-T as in AutoAttack: targeted FAB over the `n_target_classes` (default 9) most likely wrong classes of
    the clean prediction, on the points still robust; succeeds on any misclassification."""

    name = "fab-t"

    def __init__(self, *, eps: float | None = None, n_target_classes: int = 9, **kwargs: Any) -> None:
        if kwargs.pop("targeted", False):
            raise ValueError("FABT picks its own targets; use FAB(targeted=True) for given targets")
        super().__init__(eps=eps, **kwargs)
        if n_target_classes < 1:
            raise ValueError(f"n_target_classes must be >= 1, got {n_target_classes}")
        self.n_target_classes = int(n_target_classes)

    def _picks_targets(self) -> bool:
        return True

    def _perturb(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if target is not None:
            raise ValueError("FABT picks its own targets; use FAB(targeted=True) for given targets")
        return super()._perturb(model, x, y, None)

    def _plane_targets(self, model: Model, x: Tensor, target: Tensor | None) -> list[Tensor | None]:
        ranked = self._scores(model, x).argsort(dim=1, descending=True)
        last = min(self.n_target_classes, ranked.shape[1] - 1)
        return [ranked[:, t] for t in range(1, last + 1)]
