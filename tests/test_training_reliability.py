"""What a run folder survives: NaN weights, damaged or foreign checkpoints, edited configs, cut logs, a full disk,
a missing dataset, a stop inside a logging window. Each case ends in one line on stderr and a status a script can
tell from success (1; 3 for non-finite values), with the folder left as it was."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch

from gradguard.checkpoint import load_checkpoint, save_checkpoint
from gradguard.cli import main
from gradguard.config import dump_config, parse_config
from gradguard.models import build_model
from gradguard.runlog import read_metrics
from gradguard.training import train
from gradguard.training.trainer import _Run

TIMING = ("wall_s", "val_wall_s", "imgs_per_s")


def config(**train_args: object) -> dict:
    """madry-cnn on 8x8 digits, 256 training images, batch 64: 4 batches per epoch."""
    t = {"recipe": "standard", "epochs": 1, "batch_size": 64, "lr": 0.05, "eps": 0.1, "val_every": 1,
         "val_attack_steps": 2, "val_batch_size": 100, "progress": False, "tensorboard": False, "threads": 1,
         "checkpoint_every": 2}
    t.update(train_args)
    return {"name": "rel", "seed": 0, "data": {"dataset": "digits", "val_size": 100, "train_subset": 256},
            "model": {"name": "madry-cnn"}, "train": t}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("finished") / "run"
    train(parse_config(config()), d)
    return d


@pytest.fixture
def copy(finished: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "run"))


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------- non-finite weights


def test_lr_inf_stops_at_the_step_with_status_3_and_exports_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case: the loss of the breaking step is finite, only the weights show it. `lr = inf` itself is now
    refused when the config loads (tests/test_config_validation.py), so the optimizer step is made to break a weight
    directly, as an infinite lr did."""
    real_step = torch.optim.SGD.step

    def breaking_step(self: torch.optim.SGD, *args: object, **kwargs: object) -> object:
        out = real_step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", breaking_step)
    cfg = tmp_path / "c.toml"
    cfg.write_text(dump_config(parse_config(config())))
    assert main(["train", str(cfg), "--out", str(tmp_path / "r")]) == 3
    err = _one_line(capsys)
    assert "non-finite weights after the optimizer step at epoch 0 step 0" in err and "no checkpoint" in err
    assert not (tmp_path / "r" / "model.safetensors").exists()
    assert main(["run", str(cfg), "--out", str(tmp_path / "r2")]) == 3
    assert "non-finite weights" in capsys.readouterr().err
    assert not (tmp_path / "r2" / "model.safetensors").exists() and not (tmp_path / "r2" / "results.json").exists()


def _poison_fourth_step(monkeypatch: pytest.MonkeyPatch, before=lambda: None) -> None:
    """The 4th SGD update writes an inf into the weights (its loss was finite); `before` runs just before it."""
    real_step = torch.optim.SGD.step
    calls = {"n": 0}

    def poisoned(self, closure=None):
        out = real_step(self, closure)
        calls["n"] += 1
        if calls["n"] == 4:
            before()
            self.param_groups[0]["params"][0].data.view(-1)[0] = float("inf")
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", poisoned)


def test_weights_going_non_finite_keep_the_last_finite_checkpoint(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from gradguard.training import NonFiniteLossError

    _poison_fourth_step(monkeypatch)
    with pytest.raises(NonFiniteLossError, match=r"weights .* at epoch 0 step 3 .* holds 1 NaN/inf .*\(step 2\)"):
        train(parse_config(config(epochs=2)), tmp_path / "r")
    tensors, meta = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.safetensors")
    assert meta["step"] == 2 and all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_the_kept_checkpoint_is_read_back_before_it_is_called_good(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from gradguard.training import NonFiniteLossError

    last = tmp_path / "r" / "checkpoints" / "last.safetensors"

    def damage() -> None:
        data = bytearray(last.read_bytes())
        data[-100] ^= 0x01
        last.write_bytes(bytes(data))

    _poison_fourth_step(monkeypatch, damage)
    with pytest.raises(NonFiniteLossError, match=r"the last checkpoint is not usable either: .* is damaged") as e:
        train(parse_config(config(epochs=2)), tmp_path / "r")
    assert "last good checkpoint" not in str(e.value)


# ------------------------------------------------------------------------------------------- resume refusals


def test_a_damaged_checkpoint_is_refused_and_nothing_changes(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    last = copy / "checkpoints" / "last.safetensors"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0x01  # one byte in the tensors
    last.write_bytes(bytes(data))
    before = _snapshot(copy)
    assert main(["train", "--resume", str(copy)]) == 1
    assert f"{last} is damaged" in _one_line(capsys)
    assert _snapshot(copy).keys() - {".lock"} == before.keys() - {".lock"}
    assert all(_snapshot(copy)[k] == v for k, v in before.items() if k != ".lock")


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda text: text.replace("lr = 0.05", "lr = 0.1"), "train.lr"),
    (lambda text: "", "data.dataset"),
])
def test_an_edited_or_emptied_config_is_refused_naming_the_keys(copy: Path, capsys: pytest.CaptureFixture[str],
                                                               edit, expected: str) -> None:
    own = copy / "config.toml"
    own.write_text(edit(own.read_text()))
    assert main(["train", "--resume", str(copy)]) == 1
    err = _one_line(capsys)
    assert "config differs" in err and expected in err and "config.toml edited" in err


