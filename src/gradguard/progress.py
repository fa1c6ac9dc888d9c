"""Progress you can see: one bar style for training and evaluation on a terminal, plain lines everywhere else.

A tqdm bar redrawn with carriage returns is what a person at a terminal wants, and garbage in a log file, a CI log
or a pipe. So off a terminal, progress is a plain line every 10% of the work (or every `every_s` seconds, whichever
comes first), sent to the same sink as the other messages of the run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any, Protocol

from tqdm.auto import tqdm

__all__ = ["terminal_bar", "LineProgress", "work_progress", "Progressor"]


class Progressor(Protocol):
    def update(self, n: int = 1) -> Any: ...

    def close(self) -> None: ...


def terminal_bar(total: int, *, initial: int = 0, desc: str = "", unit: str = "it", disable: bool = False,
                 file: IO[str] | None = None) -> tqdm:
    """The bar of `gradguard train` and of each attack of `gradguard eval`: done/total, rate, time left."""
    return tqdm(total=total, initial=initial, desc=desc or None, unit=unit, disable=disable, dynamic_ncols=True,
                leave=False, file=file)


class LineProgress:
    """`update(n)` counts work done; a line goes to `say` at each tenth of `total`, or after `every_s` seconds."""

    def __init__(self, total: int, desc: str, say: Callable[[str], None], *, unit: str = "points",
                 every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.say, self.unit = total, desc, say, unit
        self.every_s, self.clock = every_s, clock
        self.done = 0
        self.t0 = self.last = clock()
        self._tenths = 0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        tenths = 10 * self.done // self.total if self.total else 10
        if self.done >= self.total:  # the caller reports the end in its own words
            return
        if tenths > self._tenths or now - self.last >= self.every_s:
            self._tenths, self.last = tenths, now
            elapsed = now - self.t0
            left = elapsed * (self.total - self.done) / self.done if self.done else float("nan")
            self.say(f"{self.desc}: {self.done}/{self.total} {self.unit} ({100 * self.done // self.total}%), "
                     f"{elapsed:.0f} s, about {left:.0f} s left")

    def close(self) -> None:
        pass


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def work_progress(total: int, desc: str, say: Callable[[str], None] | None, *, unit: str = "points",
                  stream: IO[str] | None = None, every_s: float = 30.0) -> Progressor:
    """A bar when `stream` (stderr) is a terminal, else `LineProgress` through `say`; silent when `say` is None."""
    if say is None or total <= 0:
        return _Silent()
    stream = stream or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return terminal_bar(total, desc=desc, unit=unit[:-1] if unit.endswith("s") else unit, file=stream)
    return LineProgress(total, desc, say, unit=unit, every_s=every_s)
