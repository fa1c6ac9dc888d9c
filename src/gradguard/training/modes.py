"""Which mode (BatchNorm statistics, dropout) adversarial examples are crafted in, as a recipe setting.

Reference implementations differ: Madry/Rice PGD-AT and Wong Fast-AT craft in *train* mode, TRADES in *eval* mode.
`crafting_mode` sets the chosen mode and stops parameter gradients while the attack runs, then restores both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from torch import nn

__all__ = ["crafting_mode", "BNMode"]

BNMode = Literal["train", "eval"]


@contextmanager
def crafting_mode(model: nn.Module, mode: BNMode) -> Iterator[nn.Module]:
    """Put `model` in `mode` with parameter gradients off; restore each module's mode and each flag on exit."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.train(mode == "train")
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)
