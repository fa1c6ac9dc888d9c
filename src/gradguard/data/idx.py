"""The idx file format of MNIST and Fashion-MNIST (raw or gzipped), parsed strictly.

Layout: two zero bytes, a type code (0x08 = uint8), the number of dimensions, one big-endian uint32 per dimension,
then the values in C order. A file whose length differs from what its header promises is rejected, so a truncated
download never passes as a smaller dataset.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from gradguard.data.errors import DatasetError

__all__ = ["IDX_TYPES", "parse_idx", "read_idx_bytes", "write_idx"]

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzipped (detected by content, not only by name)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc}", path) from exc
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{path}: truncated or corrupt gzip stream ({exc})", path) from exc
    return data


def parse_idx(data: bytes, path: object, *, expect_magic: int | None = None) -> np.ndarray:
    """Decode idx bytes into an array; ``path`` only names the file in errors."""
    if len(data) < 4:
        raise DatasetError(f"{path}: truncated idx file: {len(data)} bytes, not even the 4-byte magic number", path)
    magic = int.from_bytes(data[:4], "big")
    code, ndim = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or code not in IDX_TYPES or ndim == 0:
        raise DatasetError(
            f"{path}: bad magic number 0x{magic:08x}: not an idx file (expected 0x0000, a type code such as 0x08"
            " for uint8, then the number of dimensions)",
            path,
        )
    if expect_magic is not None and magic != expect_magic:
        raise DatasetError(f"{path}: bad magic number 0x{magic:08x}, expected 0x{expect_magic:08x}", path)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(
            f"{path}: truncated idx file: the header needs {header} bytes, the file has {len(data)}", path
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_TYPES[code]
    count = int(np.prod(dims, dtype=np.int64))
    expected = header + count * dtype.itemsize
    if len(data) < expected:
        raise DatasetError(
            f"{path}: truncated idx file: the header promises shape {tuple(dims)} ({expected} bytes),"
            f" the file has {len(data)} bytes",
            path,
        )
    if len(data) > expected:
        raise DatasetError(
            f"{path}: wrong size: the header promises shape {tuple(dims)} ({expected} bytes),"
            f" the file has {len(data)} bytes ({len(data) - expected} extra)",
            path,
        )
    return np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)


def write_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array as idx bytes (used by tests and tools that write small idx files)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()
