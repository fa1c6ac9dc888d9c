"""Where each dataset can come from without the network: a user folder, then (after the cache) local offline
copies; plus the readers every route shares. Network routes live in ``download``. A route decodes and verifies;
none writes the cache.

A route answers ``DatasetNotFoundError`` when it simply has nothing (no file, no network, no npm): the caller then
tries the next one. Any other ``DatasetError`` (bad magic, truncated, wrong checksum, undecodable image) is raised
at once, naming the file: a damaged copy is never silently skipped in favour of another.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from gradguard.data import cifar, mnist, stl10
from gradguard.data.checksums import MD5, check_md5, md5_bytes
from gradguard.data.digits import digits_csv_path, read_digits, split_digits
from gradguard.data.errors import DatasetNotFoundError
from gradguard.data.image_folder import find_image_folder, is_archive, read_image_folder
from gradguard.data.specs import get_spec

__all__ = ["Found", "Located", "Route", "locate_in_dir", "local_routes", "expected_files"]

Splits = dict[str, tuple[np.ndarray, np.ndarray]]

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
CIFAR_JPEG = "cifar10-jpeg"
CIFAR_JPEG_MD5 = {"cifar10-jpeg.tar.gz": "5646662cf82f5e85c0b6471464daf5a1"}  # the project's shared copy
LOSSY_NOTE = "LOSSY JPEG copy of CIFAR-10 (quality about 75, PSNR 27-33 dB): close to, not equal to, CIFAR-10"


@dataclass
class Found:
    """Decoded, verified splits plus what to record about them."""

    splits: Splits
    source: str
    checksums: dict[str, str]
    verified: bool
    verification: str
    lossy: bool = False
    files: list[Path] = field(default_factory=list)


@dataclass
class Located:
    """Files found in a user folder, not yet read: their fingerprint lets a matching cache entry be reused."""

    files: list[Path]
    read: Callable[[], Found]

    def fingerprint(self) -> list[list[object]]:
        out: list[list[object]] = []
        for f in self.files:
            st = f.stat()
            out.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
        return out


@dataclass
class Route:
    label: str
    read: Callable[[], Found]
    lossy: bool = False  # what it would give is a lossy copy: a cached lossy entry does not hide an exact route


def expected_files(name: str) -> str:
    """Human-readable list of what a user folder must hold for ``name``."""
    if name in ("mnist", "fashion-mnist"):
        return ", ".join(mnist.expected_names()) + " (each raw or .gz)"
    if name == "cifar10":
        batches = ", ".join(n for names in cifar.BATCHES.values() for n in names)
        return (f"{cifar.FOLDER}/{{{batches}}}, or {cifar.ARCHIVE}, or an image folder {CIFAR_JPEG}/"
                f"{{train,test}}/<class>/*.png|jpg, or its archive {CIFAR_JPEG}.tar.gz")
    if name == "stl10":
        return f"{stl10.FOLDER}/{{" + ", ".join(f for p in stl10.FILES.values() for f in p) + "}"
    return "nothing: digits ships inside scikit-learn"


CIFAR_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"


def where_to_get(name: str) -> list[str]:
    """Where a dataset the sources did not have can come from, and how to hand a local copy to the loader."""
    if name == "cifar10":
        return [
            f"CIFAR-10 comes from {CIFAR_PAGE}: download {cifar.ARCHIVE} (the python pickle batches, the "
            f"exact data) and pass it: gradguard data fetch cifar10 --root PATH/{cifar.ARCHIVE} (the archive, the "
            f"folder holding it, or its extracted {cifar.FOLDER}/).",
            f"Without the web: the lossy JPEG copy {CIFAR_JPEG}.tar.gz (an image-folder archive, "
            f"{CIFAR_JPEG}/{{train,test}}/<class>/*.jpg) is read the same way: gradguard data fetch cifar10 --root "
            f"../shared/data/{CIFAR_JPEG}.tar.gz (or the extracted folder; any folder in that layout works).",
            "GRADGUARD_DATA=DIR does what --root does, for every command; config files take data.root.",
        ]
    if name == "stl10":
        return ["STL-10 comes from http://ai.stanford.edu/~acoates/stl10/ (stl10_binary.tar.gz): extract it and "
                f"pass the folder holding {stl10.FOLDER}/: gradguard data fetch stl10 --root DIR "
                "(or GRADGUARD_DATA=DIR, or data.root in a config)."]
    if name in ("mnist", "fashion-mnist"):
        return [f"Put the four files (from any {name} mirror) in a folder and pass it: gradguard data fetch {name} "
                "--root DIR (or GRADGUARD_DATA=DIR, or data.root in a config)."]
    return []


_VERIFIED = "md5 of every decompressed file equals the published value"


# -- readers -------------------------------------------------------------------------------------------------------


def read_idx_source(name: str, folder: Path, source: str) -> Found:
    files = mnist.find_idx_files(folder)
    if files is None:
        raise DatasetNotFoundError(f"{folder}: no complete set of {name} idx files", folder)
    splits, sums = mnist.read_idx_dataset(files, md5=MD5[name], counts=mnist.COUNTS)
    return Found(splits, source, sums, True, _VERIFIED, files=list(files.values()))


def read_cifar_source(path: Path) -> Found:
    spec = get_spec("cifar10")
    if path.is_dir() and cifar.find_batch_folder(path) == path:
        splits, sums = cifar.read_batch_folder(path, md5=MD5["cifar10"])
        return Found(splits, f"CIFAR-10 python batches in {path}", sums, True, _VERIFIED)
    if is_archive(path) and path.name == cifar.ARCHIVE:
        splits, sums = cifar.read_batch_archive(path, md5=MD5["cifar10"])
        return Found(splits, f"CIFAR-10 python batches from {path}", sums, True, _VERIFIED)
    sums = {}
    verified, verification = False, "no published checksum for an unpacked image folder; decoded and counted only"
    if is_archive(path):
        data = path.read_bytes()
        if path.name in CIFAR_JPEG_MD5:
            sums[path.name] = check_md5(data, CIFAR_JPEG_MD5[path.name], path)
            verified, verification = True, "md5 of the archive equals the project's recorded value"
        else:
            sums[path.name] = md5_bytes(data)
            verification = "archive md5 recorded, not checked (no published value for this file name)"
    splits = read_image_folder(path, spec.classes, size=spec.size, counts=cifar.COUNTS)
    return Found(splits, f"{LOSSY_NOTE}; from {path}", sums, verified, verification, lossy=True)


def read_stl10_source(folder: Path) -> Found:
    splits, sums = stl10.read_stl10_folder(folder, md5=MD5["stl10"])
    return Found(splits, f"STL-10 binaries in {folder}", sums, True, _VERIFIED)


def read_digits_source() -> Found:
    path = digits_csv_path()
    images, labels = read_digits(path)
    return Found(
        split_digits(images, labels), f"scikit-learn digits.csv.gz ({path})", {path.name: md5_bytes(path.read_bytes())},
        False, "no published checksum; shape, value range and count (1797) checked", files=[path],
    )


# -- user folder -----------------------------------------------------------------------------------------------------


def locate_in_dir(name: str, root: Path) -> Located | None:
    """Find ``name`` in a folder the user named (or an archive path for CIFAR-10); None if it is not there."""
    root = Path(root).expanduser()
    if name in ("mnist", "fashion-mnist"):
        torch_dir = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[name]
        for idx_dir in (root, root / name, root / name / "raw", root / torch_dir / "raw"):
            files = mnist.find_idx_files(idx_dir)
            if files is not None:
                return Located(list(files.values()), partial(read_idx_source, name, idx_dir, f"idx files in {idx_dir}"))
        return None
    if name == "cifar10":
        batches = cifar.find_batch_folder(root) if root.is_dir() else None
        if batches is not None:
            paths = [batches / n for names in cifar.BATCHES.values() for n in names]
            return Located(paths, partial(read_cifar_source, batches))
        for candidate in (root, root / cifar.ARCHIVE):
            if is_archive(candidate) and candidate.name == cifar.ARCHIVE:
                return Located([candidate], partial(read_cifar_source, candidate))
        folder = find_image_folder(root, [CIFAR_JPEG, "cifar10"])
        if folder is not None:
            return Located([folder], partial(read_cifar_source, folder))
        return None
    if name == "stl10":
        folder = stl10.find_stl10_folder(root)
        if folder is None:
            return None
        return Located([folder / f for p in stl10.FILES.values() for f in p], lambda: read_stl10_source(folder))
    return None  # digits has no user folder


# -- local offline routes (no network) ---------------------------------------------------------------------------------


def shared_data_dirs() -> list[Path]:
    """``../shared/data`` seen from the project root (where this package is checked out) and from the cwd."""
    repo_root = Path(__file__).resolve().parents[3]
    out: list[Path] = []
    for d in (repo_root.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if d not in out:
            out.append(d)
    return out


def local_routes(name: str) -> list[Route]:
    if name == "fashion-mnist":
        return [Route(f"Debian package dataset-fashion-mnist ({DEBIAN_FASHION})",
                      lambda: read_idx_source(name, DEBIAN_FASHION,
                                         f"Debian package dataset-fashion-mnist ({DEBIAN_FASHION})"))]
    if name == "cifar10":
        return _cifar_local_routes()
    if name == "digits":
        return [Route("scikit-learn package (digits.csv.gz)", read_digits_source)]
    return []


def _cifar_local_routes() -> list[Route]:
    """In each shared data folder: the exact python batches (folder, then archive) first, the JPEG copy last."""
    exact: list[Route] = []
    lossy: list[Route] = []
    for d in shared_data_dirs():
        for path in (d / cifar.FOLDER, d / cifar.ARCHIVE):
            exact.append(Route(f"project shared data ({path})", functools.partial(_read_if_there, path)))
        archive = d / f"{CIFAR_JPEG}.tar.gz"
        lossy.append(Route(f"project shared data ({archive})", functools.partial(_read_if_there, archive), lossy=True))
    return exact + lossy


def _read_if_there(path: Path) -> Found:
    if not (path.is_file() or (path.is_dir() and cifar.find_batch_folder(path) == path)):
        raise DatasetNotFoundError(f"{path}: not there", path)
    return read_cifar_source(path)
