"""Robust validation on a fixed held-out subset: clean and attacked accuracy, sharded over ranks.

The attack's randomness comes from a Generator re-seeded identically at every validation, and the global RNG is
forked around it, so validating never changes the training trajectory (a run with more validations trains the same
weights).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from gradguard.attacks import eval_mode
from gradguard.config import TrainConfig
from gradguard.training.distributed import DistInfo, all_sum, shard

__all__ = ["build_val_attack", "robust_validate", "val_attack_steps"]


VAL_DEFAULT_STEPS = {"apgd-ce": 100, "apgd": 100, "pgd": 10, "fgsm": 1}


def val_attack_steps(cfg: TrainConfig) -> int:
    """The validation attack's step count: the configured one, else the attack's own default."""
    return cfg.val_attack_steps or VAL_DEFAULT_STEPS.get(cfg.val_attack, 1)


def build_val_attack(cfg: TrainConfig, eps: float, generator: torch.Generator) -> list[Callable[..., Tensor]]:
    """The configured validation attacks, run chained (each on the points the previous ones left robust); empty
    when there is no attack. APGD-CE by default; "apgd" adds targeted APGD, as AutoAttack's first two attacks."""
    if cfg.val_attack == "none" or eps <= 0:
        return []
    import gradguard.attacks as attacks

    steps = val_attack_steps(cfg)
    if cfg.val_attack == "fgsm":
        return [attacks.FGSM(eps=eps, norm=cfg.norm)]
    if cfg.val_attack == "pgd":
        alpha = cfg.val_attack_alpha or 2.5 * eps / steps
        return [attacks.PGD(eps=eps, norm=cfg.norm, steps=steps, alpha=alpha, random_start=True,
                            generator=generator)]
    chain: list[Callable[..., Tensor]] = [
        attacks.APGD(eps=eps, norm=cfg.norm, steps=steps, loss="ce", restarts=1, generator=generator)]
    if cfg.val_attack == "apgd":
        chain.append(attacks.APGDT(eps=eps, norm=cfg.norm, steps=steps, n_target_classes=cfg.val_attack_targets,
                                   generator=generator))
    return chain


def _robust_count(model: nn.Module, chain: list[Callable[..., Tensor]], x: Tensor, y: Tensor) -> float:
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


def robust_validate(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, *, eps: float,
                    generator: torch.Generator, info: DistInfo) -> dict[str, float]:
    """Clean and robust accuracy of `model` (eval mode) on (x, y); each rank does its shard, counts are summed."""
    start, stop = shard(x, info)
    xs, ys = x[start:stop], y[start:stop]
    correct = robust = 0.0
    devices = [info.device] if info.device.type == "cuda" else []
    with eval_mode(model, freeze=False), torch.random.fork_rng(devices=devices):
        chain = build_val_attack(cfg, eps, generator)
        for i in range(0, xs.shape[0], cfg.val_batch_size):
            xb = xs[i: i + cfg.val_batch_size].to(info.device)
            yb = ys[i: i + cfg.val_batch_size].to(info.device)
            with torch.no_grad():
                correct += (model(xb).argmax(1) == yb).sum().item()
            if chain:
                robust += _robust_count(model, chain, xb, yb)
    n, correct, robust = all_sum([float(stop - start), correct, robust], info)
    out = {"val_clean_acc": correct / max(n, 1)}
    out["val_robust_acc"] = robust / max(n, 1) if cfg.val_attack != "none" and eps > 0 else out["val_clean_acc"]
    return out
