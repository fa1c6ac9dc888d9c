"""A restricted unpickler for the CIFAR python batches: plain containers and numpy arrays, nothing else.

The CIFAR-10 batches are pickles, and ``pickle.load`` runs whatever callable a file names. This reader resolves
only the globals an ndarray needs (its reconstructor, ``ndarray`` and ``dtype``) plus a latin-1-only
``_codecs.encode`` (how protocol-2 pickles written by Python 3 store bytes); every other global is refused, so a
malicious file raises an error instead of executing code.

BUILD (``obj.__setstate__(state)`` or ``obj.__dict__.update(state)``) is allowed only on the objects an ndarray
pickle builds: arrays and dtypes. On anything else, such as the allowed ``_latin1_encode`` function itself, it could
rewrite that object's attributes (``__defaults__``) for the whole process. The check needs the pure-Python
unpickler (the C one cannot be hooked per opcode); a CIFAR batch is a few thousand opcodes, so this costs
milliseconds.
"""

from __future__ import annotations

import codecs
import io
import pickle
from typing import Any

import numpy as np

from gradguard.data.errors import DatasetError

__all__ = ["safe_loads", "ALLOWED_GLOBALS"]

try:  # numpy >= 2 moved the reconstructor; pickles name either module
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    if codecs.lookup(encoding).name not in ("latin-1", "iso8859-1"):
        raise _Refused(f"refusing _codecs.encode with encoding {encoding!r}")
    return codecs.encode(obj, "latin-1", errors)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _Refused(pickle.UnpicklingError):
    """The pickle asked for something outside the allow-list."""


class _RestrictedUnpickler(pickle._Unpickler):  # noqa: SLF001 - the Python unpickler, for its dispatch table
    dispatch = dict(pickle._Unpickler.dispatch)  # noqa: SLF001

    def load_build(self) -> None:
        stack = self.stack  # type: ignore[attr-defined]  # the Python unpickler's working stack
        target = stack[-2] if len(stack) >= 2 else None
        if not isinstance(target, (np.ndarray, np.dtype)):
            raise _Refused(f"refusing to set the state of a {type(target).__name__} (only arrays and dtypes)")
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]  # noqa: SLF001

    dispatch[pickle.BUILD[0]] = load_build  # type: ignore[assignment]  # a subclass method in its own table

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"refusing to load global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("refusing persistent ids")


def safe_loads(data: bytes, path: object) -> Any:
    """Unpickle ``data`` with the allow-list; any refusal or corruption is a DatasetError naming ``path``."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _Refused as exc:
        raise DatasetError(f"{path}: not a plain CIFAR batch pickle: {exc}", path) from exc
    except Exception as exc:  # a corrupt pickle can fail in many ways; all of them mean a bad file
        raise DatasetError(f"{path}: truncated or corrupt pickle ({type(exc).__name__}: {exc})", path) from exc
    return obj
