"""MNIST and Fashion-MNIST from their four idx files: locate them in a folder, decode, check counts and md5."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradguard.data.checksums import check_md5, md5_bytes
from gradguard.data.errors import DatasetError
from gradguard.data.idx import parse_idx, read_idx_bytes

__all__ = ["IDX_FILES", "COUNTS", "find_idx_files", "read_idx_dataset"]

# split -> (images file, labels file), the names of the official release (each may also end in .gz)
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
COUNTS = {"train": 60000, "test": 10000}
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801


def expected_names() -> list[str]:
    return [name for pair in IDX_FILES.values() for name in pair]


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """Map each of the four file names to ``name`` or ``name.gz`` in ``folder``; None unless all four are there."""
    found: dict[str, Path] = {}
    for name in expected_names():
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def read_idx_dataset(
    files: dict[str, Path], *, md5: dict[str, str] | None, counts: dict[str, int] | None = COUNTS, size: int = 28
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """Decode both splits. Returns ({split: (images N,1,H,W uint8, labels int64)}, {file name: md5}).

    Checks, in this order so that the error says what is really wrong: magic number, length against the header,
    image size, counts, label range for every file, then the md5 of the decompressed bytes against ``md5``
    (None skips it: only for tools and tests that write their own small files).
    """
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    raw: list[tuple[str, bytes, Path]] = []
    for split, (img_name, lbl_name) in IDX_FILES.items():
        img_path, lbl_path = files[img_name], files[lbl_name]
        img_bytes, lbl_bytes = read_idx_bytes(img_path), read_idx_bytes(lbl_path)
        images = parse_idx(img_bytes, img_path, expect_magic=_IMAGES_MAGIC)
        labels = parse_idx(lbl_bytes, lbl_path, expect_magic=_LABELS_MAGIC)
        if images.shape[1:] != (size, size):
            raise DatasetError(f"{img_path}: wrong image size {images.shape[1:]}, expected ({size}, {size})", img_path)
        if counts is not None and images.shape[0] != counts[split]:
            raise DatasetError(
                f"{img_path}: wrong size: {images.shape[0]} images, expected {counts[split]} for the {split} split",
                img_path,
            )
        if labels.shape[0] != images.shape[0]:
            raise DatasetError(
                f"{lbl_path}: wrong size: {labels.shape[0]} labels for {images.shape[0]} images in {img_path.name}",
                lbl_path,
            )
        if labels.size and int(labels.max()) > 9:
            raise DatasetError(f"{lbl_path}: label {int(labels.max())} out of range 0..9", lbl_path)
        raw += [(img_name, img_bytes, img_path), (lbl_name, lbl_bytes, lbl_path)]
        splits[split] = (images[:, None].copy(), labels.astype(np.int64))
    # md5 last, once every file is known to be well formed: a truncated file is reported as truncated
    sums = {name: check_md5(data, md5[name], path) if md5 is not None else md5_bytes(data) for name, data, path in raw}
    return splits, sums
