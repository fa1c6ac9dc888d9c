"""Robust validation on a fixed held-out subset: clean and attacked accuracy, sharded over ranks.

The attack's randomness comes from a Generator re-seeded identically at every validation, and the global RNG is
forked around it, so validating never changes the training trajectory (a run with more validations trains the same
weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from gradguard.module_state import eval_mode
from gradguard.training.distributed import DistInfo, all_sum, shard

if TYPE_CHECKING:
    from gradguard.attacks import Attack

__all__ = ["build_val_attack", "robust_validate"]


def build_val_attack(kind: str, *, eps: float, norm: str, steps: int, alpha: float,
                     generator: torch.Generator) -> Attack | None:
    """The validation attack `kind` ("pgd", "fgsm" or "none"; `[train] val_attack`), or None when there is none.

    `alpha` 0 means 2.5 * eps / steps.
    """
    if kind == "none" or eps <= 0:
        return None
    import gradguard.attacks as attacks

    if kind == "fgsm":
        return attacks.FGSM(eps=eps, norm=norm)
    alpha = alpha or 2.5 * eps / steps
    return attacks.PGD(eps=eps, norm=norm, steps=steps, alpha=alpha, random_start=True, generator=generator)


def robust_validate(model: nn.Module, x: Tensor, y: Tensor, attack: Attack | None, *, batch_size: int,
                    info: DistInfo) -> dict[str, float]:
    """Clean and robust accuracy of `model` (eval mode) on (x, y); each rank does its shard, counts are summed.

    Without an attack the robust accuracy is the clean one.
    """
    start, stop = shard(x, info)
    xs, ys = x[start:stop], y[start:stop]
    correct = robust = 0.0
    devices = [info.device] if info.device.type == "cuda" else []
    with eval_mode(model, freeze=False), torch.random.fork_rng(devices=devices):
        for i in range(0, xs.shape[0], batch_size):
            xb = xs[i: i + batch_size].to(info.device)
            yb = ys[i: i + batch_size].to(info.device)
            with torch.no_grad():
                correct += (model(xb).argmax(1) == yb).sum().item()
            if attack is None:
                continue
            x_adv = attack(model, xb, yb)
            with torch.no_grad():
                robust += (model(x_adv).argmax(1) == yb).sum().item()
    n, correct, robust = all_sum([float(stop - start), correct, robust], info)
    out = {"val_clean_acc": correct / max(n, 1)}
    out["val_robust_acc"] = robust / max(n, 1) if attack is not None else out["val_clean_acc"]
    return out
