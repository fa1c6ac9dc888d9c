"""One process per run folder: an exclusive lock held for the life of a run (train, run, resume).

The lock is `fcntl.flock` on ``<run>/.lock``. The kernel drops it when the holding process ends however it ends
(exit, exception, SIGKILL), so a stale lock can never block a later run; the file's content (pid, host, start
time) only serves the error message. The folder itself is made with `os.mkdir`, which either creates it or finds
it: there is no window between "does it exist?" and "make it" for a second process to slip into. Taking the lock
also removes the temporaries of atomic writes that a killed run left in the folder and its checkpoints/.

    with hold_run_dir("runs/x"):        # raises RunLockedError naming the other process
        ...                              # re-entrant: train() inside run_experiment() takes it again for free
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from gradguard.atomic import remove_temporaries
from gradguard.errors import GradguardError

__all__ = ["LOCK_NAME", "RunLockedError", "hold_run_dir", "make_run_dir", "run_dir_is_empty", "ensure_not_locked"]

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # run folders this process holds -> nesting depth


class RunLockedError(GradguardError):
    """Another live process is writing the run folder."""


def make_run_dir(path: str | os.PathLike[str]) -> Path:
    """Create the run folder (and its parents) atomically; an existing folder is fine (the lock decides)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path)
    return path


def run_dir_is_empty(path: str | os.PathLike[str]) -> bool:
    """True when the folder holds nothing but its lock file (a run that never wrote anything)."""
    return all(p.name == LOCK_NAME for p in Path(path).iterdir())


@contextlib.contextmanager
def hold_run_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Create `path` if needed and hold its lock until the block ends; RunLockedError if another process has it."""
    folder = make_run_dir(path).resolve()
    if folder in _held:
        _held[folder] += 1
        try:
            yield folder
        finally:
            _held[folder] -= 1
        return
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        _take_or_refuse(fd, folder)
        for sub in (folder, folder / "checkpoints"):  # their writers are dead: only the lock holder writes here
            remove_temporaries(sub)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}).encode())
        _held[folder] = 1
        try:
            yield folder
        finally:
            del _held[folder]
    finally:
        os.close(fd)  # closing the descriptor releases the lock (the kernel does the same if the process dies)


def _take_or_refuse(fd: int, folder: Path) -> None:
    """Take the exclusive lock on `fd` without waiting, or say which live process holds `folder`."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunLockedError(f"{folder} is in use by another gradguard process ({_holder(fd)}); wait for it to "
                             "finish or choose another --out") from None


def ensure_not_locked(path: str | os.PathLike[str]) -> None:
    """RunLockedError when another live process holds `path`'s lock; nothing is created or kept.

    Asked before deciding what to do with an existing folder, so that a run in progress is reported as in use
    (with its pid) rather than as a finished run to resume or replace.
    """
    folder = Path(path)
    lock = folder / LOCK_NAME
    if not lock.exists() or folder.resolve() in _held:
        return
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return
    try:
        _take_or_refuse(fd, folder.resolve())
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its details are not written yet"
