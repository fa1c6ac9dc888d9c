"""MNIST networks on CPU, side by side: images/s of one training step (forward + backward), interleaved.

The measurement behind the main job's choice of `strided-cnn` (configs/mnist-sgn.toml): it is reported as a ratio to
SmallCNN measured in the same run, the fastest of `--repeats` interleaved rounds (interference from other work on a
shared machine only adds time), on one thread and on all cores.

    .venv/bin/python benchmarks/mnist_model_speed.py              # about a minute on an idle 2-core machine
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

from gradguard.atomic import atomic_write_text
from gradguard.models import build_model
from gradguard.provenance import environment, git_commit

OUT = Path(__file__).resolve().parent / "results" / "mnist_model_speed"
MODELS = ("smallcnn", "strided-cnn", "madry-cnn", "lenet5")


def step_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, inner: int) -> float:
    """Seconds per training step (forward, backward to the parameters), averaged over `inner` steps."""
    t0 = time.perf_counter()
    for _ in range(inner):
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
    return (time.perf_counter() - t0) / inner


def measure(threads: int, batch: int, repeats: int, inner: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    models = {name: build_model(name, "mnist").train() for name in MODELS}
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    best = dict.fromkeys(MODELS, float("inf"))
    for model in models.values():  # warm-up
        step_time(model, x, y, 2)
    for _ in range(repeats):
        for name, model in models.items():
            best[name] = min(best[name], step_time(model, x, y, inner))
    return {name: batch / t for name, t in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--inner", type=int, default=10)
    args = ap.parse_args()
    rows = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        rows[threads] = measure(threads, args.batch, args.repeats, args.inner)
    lines = [f"# MNIST networks, training step on CPU (batch {args.batch}, fastest of {args.repeats})", "",
             "| threads | " + " | ".join(MODELS) + " | strided-cnn / smallcnn |",
             "| ---: | " + " | ".join("---:" for _ in MODELS) + " | ---: |"]
    for threads, speeds in rows.items():
        lines.append(f"| {threads} | " + " | ".join(f"{speeds[m]:,.0f} img/s" for m in MODELS)
                     + f" | {speeds['strided-cnn'] / speeds['smallcnn']:.2f}x |")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines += ["", f"{stamp}, commit {git_commit().get('commit', '?')[:7]}, load average {os.getloadavg()[0]:.2f}"]
    text = "\n".join(lines)
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OUT / "results.md", text + "\n")
    atomic_write_text(OUT / "results.json", json.dumps({"date": stamp, "batch": args.batch, "images_per_s": rows,
                                                         "environment": environment("cpu"),
                                                         "git": git_commit()}, indent=1))


if __name__ == "__main__":
    main()
