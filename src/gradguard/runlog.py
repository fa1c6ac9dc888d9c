"""metrics.jsonl (one JSON object per line, appended) and TensorBoard when it is installed.

The file is flushed before every checkpoint and its byte length is stored in the checkpoint, so a resumed run cuts
off whatever a killed run wrote after its last checkpoint and the log reads as if the run had never stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gradguard.errors import GradguardError

__all__ = ["MetricsLog", "MetricsLogError", "read_metrics"]


class MetricsLogError(GradguardError):
    """metrics.jsonl does not hold what the checkpoint says it held: the run folder was modified."""


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class MetricsLog:
    def __init__(self, path: Path, *, enabled: bool = True, truncate_to: int | None = None,
                 tensorboard: bool = False) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._f = None
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate_to is not None and self.path.exists():
            size = self.path.stat().st_size
            if size < truncate_to:
                raise MetricsLogError(f"cannot resume: {self.path} is shorter ({size} bytes) than when the last "
                                      f"checkpoint was written ({truncate_to} bytes); it was cut or replaced, so "
                                      "the run's records are lost: restore it, or start a new run")
            os.truncate(self.path, truncate_to)
        # line-buffered: a record is visible to `tail -f` as soon as it is written
        self._f = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - kept open for the run
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.path.parent / "tensorboard"))
            except ImportError:
                self._tb = None
            except Exception as e:  # pragma: no cover - a broken tensorboard install must not stop training
                warnings.warn(f"TensorBoard disabled: {e}", stacklevel=2)

    def write(self, record: dict[str, Any]) -> None:
        if not self._f:
            return
        with self._naming_errors():
            self._f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        if self._tb is not None:
            step = int(record.get("step", 0))
            kind = record.get("kind", "train")
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step",):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)

    def offset(self) -> int:
        """Flush and return the file length (stored in checkpoints)."""
        if not self._f:
            return 0
        with self._naming_errors():
            self._f.flush()
            os.fsync(self._f.fileno())
        return self._f.tell()

    @contextlib.contextmanager
    def _naming_errors(self) -> Iterator[None]:
        """A failed write (disk full) names no file by itself: name this log, for the CLI's one-line message."""
        try:
            yield
        except OSError as e:
            if e.filename is None and e.errno is not None:
                e.filename = str(self.path)
            raise

    def close(self) -> None:
        if self._f:
            self._f.close()
            self._f = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(path: str | os.PathLike[str], kind: str | None = None, *,
                 missing_ok: bool = False) -> list[dict[str, Any]]:
    """Records of metrics.jsonl (optionally only one kind: "train", "val", "resume").

    A torn line (a run killed mid-write, before a resume cuts it off) is skipped; with `missing_ok` a missing file
    reads as no records.
    """
    if missing_ok and not Path(path).exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if kind is None or rec.get("kind") == kind:
                out.append(rec)
    return out
