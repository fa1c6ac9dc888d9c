"""A run killed with SIGKILL (or stopped with Ctrl-C) at a random moment resumes to the same final result.

Real processes: `gradguard train` in a subprocess, killed after its first checkpoint at a random delay, then
`gradguard train --resume`. The run uses every kind of state a resume must restore: Adam moments, a recipe with
persistent state (Free-AT's perturbation), the recipe Generator, and the global RNG (a noise-randomized network).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gradguard.checkpoint import load_checkpoint
from gradguard.config import dump_config, load_config, parse_config
from gradguard.runlog import read_metrics
from gradguard.training import train

pytestmark = pytest.mark.slow

CONFIG = {
    "name": "resume", "seed": 3,
    "data": {"dataset": "digits", "val_size": 100, "train_subset": 192},
    "model": {"name": "madry-cnn", "randomization": "noise"},
    "train": {"recipe": "free_at", "recipe_args": {"m": 2}, "epochs": 2, "batch_size": 32, "optimizer": "adam",
              "lr": 1e-3, "eps": 0.1, "schedule": "cosine", "val_every": 0.5, "val_attack_steps": 2,
              "checkpoint_every": 2, "log_every": 2, "progress": False, "tensorboard": False, "threads": 1},
}
TIMING = ("wall_s", "val_wall_s", "imgs_per_s")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ref") / "run"
    train(parse_config(CONFIG), d)
    return d


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "resume.toml"
    path.write_text(dump_config(parse_config(CONFIG)))
    return path


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "gradguard", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path) -> None:
    last = run_dir / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 120
    while not last.exists():
        assert proc.poll() is None, f"training ended before its first checkpoint: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)


def _same_result(run_dir: Path, reference: Path) -> None:
    a, _ = load_checkpoint(run_dir / "checkpoints" / "last.safetensors")
    b, _ = load_checkpoint(reference / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # weights, optimizer moments, recipe state, RNG states
    def strip(recs: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in recs if r["kind"] != "resume"]
    assert strip(read_metrics(run_dir / "metrics.jsonl")) == strip(read_metrics(reference / "metrics.jsonl"))


def test_sigkill_at_a_random_moment_then_resume(tmp_path: Path, reference: Path) -> None:
    run_dir = tmp_path / "killed"
    proc = _cli(str(_config_file(tmp_path)), "--out", str(run_dir))
    _wait_for_checkpoint(proc, run_dir)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 0.4))
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = load_checkpoint(run_dir / "checkpoints" / "last.safetensors")[1]["step"]
    assert 0 < killed_at < 24  # 12 batches x 2 replays in all
    resumed = _cli("--resume", str(run_dir))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    _same_result(run_dir, reference)


def test_ctrl_c_saves_a_resumable_checkpoint(tmp_path: Path, reference: Path) -> None:
    run_dir = tmp_path / "interrupted"
    proc = _cli(str(_config_file(tmp_path)), "--out", str(run_dir))
    _wait_for_checkpoint(proc, run_dir)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert not (run_dir / "train_summary.json").exists()
    _, meta = load_checkpoint(run_dir / "checkpoints" / "last.safetensors")
    assert meta["progress"]["done"] is False and meta["step"] % 2 == 0  # saved at a batch boundary
    train(load_config(run_dir / "config.toml"), run_dir, resume=True)
    _same_result(run_dir, reference)
