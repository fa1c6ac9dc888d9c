"""What the reliability checks cost: finite-weights checks per training step, sha256 of checkpoints and caches.

Times one SmallCNN training step on an MNIST-size batch (128 x 1 x 28 x 28, SGD) with and without a finite check
of all parameters, and the check on its own; then hashing a checkpoint's tensors and the MNIST train cache arrays
(47 MB). The numbers behind checking every step (docs/training.md, "Reliability").

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/integrity_cost.py        # about 30 s, one thread
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import statistics
import time

import numpy as np
import torch

from gradguard.checkpoint import tensors_digest
from gradguard.data import cache
from gradguard.models import build_model
from gradguard.training.finite import all_finite


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

    out = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": platform.processor() or
           platform.machine(), "torch": torch.__version__, "threads": 1,
           "params": sum(p.numel() for p in params)}
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
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
