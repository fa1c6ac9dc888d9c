"""What a run ran on: versions, device, threads, git commit. Deliberately no hostname or user name.

Recorded in every checkpoint and exported model so that a number can be traced to the code and machine kind that
produced it.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

__all__ = ["environment", "git_commit"]


def git_commit(path: str | Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the git checkout holding `path` (default: this package); {} outside git."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "dirty": dirty}


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return getattr(mod, "__version__", None)


def environment(device: str | torch.device | None = None) -> dict[str, Any]:
    """A JSON-able record of the software and hardware a run used (no hostname)."""
    from gradguard import __version__

    dev = torch.device(device) if device is not None else torch.device("cpu")
    record: dict[str, Any] = {
        "gradguard": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": _version("numpy"),
        "safetensors": _version("safetensors"),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "processor_count": _cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(dev),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    if dev.type == "cuda" and torch.cuda.is_available():
        record["device_name"] = torch.cuda.get_device_name(dev)
        record["device_count"] = torch.cuda.device_count()
    record["git"] = git_commit()
    return record


def _cpu_count() -> int | None:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count()
