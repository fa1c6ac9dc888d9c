"""Which mode (BatchNorm statistics, dropout) adversarial examples are crafted in, as a recipe setting.

Reference implementations differ: Madry/Rice PGD-AT and Wong Fast-AT craft in *train* mode, TRADES in *eval* mode.
`crafting_mode` sets the chosen mode and stops parameter gradients while the attack runs, then restores both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from torch import nn

from gradguard.module_state import eval_mode

__all__ = ["crafting_mode", "BNMode"]

BNMode = Literal["train", "eval"]


@contextmanager
def crafting_mode(model: nn.Module, mode: BNMode) -> Iterator[nn.Module]:
    """Put `model` in `mode` with parameter gradients off; restore each module's mode and each flag on exit."""
    with eval_mode(model):  # records and restores every module's mode and parameter flag, freezes parameters
        if mode == "train":
            model.train()
        yield model
