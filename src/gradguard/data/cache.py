"""The decoded-array cache: ``<cache>/datasets/<name>/{split}-images.npy, {split}-labels.npy, meta.json``.

``<cache>`` is ``$GRADGUARD_CACHE`` or ``~/.cache/gradguard``. Arrays are plain ``.npy`` (read with
``allow_pickle=False``), so loading never unpickles. An entry is written into a version folder next to its final
place (``.<name>.v-XXXX``, ``meta.json`` last) and published by renaming a symlink ``<name> -> .<name>.v-XXXX`` over
the old one: one atomic step, so a crash leaves the old entry or the new one, and a reader running during a refresh
sees one of them whole, never a missing or half-replaced folder. ``meta.json`` names its version folder, so a
reader takes the arrays from the version whose metadata it read; superseded versions are removed after
``_GRACE_S`` seconds (readers opening files later retry, a bounded number of times). Only verified data reaches
:func:`write`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from gradguard.data.errors import DatasetError

__all__ = ["cache_root", "entry_dir", "write", "read_meta", "read_split", "array_digest", "split_intact", "remove"]

FORMAT = 1
_GRACE_S = 120.0  # a superseded version folder stays this long for readers that read its meta.json already
_READ_TRIES = 3
Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def cache_root() -> Path:
    env = os.environ.get("GRADGUARD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gradguard"


def entry_dir(name: str) -> Path:
    return cache_root() / "datasets" / name


def array_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 over the decoded arrays, so ``info`` can re-check that the cache still holds what was verified."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images).data)
    h.update(np.ascontiguousarray(labels).data)
    return h.hexdigest()


def write(name: str, splits: Splits, meta: dict[str, Any]) -> Path:
    """Store verified arrays and their metadata atomically; returns the entry folder."""
    final = entry_dir(name)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_version_prefix(name), dir=final.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700: a shared cache must be as readable as any new folder
        split_meta = {}
        for split, (images, labels) in splits.items():
            np.save(tmp / f"{split}-images.npy", np.ascontiguousarray(images, dtype=np.uint8))
            np.save(tmp / f"{split}-labels.npy", np.ascontiguousarray(labels, dtype=np.int64))
            split_meta[split] = {
                "count": int(images.shape[0]),
                "shape": list(images.shape[1:]),
                "sha256": array_digest(images, labels),
            }
        full = {"format": FORMAT, "name": name, **meta, "splits": split_meta, "version": tmp.name}
        (tmp / "meta.json").write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
        _install(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _version_prefix(name: str) -> str:
    return f".{name}.v-"


def _install(version: Path, final: Path) -> None:
    """Publish a finished version folder: one atomic rename of a symlink over `final` (old or new, never neither).

    Where symlinks are unavailable the folder swap below is used instead. An entry written before versions existed
    is a real folder, which a symlink cannot replace in one step: it is moved aside first (once per cache).
    """
    link = final.parent / f".{final.name}.link-{uuid.uuid4().hex[:8]}"
    try:
        os.symlink(version.name, link, target_is_directory=True)
    except OSError:  # pragma: no cover - file systems without symlinks
        _swap_folders(version, final)
        return
    previous = os.readlink(final) if final.is_symlink() else None
    try:
        os.replace(link, final)
    except OSError:  # a real folder (old layout) at `final`
        aside = final.parent / f".{final.name}-old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(FileNotFoundError):
            os.replace(final, aside)
        os.replace(link, final)
        shutil.rmtree(aside, ignore_errors=True)
    if previous is not None:  # its grace period starts now, not when it was written
        with contextlib.suppress(FileNotFoundError):
            os.utime(final.parent / previous)
    _remove_superseded(final)


def _remove_superseded(final: Path) -> None:
    """Delete version folders that `final` no longer points at, once they are older than the grace period."""
    import time

    current = os.readlink(final) if final.is_symlink() else None
    for old in final.parent.glob(_version_prefix(final.name) + "*"):
        try:
            if old.name != current and time.time() - old.stat().st_mtime > _GRACE_S:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:  # another process removed it first
            continue


def _swap_folders(tmp: Path, final: Path) -> None:
    """Move the finished entry into place, replacing an old one; tolerate another process doing the same."""
    for _ in range(5):
        old = final.parent / f".{final.name}-old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            if final.exists():
                os.replace(final, old)
            os.replace(tmp, final)
        except FileNotFoundError:  # someone else moved the old entry away first
            continue
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            continue  # someone else installed an entry in between: try again
        finally:
            if old.exists():
                shutil.rmtree(old, ignore_errors=True)
        return
    shutil.rmtree(tmp, ignore_errors=True)  # another process keeps installing equivalent entries; keep theirs


def read_meta(name: str) -> dict[str, Any] | None:
    """The entry's metadata, or None when there is no complete entry of the current format."""
    path = entry_dir(name) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def read_split(name: str, split: str, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Load one split; shapes are checked against the metadata (a cheap guard against a damaged entry).

    Images are memory-mapped copy-on-write (``mmap_mode="c"``): pages are read when first touched, so a load
    costs milliseconds even for CIFAR-10's 150 MB, and writes by the caller never reach the cache file.
    """
    for attempt in range(_READ_TRIES):
        folder = _version_folder(name, meta)
        try:
            images = np.load(folder / f"{split}-images.npy", mmap_mode="c", allow_pickle=False)
            labels = np.load(folder / f"{split}-labels.npy", allow_pickle=False)
            break
        except FileNotFoundError as exc:  # a refresh replaced this version and it was removed: take the new one
            newer = read_meta(name)
            if attempt + 1 == _READ_TRIES or newer is None or newer.get("version") == meta.get("version"):
                raise DatasetError(f"{folder}: damaged cache entry ({exc}); remove it and fetch again", folder) from exc
            meta = newer
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{folder}: damaged cache entry ({exc}); remove it and fetch again", folder) from exc
    want = meta["splits"][split]
    if (
        images.dtype != np.uint8
        or labels.dtype != np.int64
        or list(images.shape) != [want["count"], *want["shape"]]
        or labels.shape != (want["count"],)
    ):
        raise DatasetError(f"{folder}: damaged cache entry (shapes differ from meta.json); remove it and fetch again",
                           folder)
    return images, labels


_intact: set[tuple[object, ...]] = set()  # (file identities) of splits this process has hashed and found intact


def split_intact(name: str, split: str, meta: dict[str, Any], images: np.ndarray, labels: np.ndarray) -> bool:
    """True when the arrays still hash to the digest recorded when they were verified and cached.

    Hashing costs about 0.12 s for MNIST's 47 MB train split on one core (``benchmarks/integrity_cost.py``), paid
    once per process and file version: a split already found intact is trusted while its files' inode, size and
    mtime stay the same (any write to them changes the mtime).
    """
    folder = entry_dir(name)
    try:
        stats = [os.stat(folder / f"{split}-{part}.npy") for part in ("images", "labels")]
    except OSError:
        return False
    key = (str(folder), split, meta["splits"][split]["sha256"],
           *((st.st_ino, st.st_size, st.st_mtime_ns) for st in stats))
    if key in _intact:
        return True
    if array_digest(images, labels) != meta["splits"][split]["sha256"]:
        return False
    _intact.add(key)
    return True
def _version_folder(name: str, meta: dict[str, Any]) -> Path:
    """The folder holding the arrays `meta` describes (the entry itself for entries written without versions)."""
    entry = entry_dir(name)
    return entry.parent / meta["version"] if "version" in meta and entry.is_symlink() else entry


def remove(name: str) -> None:
    entry = entry_dir(name)
    if entry.is_symlink():
        target = entry.parent / os.readlink(entry)
        entry.unlink()
        shutil.rmtree(target, ignore_errors=True)
    else:
        shutil.rmtree(entry, ignore_errors=True)
