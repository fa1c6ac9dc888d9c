"""torchrun with 2 Gloo processes on CPU trains the same network as 1 process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gradguard.checkpoint import load_checkpoint
from gradguard.config import dump_config, parse_config
from gradguard.runlog import read_metrics
from gradguard.training import train
from gradguard.training.distributed import DistInfo, shard

CONFIG = {
    "name": "ddp", "seed": 0,
    "data": {"dataset": "digits", "val_size": 100, "train_subset": 128},
    # madry-cnn: no BatchNorm, no dropout, so per-rank statistics or masks cannot differ from one process
    "model": {"name": "madry-cnn"},
    # PGD-AT without random start: the attack's extra forward/backward passes run inside every step, and there is
    # no per-rank randomness
    "train": {"recipe": "pgd_at", "recipe_args": {"steps": 2, "random_start": False}, "epochs": 2,
              "batch_size": 32, "lr": 0.05, "momentum": 0.9, "eps": 0.1, "val_every": 1, "val_attack_steps": 2,
              "progress": False, "tensorboard": False, "threads": 1, "log_every": 1},
}


def test_shard_bounds_cover_the_batch() -> None:
    x = torch.zeros(10)
    parts = [shard(x, DistInfo(rank=r, world_size=3)) for r in range(3)]
    assert parts == [(0, 3), (3, 6), (6, 10)]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    single = train(parse_config(CONFIG), tmp_path / "one")
    cfg_file = tmp_path / "ddp.toml"
    cfg_file.write_text(dump_config(parse_config(CONFIG)))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                           "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    env["TMPDIR"] = str(tmp_path / "tmp")  # torchrun's torchelastic_* folders go there, removed with tmp_path
    (tmp_path / "tmp").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gradguard",
         "train", str(cfg_file), "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    a, meta_a = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.safetensors")
    b, meta_b = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.safetensors")
    assert meta_b["world_size"] == 2 and meta_a["step"] == meta_b["step"] == 8
    for k in a:
        if k.startswith("model."):
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    # rank 0 alone logs: one metrics file, each record once; the training loss/accuracy are global averages
    ta, tb = (read_metrics(tmp_path / d / "metrics.jsonl", "train") for d in ("one", "two"))
    assert [r["step"] for r in tb] == [r["step"] for r in ta]
    for ra, rb in zip(ta, tb, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-4)
        assert rb["fb_passes"] == ra["fb_passes"]  # passes are per batch, whatever the world size
    # validation is sharded over ranks and summed: clean accuracy is the same
    va, vb = (read_metrics(tmp_path / d / "metrics.jsonl", "val") for d in ("one", "two"))
    assert [v["val_clean_acc"] for v in vb] == pytest.approx([v["val_clean_acc"] for v in va], abs=0.011)
    assert single["final_val"]["val_clean_acc"] == pytest.approx(vb[-1]["val_clean_acc"], abs=0.011)
