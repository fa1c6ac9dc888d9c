"""Persistence that never unpickles: safetensors for tensors, JSON for everything else, atomic writes.

A checkpoint is ONE `.safetensors` file whose header metadata carries the JSON (config, versions, seed, device,
progress, the non-tensor parts of optimizer/recipe state), so a crash can never leave a weights file and a metadata
file that disagree; a readable `.json` copy is written next to it for people. Files are written to a temporary
name and renamed into place (`os.replace`), so a reader sees the old file or the new one, never half of one.
The header also carries a sha256 of the tensors and the metadata (`tensors_digest`), checked on every load: a file
changed after it was written (a flipped bit, a partial overwrite) is refused by name instead of trained on.

    save_checkpoint(path, tensors, meta);  tensors, meta = load_checkpoint(path)
    save_model(model, "run/model.safetensors", {...});  model = load_model("run")
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from gradguard.atomic import atomic_write_bytes
from gradguard.errors import GradguardError

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "read_metadata",
    "flatten_state",
    "unflatten_state",
    "save_model",
    "load_model",
    "network_from_info",
    "tensors_digest",
]

_META_KEY = "gradguard"
_DIGEST_KEY = "gradguard_sha256"
CHECKPOINT_FORMAT = "gradguard-checkpoint/1"
MODEL_FORMAT = "gradguard-model/1"


class CheckpointError(GradguardError, ValueError):
    """A checkpoint or model file that cannot be read safely; the message names the file."""


# ----------------------------------------------------------------------------------------------- raw files


def _check_safetensors_bytes(data: bytes, path: Path) -> None:
    """Refuse anything that is not a safetensors file, naming pickle payloads explicitly.

    A safetensors file is an 8-byte little-endian header length, then a JSON header starting with '{'. Only when
    that structure is absent do we look for pickle signatures (a zip archive from `torch.save`, or a raw pickle
    stream starting with the PROTO opcode 0x80), since a header length may itself start with byte 0x80.
    """
    if len(data) >= 9:
        (header_len,) = struct.unpack("<Q", data[:8])
        if header_len <= len(data) - 8 and data[8:9] == b"{":
            return
    if data[:4] == b"PK\x03\x04" or (data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        raise CheckpointError(
            f"refusing to load {path}: it holds a pickle payload (torch.save / pickle format), which could run "
            "arbitrary code when loaded; gradguard checkpoints are safetensors and are never unpickled"
        )
    raise CheckpointError(f"{path} is not a safetensors file (bad header, {len(data)} bytes); "
                          "was it truncated or overwritten?")


def _read(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str], Path]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no such checkpoint file: {path}") from None
    _check_safetensors_bytes(data, path)
    try:
        tensors = st_load(data)
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8: 8 + header_len])
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read {path} as safetensors: {e}") from None
    return tensors, header.get("__metadata__", {}) or {}, path


def tensors_digest(tensors: Mapping[str, Tensor], meta_text: str) -> str:
    """sha256 over the metadata text and every tensor's name, dtype, shape and bytes (in name order).

    Computed from the tensors rather than the file, so it can sit inside the file it protects: one file, one write,
    no sidecar that a crash could leave disagreeing with its checkpoint.
    """
    h = hashlib.sha256(meta_text.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def _sealed(tensors: Mapping[str, Tensor], meta_text: str) -> bytes:
    """The safetensors bytes of `tensors` with `meta_text` and its digest in the header."""
    own = _tensor_dict(tensors)
    return st_save(own, metadata={_META_KEY: meta_text, _DIGEST_KEY: tensors_digest(own, meta_text)})


def _verify(tensors: Mapping[str, Tensor], header_meta: Mapping[str, str], path: Path) -> None:
    """Refuse a file whose tensors or metadata changed after it was written (files from before digests pass)."""
    want = header_meta.get(_DIGEST_KEY)
    if want is None or _META_KEY not in header_meta:
        return
    got = tensors_digest(tensors, header_meta[_META_KEY])
    if got != want:
        raise CheckpointError(f"{path} is damaged: the sha256 of its contents ({got[:16]}...) differs from the one "
                              f"written with it ({want[:16]}...); it was changed after it was written and is not used")


def _tensor_dict(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # safetensors refuses shared storage and non-contiguous tensors: give it private contiguous CPU copies.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


# ----------------------------------------------------------------------------------------------- state trees


def flatten_state(obj: Any, prefix: str) -> tuple[dict[str, Tensor], Any]:
    """Split a nested state (dicts with str/int keys, lists, tuples, scalars, tensors) into tensors + a JSON tree.

    Tensors become ``{"__tensor__": key}`` in the tree; int dict keys (optimizer state) survive the JSON round trip.
    """
    tensors: dict[str, Tensor] = {}

    def walk(o: Any, path: str) -> Any:
        if isinstance(o, Tensor):
            tensors[path] = o
            return {"__tensor__": path}
        if isinstance(o, Mapping):
            if all(isinstance(k, str) for k in o):
                return {"__dict__": {k: walk(v, f"{path}.{k}") for k, v in o.items()}}
            return {"__items__": [[_key(k), walk(v, f"{path}.{k}")] for k, v in o.items()]}
        if isinstance(o, (list, tuple)):
            return {"__list__": [walk(v, f"{path}.{i}") for i, v in enumerate(o)], "tuple": isinstance(o, tuple)}
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        raise TypeError(f"cannot checkpoint a {type(o).__name__} at {path}")

    return tensors, walk(obj, prefix)


def _key(k: Any) -> Any:
    if isinstance(k, (bool, int, float, str)) or k is None:
        return k
    raise TypeError(f"cannot checkpoint dict key of type {type(k).__name__}")


def unflatten_state(tree: Any, tensors: Mapping[str, Tensor]) -> Any:
    """Inverse of `flatten_state`."""
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__dict__" in tree:
            return {k: unflatten_state(v, tensors) for k, v in tree["__dict__"].items()}
        if "__items__" in tree:
            return {k: unflatten_state(v, tensors) for k, v in tree["__items__"]}
        if "__list__" in tree:
            items = [unflatten_state(v, tensors) for v in tree["__list__"]]
            return tuple(items) if tree.get("tuple") else items
    return tree


# ----------------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | os.PathLike[str], tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    """Atomically write one safetensors file holding `tensors` with `meta` (JSON) in its header, plus a .json copy."""
    path = Path(path)
    meta = {"format": CHECKPOINT_FORMAT, **meta}
    text = json.dumps(meta, sort_keys=True)
    atomic_write_bytes(path, _sealed(tensors, text))
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint written by `save_checkpoint`; never unpickles, refuses pickle payloads and damaged files."""
    tensors, header_meta, path = _read(path)
    if _META_KEY not in header_meta:
        raise CheckpointError(f"{path} is a safetensors file without gradguard metadata (not a gradguard checkpoint)")
    _verify(tensors, header_meta, path)
    try:
        meta = json.loads(header_meta[_META_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: corrupt gradguard metadata ({e})") from None
    return tensors, meta


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Only the JSON metadata of a checkpoint or exported model (reads the header, not the tensors)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) == 8:
                (header_len,) = struct.unpack("<Q", head)
                size = path.stat().st_size
                if header_len <= size - 8:
                    data = head + f.read(header_len)
                    _check_safetensors_bytes(data, path)
                    header = json.loads(data[8:])
                    text = (header.get("__metadata__") or {}).get(_META_KEY)
                    if text is not None:
                        return json.loads(text)
    except FileNotFoundError:
        raise CheckpointError(f"no such checkpoint file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    return load_checkpoint(path)[1]  # not a well-formed gradguard file: let the full reader say precisely why


# ----------------------------------------------------------------------------------------------- exported models


def save_model(model: nn.Module, path: str | os.PathLike[str], info: Mapping[str, Any]) -> None:
    """Export a plain network: weights + JSON saying how to rebuild it.

    `info` must carry ``model`` (zoo name) and ``dataset``; optional ``model_args``, ``randomization`` (kind or
    "none") and ``randomization_args``; anything else (run name, accuracy, provenance) is kept as a record.
    A network that computes more than its zoo builder at test time says so itself (``inference_record()``, e.g.
    SGN's active inference): the record is stored as ``inference`` and `network_from_info` rebuilds it.
    Weights holding NaN or inf are refused (CheckpointError): such a model would only ever score chance.
    """
    missing = [k for k in ("model", "dataset") if k not in info]
    if missing:
        raise ValueError(f"save_model: info lacks {missing}")
    path = Path(path)
    state = model.state_dict()
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"refusing to export {path}: {name} holds {bad} non-finite (NaN or inf) values")
    meta = {"format": MODEL_FORMAT, "model_args": {}, "randomization": "none", "randomization_args": {}, **info}
    record = getattr(model, "inference_record", None)
    if callable(record):
        meta["inference"] = record()
    atomic_write_bytes(path, _sealed(state, json.dumps(meta, sort_keys=True)))
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def network_from_info(info: Mapping[str, Any]) -> nn.Module:
    """The untrained network an exported model's `info` describes (see `save_model`): zoo builder, randomization.

    The trainer builds its network through this too, so `load_model` always rebuilds what was trained.
    """
    from gradguard.models import build_model

    model: nn.Module = build_model(info["model"], info["dataset"], **info.get("model_args", {}))
    kind = info.get("randomization", "none")
    if kind and kind != "none":
        from gradguard.models import randomize

        model = randomize(model, kind, **info.get("randomization_args", {}))
    inference = info.get("inference")
    if inference:
        from gradguard.models.sgn_active import with_inference

        model = with_inference(model, inference)
    return model


_MODEL_META_TYPES = {"model": str, "dataset": str, "model_args": dict, "randomization": str,
                     "randomization_args": dict, "inference": dict}


def _model_meta(text: str, file: Path) -> dict[str, Any]:
    """An exported model's JSON record, checked for what `network_from_info` reads: crafted or damaged metadata
    is a CheckpointError naming the file and the field, not a KeyError or TypeError deep in a builder."""
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file}: corrupt gradguard metadata ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{file}: gradguard metadata must be a JSON object (got {type(meta).__name__})")
    if meta.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{file} is a {meta.get('format')!r} file, not an exported model ({MODEL_FORMAT})")
    for key, kind in _MODEL_META_TYPES.items():
        if key in ("model", "dataset") and key not in meta:
            raise CheckpointError(f"{file}: gradguard metadata lacks {key!r}")
        if key in meta and not isinstance(meta[key], kind):
            raise CheckpointError(f"{file}: gradguard metadata field {key!r} must be a JSON "
                                  f"{'object' if kind is dict else 'string'} (got {meta[key]!r})")
    return meta


def _model_file(path: Path) -> Path:
    if path.is_dir():
        return path / "model.safetensors"
    if path.suffix == ".json":
        return path.with_suffix(".safetensors")
    return path


def load_model(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild an exported network (zoo builder + randomization) and load its weights; eval mode.

    `path` may be the `.safetensors` file, its `.json`, or a run directory (its `model.safetensors`).
    """
    file = _model_file(Path(path))
    tensors, header_meta, file = _read(file)
    if _META_KEY not in header_meta:
        raise CheckpointError(f"{file} has no gradguard model metadata")
    _verify(tensors, header_meta, file)
    meta = _model_meta(header_meta[_META_KEY], file)
    try:
        model = network_from_info(meta)
    except (KeyError, TypeError, ValueError) as e:  # unknown zoo name, dataset or randomization; bad arguments
        raise CheckpointError(f"{file}: its metadata describes a network that cannot be built: {e} "
                              f"({type(e).__name__})") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{file}: weights do not fit {meta['model']!r} on {meta['dataset']!r}: {e}") from None
    return model.to(device).eval()
