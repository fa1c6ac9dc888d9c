"""Where a new run goes when its folder already holds one: stop and say how to go on, a fresh folder beside it, or
(only when asked) replace it. A finished run is never overwritten by accident."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from gradguard.errors import UserError
from gradguard.runlock import ensure_not_locked

__all__ = ["IF_EXISTS", "IfExists", "RunExistsError", "holds_run", "choose_run_dir", "run_exists_message",
           "interrupted_message"]

IfExists = Literal["error", "new", "overwrite"]
IF_EXISTS: tuple[str, ...] = ("error", "new", "overwrite")
#: What a run folder holds (any one of them marks a folder as a run's; `overwrite` deletes nothing else).
_RUN_FILES = ("config.toml", "metrics.jsonl", "checkpoints", "results.json", "model.safetensors")


class RunExistsError(UserError, FileExistsError):
    """The run folder already holds a run; the message says how to go on."""


def holds_run(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def run_exists_message(path: Path, command: str = "gradguard run", config: str | None = None) -> str:
    resume = f"{command} {config} --resume {path}" if config else f"{command} --resume {path}"
    return (f"{path} already holds a run. To go on: continue it with `{resume}`, write this one elsewhere with "
            f"`--out DIR`, put it in a new folder beside it with `--if-exists new`, or replace it with "
            f"`--if-exists overwrite`")


def interrupted_message(command: str, run_dir: str | Path, config: str | None = None) -> str:
    """What Ctrl-C prints: the run can be continued (the trainer saved a checkpoint), and the command that does it."""
    resume = f"{command} {config} --resume {run_dir}" if config else f"{command} --resume {run_dir}"
    return f"{command}: interrupted; continue with: {resume}"


def choose_run_dir(path: str | Path, if_exists: IfExists = "error", *, command: str = "gradguard run",
                   config: str | None = None, now: datetime | None = None) -> Path:
    """`path` if it holds no run; otherwise, by `if_exists`: raise RunExistsError (with the ways to go on), return
    `<path>-<UTC date-time>` (a new folder beside it), or empty `path` and return it."""
    path = Path(path)
    if not holds_run(path):
        return path
    if if_exists != "new":  # a run in progress there is reported as in use, not as one to resume or replace
        ensure_not_locked(path)
    if if_exists == "new":
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
        candidate, i = path.with_name(f"{path.name}-{stamp}"), 2
        while candidate.exists():
            candidate, i = path.with_name(f"{path.name}-{stamp}-{i}"), i + 1
        return candidate
    if if_exists == "overwrite":
        if not any((path / name).exists() for name in _RUN_FILES):
            raise RunExistsError(f"{path} is not empty and does not look like a run folder (none of "
                                 f"{', '.join(_RUN_FILES)}); not deleting it: choose another --out")
        shutil.rmtree(path)
        return path
    if if_exists != "error":
        raise ValueError(f"if_exists must be one of {IF_EXISTS}, got {if_exists!r}")
    raise RunExistsError(run_exists_message(path, command, config))
