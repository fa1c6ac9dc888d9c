"""Hostile image archives end in a DatasetError naming the archive or the member: a decompression bomb, an archive
that decodes to nothing. Built in the test, byte by byte."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zlib
from pathlib import Path

import pytest

from gradguard.data.errors import DatasetError
from gradguard.data.image_folder import read_image_folder


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height grayscale pixels; Pillow's bomb check reads only the header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_decompression_bomb_names_the_member(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "bomb.tar.gz", {"train/cat/big.png": _png_header_only(20000, 20000)})
    with pytest.raises(DatasetError, match=r"bomb.tar.gz:train/cat/big.png: image too large to decode safely"):
        read_image_folder(archive, ["cat"], size=32, counts=None)


def test_archive_of_zeros_is_not_an_empty_dataset(tmp_path: Path) -> None:
    archive = tmp_path / "garbled.tar.gz"
    archive.write_bytes(gzip.compress(b"\0" * 20480))  # tarfile reads this as an archive without members
    with pytest.raises(DatasetError, match=r"garbled.tar.gz: no images found"):
        read_image_folder(archive, ["cat"], size=32, counts={"train": 10, "test": 2})


def test_archive_of_other_files_is_not_an_empty_dataset(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "other.tar.gz", {"README": b"hello", "data/x.bin": b"\1\2"})
    with pytest.raises(DatasetError, match=r"other.tar.gz: no images found"):
        read_image_folder(archive, ["cat"], size=32, counts=None)
