"""Which mode (BatchNorm statistics, dropout) adversarial examples are crafted in, as one recipe setting.

Every recipe crafts in *eval* mode by default: dropout off, BatchNorm running statistics used and left unchanged.
Crafting with dropout on attacks a different, randomly thinned network at every step, not the one being trained,
and gives weaker examples.
A recipe whose authors crafted in train mode (the reference PyTorch code of Madry/Rice PGD-AT and Wong Fast-AT) can
ask for it by name: ``craft_mode = "train"``. The old spelling ``bn_mode`` is still accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from torch import nn

from gradguard.module_state import eval_mode

__all__ = ["crafting_mode", "CraftMode", "BNMode", "CraftingSettings", "mode_only"]

CraftMode = Literal["eval", "train"]
BNMode = CraftMode  # the earlier name of the same setting


class CraftingSettings(BaseModel):
    """The crafting-mode setting every adversarial recipe shares (one place, one default)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    craft_mode: CraftMode = Field("eval", validation_alias=AliasChoices("craft_mode", "bn_mode"))
    """Mode the training attack runs in: "eval" (dropout off, BatchNorm statistics frozen) or "train"."""


@contextmanager
def crafting_mode(model: nn.Module, mode: CraftMode) -> Iterator[nn.Module]:
    """Put `model` in `mode` with parameter gradients off; restore each module's mode and each flag on exit."""
    with eval_mode(model):  # records and restores every module's mode and parameter flag, freezes parameters
        if mode == "train":
            model.train()
        yield model


@contextmanager
def mode_only(model: nn.Module, mode: CraftMode) -> Iterator[nn.Module]:
    """Put `model` in `mode` with parameter gradients left on (a pass that both crafts and trains, as SGN's tap
    pass does); restore each module's mode on exit."""
    with eval_mode(model, freeze=False):
        if mode == "train":
            model.train()
        yield model
