"""Finite-weights checks: a NaN or inf in the weights is caught at the step that made it, not at export.

The loss check alone misses the last update of a run (its loss was finite; the step after it is not), so the trainer
checks the parameters after every optimizer step, before every checkpoint and before the model is exported.
One `isfinite` per tensor and a single host sync: about 1% of a SmallCNN/MNIST training step on one CPU thread
(`benchmarks/integrity_cost.py`, docs/training.md "Reliability").
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["all_finite", "first_non_finite"]


def all_finite(tensors: Iterable[Tensor]) -> bool:
    """True when every floating-point tensor holds only finite values (one device-to-host sync)."""
    flags = [torch.isfinite(t.detach()).all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def first_non_finite(named: Iterable[tuple[str, Tensor]]) -> tuple[str, int] | None:
    """(name, count of non-finite values) of the first tensor that has any, for the error message; else None."""
    for name, t in named:
        if t.is_floating_point():
            bad = int((~torch.isfinite(t.detach())).sum())
            if bad:
                return name, bad
    return None
