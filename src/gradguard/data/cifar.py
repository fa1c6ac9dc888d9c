"""CIFAR-10 in its python format (``cifar-10-batches-py``): five training batches and one test batch.

Each batch is a pickled dict with ``data`` (uint8, N x 3072, channel-major 3x32x32 rows) and ``labels`` (list of
ints). Batches are read with the restricted unpickler of ``safe_pickle`` from a folder or straight out of the
``cifar-10-python.tar.gz`` archive.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradguard.data.checksums import check_md5, md5_bytes
from gradguard.data.errors import DatasetError
from gradguard.data.safe_pickle import safe_loads
from gradguard.data.tar import base_name, read_tar_files

__all__ = ["BATCHES", "COUNTS", "decode_batch", "read_batch_folder", "read_batch_archive", "encode_batch"]

BATCHES: dict[str, tuple[str, ...]] = {
    "train": ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"),
    "test": ("test_batch",),
}
COUNTS = {"train": 50000, "test": 10000}
FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"


def _get(batch: dict, key: str) -> object:
    return batch[key] if key in batch else batch.get(key.encode())


def decode_batch(data: bytes, path: object) -> tuple[np.ndarray, np.ndarray]:
    """One batch -> (images N,3,32,32 uint8, labels int64), with every field checked."""
    batch = safe_loads(data, path)
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: not a CIFAR batch: a {type(batch).__name__}, expected a dict", path)
    pixels, labels = _get(batch, "data"), _get(batch, "labels")
    if pixels is None or labels is None:
        raise DatasetError(f"{path}: not a CIFAR batch: keys 'data' and 'labels' expected, found {list(batch)}", path)
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
        raise DatasetError(
            f"{path}: wrong size: 'data' is {pixels.dtype} {pixels.shape}, expected uint8 (N, 3072)", path
        )
    try:
        labels_arr = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: 'labels' is not a list of integers", path) from exc
    if labels_arr.shape[0] != pixels.shape[0]:
        raise DatasetError(f"{path}: wrong size: {labels_arr.shape[0]} labels for {pixels.shape[0]} images", path)
    if labels_arr.size and (labels_arr.min() < 0 or labels_arr.max() > 9):
        raise DatasetError(f"{path}: labels outside 0..9", path)
    return pixels.reshape(-1, 3, 32, 32).copy(), labels_arr


def _assemble(
    blobs: dict[str, tuple[bytes, str]], md5: dict[str, str] | None, counts: dict[str, int] | None
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    sums: dict[str, str] = {}
    for split, names in BATCHES.items():
        parts = [decode_batch(blobs[n][0], blobs[n][1]) for n in names]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        if counts is not None and images.shape[0] != counts[split]:
            where = ", ".join(blobs[n][1] for n in names)
            raise DatasetError(f"{where}: wrong size: {images.shape[0]} {split} images, expected {counts[split]}")
        splits[split] = (images, labels)
    for names in BATCHES.values():  # md5 last, once every batch is known to be well formed
        for n in names:
            data, where = blobs[n]
            sums[n] = check_md5(data, md5[n], where) if md5 is not None else md5_bytes(data)
    return splits, sums


def find_batch_folder(root: Path) -> Path | None:
    for folder in (root / FOLDER, root):
        if folder.is_dir() and all((folder / n).is_file() for names in BATCHES.values() for n in names):
            return folder
    return None


def read_batch_folder(
    folder: Path, *, md5: dict[str, str] | None, counts: dict[str, int] | None = COUNTS
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    blobs = {}
    for names in BATCHES.values():
        for n in names:
            path = folder / n
            if not path.is_file():
                raise DatasetError(f"{path}: missing CIFAR-10 batch file", path)
            blobs[n] = (path.read_bytes(), str(path))
    return _assemble(blobs, md5, counts)


def read_batch_archive(
    archive: Path, *, md5: dict[str, str] | None, counts: dict[str, int] | None = COUNTS
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """Read the batches straight from ``cifar-10-python.tar.gz`` (streamed, nothing extracted to disk)."""
    wanted = {n for names in BATCHES.values() for n in names}
    blobs = {
        base_name(name): (data, f"{archive}:{name}")
        for name, data in read_tar_files(archive, lambda name: base_name(name) in wanted)
    }
    missing = sorted(wanted - set(blobs))
    if missing:
        raise DatasetError(f"{archive}: missing CIFAR-10 batches {missing}", archive)
    return _assemble(blobs, md5, counts)


def encode_batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Write a batch in the published layout (protocol 2 pickle), for tests and tools; never used to read."""
    import pickle

    images = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    batch = {
        "batch_label": "written by gradguard",
        "labels": [int(v) for v in labels],
        "data": images,
        "filenames": [f"{i:05d}.png" for i in range(len(images))],
    }
    return pickle.dumps(batch, protocol=2)
