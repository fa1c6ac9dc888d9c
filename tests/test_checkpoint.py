"""Checkpoints: safetensors + JSON only, exact optimizer round trip, atomic writes, pickle payloads refused."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gradguard.atomic import atomic_write_bytes, atomic_write_text
from gradguard.checkpoint import (
    CheckpointError,
    flatten_state,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
    unflatten_state,
)
from gradguard.models import build_model


def _net() -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net


def _steps(net: torch.nn.Module, opt: torch.optim.Optimizer, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(8, 5, generator=g), torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-4),
], ids=["sgd", "adam"])
def test_optimizer_state_round_trip_continues_identically(tmp_path: Path, make) -> None:
    net = _net()
    opt = make(net.parameters())
    _steps(net, opt, 3, seed=1)
    tensors, tree = flatten_state(opt.state_dict(), "optim")
    tensors.update({f"model.{k}": v for k, v in net.state_dict().items()})
    save_checkpoint(tmp_path / "c.safetensors", tensors, {"optimizer": tree, "epoch": 2, "step": 3})

    loaded, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert meta["epoch"] == 2 and meta["format"].startswith("gradguard-checkpoint")
    net2 = _net()
    net2.load_state_dict({k[6:]: v for k, v in loaded.items() if k.startswith("model.")})
    opt2 = make(net2.parameters())
    opt2.load_state_dict(unflatten_state(meta["optimizer"], loaded))
    _steps(net, opt, 2, seed=2)
    _steps(net2, opt2, 2, seed=2)
    for a, b in zip(net.parameters(), net2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert (tmp_path / "c.json").exists()  # human-readable copy


def test_flatten_keeps_int_keys_tuples_and_none() -> None:
    state = {"state": {0: {"buf": torch.ones(2)}, 3: {"buf": None}}, "groups": [{"betas": (0.9, 0.99), "x": "y"}]}
    tensors, tree = flatten_state(state, "s")
    back = unflatten_state(tree, tensors)
    assert set(back["state"]) == {0, 3} and back["state"][3]["buf"] is None
    assert back["groups"][0]["betas"] == (0.9, 0.99) and torch.equal(back["state"][0]["buf"], torch.ones(2))


def test_torch_save_payload_is_refused_with_file_name(tmp_path: Path) -> None:
    path = tmp_path / "last.safetensors"
    torch.save({"w": torch.zeros(3)}, path)  # a zip-wrapped pickle renamed to .safetensors
    with pytest.raises(CheckpointError, match=r"refusing to load .*last\.safetensors: it holds a pickle payload"):
        load_checkpoint(path)
    buf = io.BytesIO()
    pickle.dump({"w": [1, 2]}, buf, protocol=4)
    path.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="pickle payload"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="pickle payload"):
        load_model(path)


def test_garbage_truncated_and_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"hello world, not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"x\.safetensors is not a safetensors file"):
        load_checkpoint(path)
    save_checkpoint(path, {"a": torch.arange(1000.0)}, {"step": 1})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"x\.safetensors"):
        load_checkpoint(path)
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="without gradguard metadata"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no temporary left behind


def test_atomic_writes_get_umask_permissions(tmp_path: Path) -> None:
    """mkstemp makes 0600 files; checkpoints, configs, results and reports must be as readable as any new file."""
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "r.json", "{}\n")
    finally:
        os.umask(old)
    assert path.read_text() == "{}\n"
    assert path.stat().st_mode & 0o777 == 0o644


def test_shared_and_noncontiguous_tensors_are_saved(tmp_path: Path) -> None:
    w = torch.arange(12.0).view(3, 4)
    save_checkpoint(tmp_path / "c.safetensors", {"a": w, "b": w, "t": w.t()}, {})
    loaded, _ = load_checkpoint(tmp_path / "c.safetensors")
    assert torch.equal(loaded["t"], w.t()) and torch.equal(loaded["b"], w)


def test_exported_model_rebuilds_from_zoo(tmp_path: Path) -> None:
    with torch.random.fork_rng():
        torch.random.manual_seed(0)
        model = build_model("madry-cnn", "digits").eval()
    save_model(model, tmp_path / "model.safetensors", {"model": "madry-cnn", "dataset": "digits", "acc": 0.5})
    x = torch.rand(4, 1, 8, 8)
    for where in (tmp_path, tmp_path / "model.safetensors", tmp_path / "model.json"):
        loaded = load_model(where)
        assert not loaded.training
        assert torch.equal(loaded(x), model(x))


def test_exported_randomized_model_keeps_its_randomization(tmp_path: Path) -> None:
    from gradguard.models import is_randomized, randomize

    model = randomize(build_model("madry-cnn", "digits"), "noise", init_std=0.3)
    save_model(model, tmp_path / "m.safetensors", {"model": "madry-cnn", "dataset": "digits",
                                                   "randomization": "noise",
                                                   "randomization_args": {"init_std": 0.3}})
    loaded = load_model(tmp_path / "m.safetensors")
    assert is_randomized(loaded)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_model_weights_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    model = build_model("madry-cnn", "digits")
    save_model(model, tmp_path / "m.safetensors", {"model": "madry-cnn", "dataset": "mnist"})
    with pytest.raises(CheckpointError, match="do not fit .madry-cnn. on .mnist."):
        load_model(tmp_path / "m.safetensors")
    save_checkpoint(tmp_path / "c.safetensors", {"a": torch.zeros(1)}, {})
    with pytest.raises(CheckpointError, match="not an exported model"):
        load_model(tmp_path / "c.safetensors")


def test_read_metadata_reads_only_the_header(tmp_path: Path) -> None:
    from gradguard.checkpoint import read_metadata

    save_checkpoint(tmp_path / "c.safetensors", {"w": torch.zeros(10)}, {"step": 7, "config": {"a": [1, 2]}})
    assert read_metadata(tmp_path / "c.safetensors")["step"] == 7
    torch.save({"w": 1}, tmp_path / "p.safetensors")
    with pytest.raises(CheckpointError, match="pickle payload"):
        read_metadata(tmp_path / "p.safetensors")


# ----------------------------------------------------------------------------------------------- integrity


def _flip(path: Path, where: int) -> None:
    data = bytearray(path.read_bytes())
    data[where] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["tensor bytes", "metadata", "digest"])
def test_one_flipped_byte_is_refused_by_name(tmp_path: Path, where: str) -> None:
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, {"w": torch.arange(1000.0), "b": torch.ones(3, dtype=torch.bfloat16)}, {"step": 12345})
    data = path.read_bytes()
    offset = {"tensor bytes": len(data) - 2001, "metadata": data.index(b"12345"),
              "digest": data.index(b"gradguard_sha256") + len('gradguard_sha256":"') + 3}[where]
    _flip(path, offset)
    with pytest.raises(CheckpointError, match=rf"{path} is damaged: the sha256 .* differs"):
        load_checkpoint(path)


def test_a_damaged_exported_model_is_refused(tmp_path: Path) -> None:
    model = build_model("madry-cnn", "digits")
    save_model(model, tmp_path / "model.safetensors", {"model": "madry-cnn", "dataset": "digits"})
    _flip(tmp_path / "model.safetensors", -5)
    with pytest.raises(CheckpointError, match="model.safetensors is damaged"):
        load_model(tmp_path)


def test_files_written_before_digests_still_load(tmp_path: Path) -> None:
    import json

    from safetensors.torch import save as st_save

    path = tmp_path / "old.safetensors"
    path.write_bytes(st_save({"w": torch.ones(2)}, metadata={"gradguard": json.dumps({"step": 3})}))
    tensors, meta = load_checkpoint(path)
    assert meta == {"step": 3} and torch.equal(tensors["w"], torch.ones(2))


def test_export_refuses_non_finite_weights(tmp_path: Path) -> None:
    model = build_model("madry-cnn", "digits")
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    with pytest.raises(CheckpointError, match=r"refusing to export .*model.safetensors: .* holds \d+ non-finite"):
        save_model(model, tmp_path / "model.safetensors", {"model": "madry-cnn", "dataset": "digits"})
    assert not (tmp_path / "model.safetensors").exists()


def test_a_failed_write_names_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as e:
        atomic_write_bytes(tmp_path / "last.safetensors", b"x")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "last.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("meta", "expected"), [
    ('{"format": "gradguard-model/1", "dataset": "digits"}', "lacks 'model'"),
    ('{"format": "gradguard-model/1", "model": "madry-cnn", "dataset": "digits", "model_args": [1]}',
     "'model_args' must be a JSON object"),
    ('{"format": "gradguard-model/1", "model": "nosuch", "dataset": "digits"}', "ValueError"),
    ('{"format": "gradguard-model/1", "model": ', "corrupt gradguard metadata"),
    ("[1, 2]", "must be a JSON object"),
])
def test_hand_made_model_metadata_is_refused_by_name(tmp_path: Path, meta: str, expected: str) -> None:
    from safetensors.torch import save as st_save

    path = tmp_path / "model.safetensors"
    path.write_bytes(st_save({"w": torch.ones(2)}, metadata={"gradguard": meta}))
    with pytest.raises(CheckpointError, match=rf"{path}.*{expected}"):
        load_model(path)
