"""Auto-PGD (Croce & Hein, ICML 2020): PGD with momentum and an automatic step-size schedule.

Step size starts at ``2 * eps`` per sample and is halved at checkpoints (their spacing shrinks from 22% of the
budget by 3% each time, to at least 6%) when either the loss increased in fewer than ``rho = 0.75`` of the steps
since the last checkpoint, or the step was not halved at the last checkpoint and the best loss has not improved
since. When halved, the iterate restarts from the best point found so far. The update mixes the projected
gradient step with the previous displacement (momentum 0.75, none on the first step).

APGD-T (targeted DLR) runs APGD once per target class (the 2nd .. 10th most likely classes of the clean input)
on the points that are still robust; it succeeds on any misclassification, like the reference.
"""

from __future__ import annotations

from typing import Unpack

import torch
from torch import Tensor

from gradguard.attacks.base import Attack, AttackOptions, Model, _Best, _bshape
from gradguard.losses import LossFn, get_loss

__all__ = ["APGD", "APGDT"]


class APGD(Attack):
    """``APGD(eps=8/255, norm="linf", steps=100, restarts=1, loss="ce"|"dlr"|"cw", rho=0.75, momentum=0.75)``.

    With ``targeted=True`` the targeted form of `loss` is used and a `target` must be passed. `early_stop`
    (default: on when ``eot == 1``) drops fooled samples from the batch; every per-sample quantity (step size,
    best point, loss history) is compacted with them, so the schedule of the remaining samples is unchanged.
    """

    name = "apgd"
    per_sample_eps = True

    def __init__(
        self,
        *,
        eps: float | Tensor,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        momentum: float = 0.75,
        early_stop: bool | None = None,
        **options: Unpack[AttackOptions],
    ) -> None:
        super().__init__(eps=eps, norm=norm, **options)
        if steps < 1 or restarts < 1:
            raise ValueError(f"steps and restarts must be >= 1, got steps={steps}, restarts={restarts}")
        self.steps = int(steps)
        self.restarts = int(restarts)
        self.loss = loss
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.early_stop = (self.eot == 1) if early_stop is None else bool(early_stop)

    def _perturb(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        loss_fn = get_loss(self.loss, targeted=self.targeted)
        lt = target if self.targeted else None
        best = self._clean_start(model, x, y, loss_fn, target)
        for _ in range(self.restarts):
            if not self._run(model, x, y, loss_fn, lt, target, best):
                break
        return best.x

    # -------------------------------------------------------------------------------------------- one run
    def _run(
        self,
        model: Model,
        x: Tensor,
        y: Tensor,
        loss_fn: LossFn,
        loss_target: Tensor | None,
        user_target: Tensor | None,
        best: _Best,
        idx: Tensor | None = None,
    ) -> bool:
        """One APGD run on the still-robust points (or `idx`); merges into `best`. False if none was left."""
        if idx is None:
            idx = self._to_attack(best.ok)
        if idx.numel() == 0:
            return False
        ball = self.threat.subset(idx)  # the radii of the rows attacked, compacted with them
        first = self.early_stop
        T = self.steps
        k = max(int(0.22 * T), 1)
        size_decr, k_min = max(int(0.03 * T), 1), max(int(0.06 * T), 1)

        x0, y0 = x[idx], y[idx]
        lt = None if loss_target is None else loss_target[idx]
        st = None if user_target is None else user_target[idx]
        xa = ball.random_init(x0, self.gen)
        grad, loss, sc = self._grad(model, xa, y0, loss_fn, lt)
        ok = self._success(sc, y0, st)
        n = idx.numel()
        # Per-sample state; everything below has the batch on dim 0 so it can be compacted together.
        s = {
            "idx": idx, "x0": x0, "y0": y0, "xa": xa, "x_old": xa.clone(), "grad": grad,
            "x_best": xa.clone(), "grad_best": grad.clone(), "loss_best": loss.clone(),
            "step": 2.0 * ball.radii(x0),
            "hist": torch.zeros(n, T + 1, device=x.device, dtype=x.dtype),
            "loss_last": loss.clone(), "reduced_last": torch.ones(n, dtype=torch.bool, device=x.device),
            # result of this run: priority (success, loss)
            "rx": xa.clone(), "rl": loss.clone(), "rok": ok.clone(),
        }  # fmt: skip
        if lt is not None:
            s["lt"] = lt
        if st is not None:
            s["st"] = st
        s["hist"][:, 0] = loss
        counter = 0
        for i in range(T):
            if first and bool(s["rok"].any()):
                done = s["rok"]
                best.merge(s["idx"][done], s["rx"][done], s["rl"][done], s["rok"][done], True)
                keep = ~done
                if not bool(keep.any()):
                    return True
                s = {key: v[keep] for key, v in s.items()}
                ball = ball.subset(keep)
            xa, x0 = s["xa"], s["x0"]
            a = self.momentum if i > 0 else 1.0
            step = _bshape(s["step"], xa)
            z = ball.project(ball.step(xa, s["grad"], step), x0)
            x_new = ball.project(xa + a * (z - xa) + (1.0 - a) * (xa - s["x_old"]), x0)
            s["x_old"], s["xa"] = xa, x_new
            grad, loss, sc = self._grad(model, x_new, s["y0"], loss_fn, s.get("lt"))
            ok = self._success(sc, s["y0"], s.get("st"))
            s["grad"] = grad
            s["hist"][:, i + 1] = loss
            upd = _Best.better(ok, loss, s["rok"], s["rl"], first)
            s["rx"] = torch.where(_bshape(upd, x_new), x_new, s["rx"])
            s["rl"] = torch.where(upd, loss, s["rl"])
            s["rok"] = s["rok"] | ok
            impr = loss > s["loss_best"]
            s["x_best"] = torch.where(_bshape(impr, x_new), x_new, s["x_best"])
            s["grad_best"] = torch.where(_bshape(impr, grad), grad, s["grad_best"])
            s["loss_best"] = torch.where(impr, loss, s["loss_best"])
            counter += 1
            if counter == k:
                h = s["hist"]
                increases = (h[:, i + 2 - k : i + 2] > h[:, i + 1 - k : i + 1]).sum(1)
                oscillating = increases <= k * self.rho
                stalled = ~s["reduced_last"] & (s["loss_last"] >= s["loss_best"])
                halve = oscillating | stalled
                s["reduced_last"] = halve
                s["loss_last"] = s["loss_best"].clone()
                s["step"] = torch.where(halve, s["step"] / 2, s["step"])
                hb = _bshape(halve, x_new)
                s["xa"] = torch.where(hb, s["x_best"], s["xa"])
                s["grad"] = torch.where(hb, s["grad_best"], s["grad"])
                counter = 0
                k = max(k - size_decr, k_min)
        best.merge(s["idx"], s["rx"], s["rl"], s["rok"], first)
        return True


class APGDT(APGD):
    """Targeted APGD on the targeted DLR loss, over the `n_target_classes` most likely wrong classes.

    Succeeds on any misclassification (the targets are a means of search, not the goal), as in AutoAttack.
    Needs at least 4 classes (the DLR-T denominator uses the 4th largest logit).
    """

    name = "apgd-t"

    def __init__(self, *, eps: float | Tensor, n_target_classes: int = 9, loss: str = "dlr", **kwargs) -> None:
        if kwargs.pop("targeted", False):
            raise ValueError("APGDT picks its own targets; do not pass targeted=True")
        super().__init__(eps=eps, loss=loss, **kwargs)
        self.n_target_classes = int(n_target_classes)

    def _picks_targets(self) -> bool:
        return True

    def _perturb(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if target is not None:
            raise ValueError("APGDT picks its own targets; use APGD(targeted=True) for given targets")
        loss_fn = get_loss(self.loss, targeted=True)
        scores = self._scores(model, x)  # needed for the target ranking whatever the draws
        best = _Best(x)
        if self._trusts_clean_check():
            no_loss = torch.full((x.shape[0],), float("-inf"), device=x.device, dtype=x.dtype)
            best.merge(torch.arange(x.shape[0], device=x.device), x, no_loss, self._success(scores, y, None), True)
        ranked = scores.argsort(dim=1, descending=True)
        n_classes = scores.shape[1]
        for t in range(1, min(self.n_target_classes, n_classes - 1) + 1):
            target_t = ranked[:, t]
            for _ in range(self.restarts):
                if not self._run(model, x, y, loss_fn, target_t, None, best):
                    return best.x
        return best.x
