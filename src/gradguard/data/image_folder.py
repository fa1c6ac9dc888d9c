"""Image-folder datasets (``[prefix/]split/class/*.png|jpg``), read from a folder or streamed from a tar archive.

This is how the lossy JPEG copy of CIFAR-10 (``cifar10-jpeg.tar.gz``) is stored. Members are read in archive order
(one pass, nothing extracted to disk), then sorted by (split, class, file name) so the result does not depend on
archive order, and decoded by Pillow in a small thread pool (Pillow releases the GIL while decoding).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from gradguard.data.errors import DatasetError
from gradguard.data.tar import read_tar_files

__all__ = ["IMAGE_SUFFIXES", "SPLITS", "find_image_folder", "read_image_folder", "is_archive"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test")
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")

Record = tuple[str, str, str, bytes]  # split, class, where (for errors), bytes


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(_ARCHIVE_SUFFIXES)


def find_image_folder(root: Path, names: Sequence[str]) -> Path | None:
    """The first of ``root`` (an archive or a folder with train/ and test/) or ``root/<name>[.tar.gz]``."""
    candidates = [root] + [root / n for n in names] + [root / f"{n}{s}" for n in names for s in _ARCHIVE_SUFFIXES]
    for c in candidates:
        if is_archive(c) or (c.is_dir() and all((c / s).is_dir() for s in SPLITS)):
            return c
    return None


def _split_class(parts: Sequence[str]) -> tuple[str, str] | None:
    if len(parts) < 3 or parts[-1].startswith(".") or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return None
    if parts[-3] not in SPLITS:
        return None
    return parts[-3], parts[-2]


def _iter_archive(archive: Path) -> Iterator[Record]:
    for name, data in read_tar_files(archive, lambda name: _split_class(name.split("/")) is not None):
        split, cls = _split_class(name.split("/"))  # type: ignore[misc]  # accepted above, so not None
        yield split, cls, f"{archive}:{name}", data


def _iter_folder(folder: Path) -> Iterator[Record]:
    for split in SPLITS:
        base = folder / split
        if not base.is_dir():
            raise DatasetError(
                f"{base}: missing split folder (expected {folder}/{{train,test}}/<class>/*.png|jpg)", base
            )
        for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            for path in sorted(class_dir.iterdir()):
                if _split_class(path.parts) and path.is_file():
                    yield split, class_dir.name, str(path), path.read_bytes()


def _decode_into(out: np.ndarray, start: int, records: Sequence[Record], size: int) -> None:
    for i, (_, _, where, data) in enumerate(records):
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.size != (size, size):
                    raise DatasetError(f"{where}: wrong image size {image.size}, expected ({size}, {size})", where)
                image.draft("RGB", image.size)  # JPEG: decode straight to RGB, no later conversion
                array = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        except DatasetError:
            raise
        except Image.DecompressionBombError as exc:  # raised by open(), from the header, before any decoding
            raise DatasetError(f"{where}: image too large to decode safely ({exc}); expected ({size}, {size})",
                               where) from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DatasetError(f"{where}: undecodable image ({exc})", where) from exc
        out[start + i] = array.transpose(2, 0, 1)


def read_image_folder(
    source: Path,
    classes: Sequence[str],
    *,
    size: int,
    counts: dict[str, int] | None,
    max_images: int | None = None,
    workers: int | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode every image under ``source`` into {split: (uint8 N,3,size,size, int64 labels)}.

    Labels follow the order of ``classes`` (folder names must be among them). ``max_images`` stops reading after
    that many files (a quick partial read; counts are then not checked).
    """
    class_index = {c: i for i, c in enumerate(classes)}
    records: list[Record] = []
    stream = _iter_archive(source) if is_archive(source) else _iter_folder(source)
    for record in stream:
        if record[1] not in class_index:
            raise DatasetError(
                f"{record[2]}: unknown class folder {record[1]!r}, expected one of {list(classes)}", record[2]
            )
        records.append(record)
        if max_images is not None and len(records) >= max_images:
            break
    if not records:  # e.g. a gzip of zeros reads as an empty tar: say so, not "0 train images"
        raise DatasetError(f"{source}: no images found: expected files [prefix/]{{train,test}}/<class>/*.png|jpg "
                           "(an empty, garbled or wrong archive?)", source)
    records.sort(key=lambda r: (r[0], class_index[r[1]], r[2]))
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in SPLITS:
        chosen = [r for r in records if r[0] == split]
        images = np.empty((len(chosen), 3, size, size), dtype=np.uint8)
        chunk = max(1, -(-len(chosen) // (workers * 4)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            jobs = [
                pool.submit(_decode_into, images, s, chosen[s : s + chunk], size) for s in range(0, len(chosen), chunk)
            ]
            for job in jobs:
                job.result()
        labels = np.array([class_index[r[1]] for r in chosen], dtype=np.int64)
        out[split] = (images, labels)
    # counts are checked after decoding so that a broken image is reported as such, whatever the folder's size
    for split, (images, _) in out.items():
        if counts is not None and max_images is None and len(images) != counts[split]:
            raise DatasetError(f"{source}: wrong size: {len(images)} {split} images, expected {counts[split]}", source)
    return out
