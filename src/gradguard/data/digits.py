"""scikit-learn's 8x8 ``digits`` set (1,797 images), read from the csv file inside the installed wheel.

It is always available offline, which makes it the toy dataset for quick tests. Pixel values 0..16 are scaled to
uint8 by ``round(v * 255 / 16)`` so 16 maps to 255. Split (fixed, documented, independent of any seed): within each
class, images in file order; every 5th image (positions 4, 9, 14, ... of that class) goes to test, the rest to train
(1,442 train / 355 test; each class split 4:1 within one image).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from gradguard.data.errors import DatasetError, DatasetNotFoundError

__all__ = ["digits_csv_path", "read_digits", "split_digits"]

COUNT = 1797


def digits_csv_path() -> Path:
    """Where sklearn keeps ``digits.csv.gz`` (found without importing sklearn, which is slow to import)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            "digits: scikit-learn is not installed; it carries sklearn/datasets/data/digits.csv.gz."
            " Install it with: pip install scikit-learn"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: missing (expected inside the scikit-learn package)", path)
    return path


def read_digits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 images as (N, 1, 8, 8) uint8 and labels int64."""
    try:
        text = gzip.decompress(path.read_bytes()).decode("ascii")
        table = np.loadtxt(text.splitlines(), delimiter=",", ndmin=2)
    except (OSError, EOFError, ValueError) as exc:
        raise DatasetError(f"{path}: truncated or malformed digits csv ({exc})", path) from exc
    if table.shape != (COUNT, 65):
        raise DatasetError(f"{path}: wrong size {table.shape}, expected ({COUNT}, 65)", path)
    pixels, labels = table[:, :64], table[:, 64]
    if pixels.min() < 0 or pixels.max() > 16 or labels.min() < 0 or labels.max() > 9:
        raise DatasetError(f"{path}: values out of range (pixels 0..16, labels 0..9 expected)", path)
    images = np.rint(pixels * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 1, 8, 8)
    return images, labels.astype(np.int64)


def split_digits(images: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The fixed train/test split described in the module docstring."""
    test_mask = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        test_mask[idx[4::5]] = True
    return {
        "train": (images[~test_mask].copy(), labels[~test_mask].copy()),
        "test": (images[test_mask].copy(), labels[test_mask].copy()),
    }
