"""STL-10 in its binary format: ``{train,test}_X.bin`` (uint8, each image 3x96x96 stored column-major) and
``{train,test}_y.bin`` (one uint8 label 1..10 per image, mapped here to 0..9). The unlabeled split is not read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradguard.data.checksums import check_md5, md5_bytes
from gradguard.data.errors import DatasetError

__all__ = ["FILES", "COUNTS", "IMAGE_BYTES", "find_stl10_folder", "read_stl10_folder", "encode_images"]

FILES: dict[str, tuple[str, str]] = {"train": ("train_X.bin", "train_y.bin"), "test": ("test_X.bin", "test_y.bin")}
COUNTS = {"train": 5000, "test": 8000}
SIZE = 96
IMAGE_BYTES = 3 * SIZE * SIZE
FOLDER = "stl10_binary"


def find_stl10_folder(root: Path) -> Path | None:
    for folder in (root / FOLDER, root):
        if all((folder / f).is_file() for pair in FILES.values() for f in pair):
            return folder
    return None


def decode_images(data: bytes, path: object) -> np.ndarray:
    """Raw bytes -> (N, 3, 96, 96) uint8 in the usual row-major (channel, row, column) order."""
    if len(data) == 0 or len(data) % IMAGE_BYTES:
        raise DatasetError(
            f"{path}: wrong size: {len(data)} bytes is not a whole number of 3x96x96 images ({IMAGE_BYTES} bytes each;"
            " truncated?)",
            path,
        )
    # column-major per image: the file holds (N, C, W, H); swap the two spatial axes
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, 3, SIZE, SIZE).transpose(0, 1, 3, 2).copy()


def decode_labels(data: bytes, path: object) -> np.ndarray:
    labels = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DatasetError(f"{path}: labels must be 1..10, found {labels.min()}..{labels.max()}", path)
    return labels - 1


def read_stl10_folder(
    folder: Path, *, md5: dict[str, str] | None, counts: dict[str, int] | None = COUNTS
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    raw: list[tuple[str, bytes, Path]] = []
    for split, (x_name, y_name) in FILES.items():
        x_path, y_path = folder / x_name, folder / y_name
        x_bytes, y_bytes = x_path.read_bytes(), y_path.read_bytes()
        images, labels = decode_images(x_bytes, x_path), decode_labels(y_bytes, y_path)
        if counts is not None and images.shape[0] != counts[split]:
            raise DatasetError(
                f"{x_path}: wrong size: {images.shape[0]} images, expected {counts[split]} ({split} split)", x_path
            )
        if labels.shape[0] != images.shape[0]:
            raise DatasetError(f"{y_path}: wrong size: {labels.shape[0]} labels for {images.shape[0]} images", y_path)
        raw += [(x_name, x_bytes, x_path), (y_name, y_bytes, y_path)]
        splits[split] = (images, labels)
    sums = {name: check_md5(data, md5[name], path) if md5 is not None else md5_bytes(data) for name, data, path in raw}
    return splits, sums


def encode_images(images: np.ndarray) -> bytes:
    """(N, 3, 96, 96) uint8 -> the file layout (column-major per image); for tests and tools."""
    return np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 1, 3, 2)).tobytes()