def test_another_networks_checkpoint_is_refused(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    last = copy / "checkpoints" / "last.safetensors"
    tensors, meta = load_checkpoint(last)
    tensors = {k: v for k, v in tensors.items() if not k.startswith("model.")}
    tensors.update({f"model.{k}": v for k, v in build_model("madry-cnn", "mnist").state_dict().items()})
    save_checkpoint(last, tensors, meta)
    assert main(["train", "--resume", str(copy)]) == 1
    assert "holds another network's weights than 'madry-cnn'" in _one_line(capsys)


def test_another_world_size_is_refused(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    last = copy / "checkpoints" / "last.safetensors"
    tensors, meta = load_checkpoint(last)
    save_checkpoint(last, tensors, {**meta, "world_size": 2})
    assert main(["train", "--resume", str(copy)]) == 1
    assert "written by a 2-process run, this is a 1-process one" in _one_line(capsys)


def test_a_cut_metrics_log_is_refused(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.truncate(copy / "metrics.jsonl", 10)
    assert main(["train", "--resume", str(copy)]) == 1
    assert "metrics.jsonl is shorter (10 bytes) than when the last checkpoint was written" in _one_line(capsys)


def test_a_folder_without_config_names_the_command_that_starts_it(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / ".lock").write_text("")  # what a run killed before config.toml leaves
    assert main(["train", "--resume", str(tmp_path / "r")]) == 1
    assert f"gradguard train CONFIG --out {tmp_path / 'r'}" in _one_line(capsys)


def test_resume_removes_temporaries_of_a_killed_write(copy: Path) -> None:
    tmp = copy / "checkpoints" / ".last.safetensors.x1y2z3.tmp"
    tmp.write_bytes(b"\0" * 4096)
    train(parse_config(config()), copy, resume=True)
    assert not tmp.exists()


# ------------------------------------------------------------------------------------------- disk and data


def test_a_full_disk_is_one_line_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(dump_config(parse_config(config())))

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main(["train", str(cfg), "--out", str(tmp_path / "r")]) == 1
    err = _one_line(capsys)
    assert f"cannot write {tmp_path / 'r' / 'config.toml'}: No space left on device" in err


@pytest.mark.parametrize("command", ["train", "run"])
def test_a_missing_dataset_is_an_error_without_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str], command: str) -> None:
    from gradguard.data import api

    monkeypatch.setenv("GRADGUARD_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(api, "local_routes", lambda name: [])
    cfg = tmp_path / "c.toml"
    cfg.write_text(dump_config(parse_config(config())))
    assert main([command, str(cfg), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "dataset 'digits' not found" in err and "gradguard data fetch digits" in err


# ------------------------------------------------------------------------------------------- exact resume


class _Killed(BaseException):
    """Stands for SIGKILL right after a checkpoint: nothing after it is written."""


def test_stop_inside_a_logging_window_resumes_to_the_same_records(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config(config(epochs=2, log_every=3, checkpoint_every=2, val_every=0.5))
    train(cfg, tmp_path / "ref")
    save = _Run._save

    def save_then_die(self: _Run, name: str) -> None:
        save(self, name)
        if name == "last" and self.p.step == 4:  # windows end at steps 3 and 6: this one is half done
            raise _Killed

    monkeypatch.setattr(_Run, "_save", save_then_die)
    with pytest.raises(_Killed):
        train(cfg, tmp_path / "run")
    monkeypatch.undo()
    train(cfg, tmp_path / "run", resume=True)

    def records(d: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in TIMING}
                for r in read_metrics(d / "metrics.jsonl") if r["kind"] != "resume"]

    assert records(tmp_path / "run") == records(tmp_path / "ref")
    a, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    b, _ = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_a_full_disk_while_logging_names_the_log(tmp_path: Path) -> None:
    from gradguard.runlog import MetricsLog

    class FullDisk:
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            pass

    log = MetricsLog(tmp_path / "metrics.jsonl")
    log._f.close()
    log._f = FullDisk()
    with pytest.raises(OSError) as e:
        log.write({"kind": "train", "step": 1})
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "metrics.jsonl")
