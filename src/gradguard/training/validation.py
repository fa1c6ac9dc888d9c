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

__all__ = ["build_val_attack", "robust_validate", "val_attack_steps", "VAL_DEFAULT_STEPS"]

VAL_DEFAULT_STEPS = {"apgd-ce": 100, "apgd": 100, "pgd": 10, "fgsm": 1}


def val_attack_steps(kind: str, steps: int | None) -> int:
    """The validation attack's step count: `steps` when set, else the attack's own default."""
    return steps or VAL_DEFAULT_STEPS.get(kind, 1)


def build_val_attack(kind: str, *, eps: float, norm: str, steps: int | None, alpha: float, targets: int,
                     generator: torch.Generator) -> list[Attack]:
    """The validation attacks of `kind` (`[train] val_attack`), run chained: each on the points the ones before left
    robust; empty when there is no attack. "apgd-ce" (the default) is APGD on cross-entropy; "apgd" adds targeted
    APGD with `targets` classes, AutoAttack's first two; "pgd" takes `alpha` (0 = 2.5 * eps / steps)."""
    if kind == "none" or eps <= 0:
        return []
    import gradguard.attacks as attacks

    n = val_attack_steps(kind, steps)
    if kind == "fgsm":
        return [attacks.FGSM(eps=eps, norm=norm)]
    if kind == "pgd":
        return [attacks.PGD(eps=eps, norm=norm, steps=n, alpha=alpha or 2.5 * eps / n, random_start=True,
                            generator=generator)]
    chain: list[Attack] = [attacks.APGD(eps=eps, norm=norm, steps=n, loss="ce", restarts=1, generator=generator)]
    if kind == "apgd":
        chain.append(attacks.APGDT(eps=eps, norm=norm, steps=n, n_target_classes=targets, generator=generator))
    return chain


def _robust_count(model: nn.Module, chain: list[Attack], x: Tensor, y: Tensor) -> float:
    """Points of (x, y) that every attack of the chain leaves correctly classified."""
    with torch.no_grad():
        alive = model(x).argmax(1) == y
    for attack in chain:
        idx = alive.nonzero().flatten()
        if idx.numel() == 0:
            break
        x_adv = attack(model, x[idx], y[idx])
        with torch.no_grad():
            alive[idx] = model(x_adv).argmax(1) == y[idx]
    return float(alive.sum().item())


def robust_validate(model: nn.Module, x: Tensor, y: Tensor, chain: list[Attack], *, batch_size: int,
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
            if chain:
                robust += _robust_count(model, chain, xb, yb)
    n, correct, robust = all_sum([float(stop - start), correct, robust], info)
    out = {"val_clean_acc": correct / max(n, 1)}
    out["val_robust_acc"] = robust / max(n, 1) if chain else out["val_clean_acc"]
    return out
