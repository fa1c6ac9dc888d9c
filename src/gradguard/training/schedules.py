"""Learning-rate schedules as pure functions of the optimizer step, stepped every iteration.

A schedule is a multiplier of the base lr computed from (step, total steps); it carries no state, so resuming only
needs the step count, and the lr at any step is reproducible from the config alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["lr_factor", "SCHEDULES"]

SCHEDULES = ("constant", "piecewise", "cosine", "onecycle")


def lr_factor(
    schedule: str,
    step: int,
    total_steps: int,
    *,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
    warmup_steps: int = 0,
    onecycle_peak: float = 0.4,
) -> float:
    """Multiplier of the base lr at optimizer step `step` (0-based) of `total_steps`.

    piecewise: times `gamma` at each milestone (fractions of training; Madry/Rice: 0.5, 0.75);
    cosine: half-cosine from 1 to 0; onecycle: linear 0 -> 1 at `onecycle_peak`, then linear to 0 (Wong et al.'s
    cyclic schedule for Fast-AT); warm-up: linear from 0 over `warmup_steps`, multiplied in for any schedule.
    """
    total = max(1, int(total_steps))
    t = min(max(step, 0), total) / total
    if schedule == "constant":
        f = 1.0
    elif schedule == "piecewise":
        f = gamma ** sum(1 for m in milestones if t >= m)
    elif schedule == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * t))
    elif schedule == "onecycle":
        f = t / onecycle_peak if t < onecycle_peak else max(0.0, (1.0 - t) / (1.0 - onecycle_peak))
    else:
        raise ValueError(f"unknown schedule {schedule!r}: expected one of {SCHEDULES}")
    if warmup_steps > 0 and step < warmup_steps:
        f *= (step + 1) / warmup_steps
    return f
