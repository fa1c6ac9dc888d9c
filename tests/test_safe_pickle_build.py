"""The restricted unpickler refuses BUILD on anything but arrays and dtypes: a crafted BUILD on an allowed
function could rewrite its defaults for the whole process. Pickles are written opcode by opcode here."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from gradguard.data.errors import DatasetError
from gradguard.data.safe_pickle import ALLOWED_GLOBALS, safe_loads


def _body(obj: object) -> bytes:
    """The opcodes that push `obj` (a protocol-2 pickle without its PROTO header and STOP)."""
    data = pickle.dumps(obj, protocol=2)
    assert data[:2] == b"\x80\x02" and data[-1:] == b"."
    return data[2:-1]


def _build_on(global_line: bytes, state: object) -> bytes:
    # PROTO 2, GLOBAL module\nname\n, <state>, BUILD, STOP
    return b"\x80\x02c" + global_line + _body(state) + b"b."


def test_build_cannot_change_an_allowed_functions_defaults() -> None:
    encode = ALLOWED_GLOBALS[("_codecs", "encode")]
    before = encode.__defaults__
    crafted = _build_on(b"_codecs\nencode\n", (None, {"__defaults__": ("latin-1", "ignore")}))
    with pytest.raises(DatasetError, match="refusing to set the state of a function"):
        safe_loads(crafted, "evil.pkl")
    assert encode.__defaults__ == before


def test_build_with_a_dict_state_is_refused_too() -> None:
    crafted = _build_on(b"_codecs\nencode\n", {"__kwdefaults__": {"x": 1}})
    with pytest.raises(DatasetError, match="evil.pkl: not a plain CIFAR batch pickle"):
        safe_loads(crafted, "evil.pkl")
    assert not getattr(ALLOWED_GLOBALS[("_codecs", "encode")], "__kwdefaults__", None)


def test_build_on_a_plain_container_is_refused() -> None:
    crafted = b"\x80\x02}" + _body({"a": 1}) + b"b."  # EMPTY_DICT then BUILD with a dict state
    with pytest.raises(DatasetError, match="refusing to set the state of a dict"):
        safe_loads(crafted, "evil.pkl")


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_arrays_and_cifar_like_batches_still_load(protocol: int) -> None:
    batch = {b"data": np.arange(3072 * 4, dtype=np.uint8).reshape(4, 3072), b"labels": [3, 1, 4, 1],
             b"batch_label": b"training batch 1 of 5", "dtype": np.dtype("<f4")}
    out = safe_loads(pickle.dumps(batch, protocol=protocol), "ok.pkl")
    assert np.array_equal(out[b"data"], batch[b"data"]) and out[b"labels"] == [3, 1, 4, 1]
    assert out["dtype"] == np.dtype("<f4")
