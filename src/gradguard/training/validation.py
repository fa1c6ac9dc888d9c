"""Robust validation on a fixed held-out subset: clean and attacked accuracy, sharded over ranks.

The attack's randomness comes from a Generator re-seeded identically at every validation, and the global RNG is
forked around it, so validating never changes the training trajectory (a run with more validations trains the same
weights).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradguard.config import TrainConfig
from gradguard.module_state import eval_mode
from gradguard.training.distributed import DistInfo, all_sum, shard

__all__ = ["build_val_attack", "robust_validate"]


def build_val_attack(cfg: TrainConfig, eps: float, generator: torch.Generator):
    """The configured validation attack (PGD by default), or None."""
    if cfg.val_attack == "none" or eps <= 0:
        return None
    import gradguard.attacks as attacks

    if cfg.val_attack == "fgsm":
        return attacks.FGSM(eps=eps, norm=cfg.norm)
    alpha = cfg.val_attack_alpha or 2.5 * eps / cfg.val_attack_steps
    return attacks.PGD(eps=eps, norm=cfg.norm, steps=cfg.val_attack_steps, alpha=alpha, random_start=True,
                       generator=generator)


def robust_validate(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, *, eps: float,
                    generator: torch.Generator, info: DistInfo) -> dict[str, float]:
    """Clean and robust accuracy of `model` (eval mode) on (x, y); each rank does its shard, counts are summed."""
    start, stop = shard(x, info)
    xs, ys = x[start:stop], y[start:stop]
    correct = robust = 0.0
    devices = [info.device] if info.device.type == "cuda" else []
    with eval_mode(model, freeze=False), torch.random.fork_rng(devices=devices):
        attack = build_val_attack(cfg, eps, generator)
        for i in range(0, xs.shape[0], cfg.val_batch_size):
            xb = xs[i: i + cfg.val_batch_size].to(info.device)
            yb = ys[i: i + cfg.val_batch_size].to(info.device)
            with torch.no_grad():
                correct += (model(xb).argmax(1) == yb).sum().item()
            if attack is None:
                continue
            x_adv = attack(model, xb, yb)
            with torch.no_grad():
                robust += (model(x_adv).argmax(1) == yb).sum().item()
    n, correct, robust = all_sum([float(stop - start), correct, robust], info)
    out = {"val_clean_acc": correct / max(n, 1)}
    out["val_robust_acc"] = robust / max(n, 1) if cfg.val_attack != "none" and eps > 0 else out["val_clean_acc"]
    return out
