"""Training-time PGD: Madry et al.'s inner maximization, returning the last iterate for *every* sample.

`gradguard.attacks.PGD` is an evaluation attack: it looks for a misclassified point and leaves samples that are
already misclassified at their clean point. Adversarial training needs the loss maximized for every sample (early
in training almost every sample is misclassified, and training on them clean would silently turn PGD-AT into
standard training), so the training recipes use this loop, built on the same threat models and
`gradguard.gradients.input_gradient`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradguard.gradients import input_gradient
from gradguard.threat import ThreatModel
from gradguard.training.modes import CraftMode, crafting_mode

__all__ = ["pgd_maximize", "craft_in_mode"]


def pgd_maximize(model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *, steps: int, alpha: float,
                 random_start: bool, generator: torch.Generator, loss: str = "ce", eot: int = 1) -> Tensor:
    """`steps` signed (linf) or normalized (l2) ascent steps of size `alpha` on `loss`, projected; the final point.

    `eot` > 1 averages each gradient over that many draws of a randomized model (one batched pass)."""
    x = x.detach()
    x_adv = threat.random_init(x, generator) if random_start else x.clone()
    for _ in range(steps):
        grad = input_gradient(model, x_adv, y, loss, eot=eot)[0]
        x_adv = threat.project(threat.step(x_adv, grad, alpha), x)
    return x_adv.detach()


def craft_in_mode(model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *, craft_mode: CraftMode, steps: int,
                  alpha: float, random_start: bool, generator: torch.Generator, eot: int = 1) -> Tensor:
    """`pgd_maximize` under a recipe's crafting mode (`training.modes`): what PGD-AT, Fast-AT, GradDiv and Adv-BNN
    train on. At eps 0 (an eps ramp-up, a warm-up) the clean batch, at no cost."""
    if threat.eps <= 0:
        return x
    with crafting_mode(model, craft_mode):
        return pgd_maximize(model, x, y, threat, steps=steps, alpha=alpha, random_start=random_start,
                            generator=generator, eot=eot)
