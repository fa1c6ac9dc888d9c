"""Atomic file writes: a reader sees the old file or the new one, never half of one.

A leaf module (standard library only), so that everything that saves files (checkpoints, configs, evaluation
results, reports, benchmarks) can share one write without importing torch or the trainer.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "remove_temporaries"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same directory, fsync, then rename; returns `path`.

    The one atomic write of the package (checkpoints, configs, results, reports): a reader sees the old file or the
    new one, never half of one, and a failure leaves no temporary behind. The file gets the permissions the umask
    gives any new file (mkstemp alone would make it 0600, unreadable to the rest of a team).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None and e.errno is not None:  # write() names no file: name ours (disk full, quota)
            e.filename = str(path)
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def remove_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete what `atomic_write_bytes` leaves when its process is killed mid-write (``.NAME.XXXX.tmp``).

    Only safe while nothing else writes in `folder` (a run folder under its lock); returns what was removed.
    """
    removed = []
    for tmp in Path(folder).glob(f".*{_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
