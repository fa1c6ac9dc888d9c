"""Optimizers: SGD (momentum, Nesterov, weight decay) and Adam, from the settings `[train]` names (not the config)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["build_optimizer", "set_lr"]


def build_optimizer(params: Iterable[nn.Parameter], *, optimizer: str, lr: float, momentum: float = 0.9,
                    nesterov: bool = False, weight_decay: float = 5e-4,
                    betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """The optimizer over the parameters that require gradients; arguments mirror the `[train]` keys."""
    params = [p for p in params if p.requires_grad]
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                               weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(betas[0], betas[1]), weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {optimizer!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
