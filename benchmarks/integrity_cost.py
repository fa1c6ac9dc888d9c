"""What the reliability checks cost: finite-weights checks per training step, sha256 of checkpoints and caches.

Times one SmallCNN training step on an MNIST-size batch (128 x 1 x 28 x 28, SGD) with and without a finite check
of all parameters, and the check on its own; then hashing a checkpoint's tensors and the MNIST train cache arrays
(47 MB). The numbers behind checking every step (docs/training.md, "Reliability").

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/integrity_cost.py        # about a minute, one thread

Writes benchmarks/results/integrity_cost/integrity_cost.{json,md}.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from gradguard.atomic import atomic_write_text
from gradguard.checkpoint import tensors_digest
from gradguard.data import cache
from gradguard.models import build_model
from gradguard.training.finite import all_finite

OUT = Path(__file__).resolve().parent / "results" / "integrity_cost"


def _time(fn, repeat: int = 30) -> float:
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) * 1e3


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("smallcnn", "mnist")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    def step_checked() -> None:
        step()
        assert all_finite(params)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    out = {"command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/integrity_cost.py", "commit": commit,
           "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.0f}",
           "torch": torch.__version__, "threads": 1, "params": sum(p.numel() for p in params)}
    for _ in range(2):  # interleave so that drift hits both alike
        out["step_ms"] = _time(step)
        out["step_checked_ms"] = _time(step_checked)
    out["check_ms"] = _time(lambda: all_finite(params), 200)
    out["check_share_of_step"] = out["check_ms"] / out["step_ms"]
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    out["checkpoint_mb"] = sum(v.numel() * v.element_size() for v in state.values()) / 2**20
    out["checkpoint_digest_ms"] = _time(lambda: tensors_digest(state, "{}"), 10)
    meta = cache.read_meta("mnist")
    if meta is not None:
        images = np.load(cache.entry_dir("mnist") / "train-images.npy", mmap_mode="c")
        labels = np.load(cache.entry_dir("mnist") / "train-labels.npy")
        out["mnist_train_cache_mb"] = (images.nbytes + labels.nbytes) / 2**20
        out["mnist_train_digest_ms"] = _time(lambda: cache.array_digest(images, labels), 5)
    text = json.dumps(out, indent=2)
    print(text)
    atomic_write_text(OUT / "integrity_cost.json", text + "\n")
    rows = [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in out.items()]
    atomic_write_text(OUT / "integrity_cost.md", "| what | value |\n| --- | --- |\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
