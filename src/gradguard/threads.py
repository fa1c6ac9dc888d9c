"""The one threads policy of training and evaluation: how many torch CPU threads a run or an evaluation uses.

Why a policy at all: the networks gradguard trains and attacks on a CPU are small, and their convolutions gain
little from a second thread while losing many times over when the cores are shared (benchmarks/threads_speed.py,
docs/training.md). So the default is one thread, which also makes a seeded result independent of the machine.

A setting is one of
    N >= 1   exactly N threads,
    0        leave torch's current setting alone,
    "auto"   every core on a quiet machine, fewer as the 1-minute load average rises (never fewer than 1).
It is applied for the duration of a call and restored afterwards (`torch_threads`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

__all__ = ["DEFAULT_THREADS", "ThreadsSetting", "resolve_threads", "auto_threads", "torch_threads",
           "parse_threads"]

ThreadsSetting = int | Literal["auto"]

#: The default of `train.threads`, `eval.threads`, `evaluate(threads=)` and `--threads`.
DEFAULT_THREADS: ThreadsSetting = 1


def auto_threads(cores: int | None = None, load: float | None = None) -> int:
    """The cores left idle by everything else running: `cores - load average`, rounded, between 1 and `cores`."""
    cores = cores or os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # no load average on this platform: assume a quiet machine
            load = 0.0
    return max(1, min(cores, round(cores - load)))


def resolve_threads(setting: ThreadsSetting) -> int | None:
    """The thread count a setting asks for; None for 0 ("leave as is")."""
    if setting == "auto":
        return auto_threads()
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise ValueError(f"threads: expected an integer >= 0 or 'auto', got {setting!r}")
    return setting or None


def parse_threads(text: str) -> ThreadsSetting:
    """`--threads` on the command line: an integer >= 0 or 'auto' (argparse `type=`)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 or 'auto', got {text!r}")
    return value


@contextmanager
def torch_threads(setting: ThreadsSetting) -> Iterator[int]:
    """Run the body with the threads `setting` asks for; yields the count in force; restores the old one on exit."""
    import torch  # here, not at the top: the command line parses --threads before it needs torch

    wanted = resolve_threads(setting)
    saved = torch.get_num_threads()
    if wanted is not None and wanted != saved:
        torch.set_num_threads(wanted)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)
