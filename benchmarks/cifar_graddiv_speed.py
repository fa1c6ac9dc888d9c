"""What one GradDiv training step costs on the CPU-scale CIFAR-10 network, in both memory layouts, side by side.

The CIFAR-10 GradDiv pair of benchmarks/cifar_small_study.py trains the zoo's cnn-bn with noise injection and 4 draws
per input. This times, at batch 128 on one thread, one step of the noise base alone (4 replicas forward, CE backward)
and one GradDiv step (the 4 per-draw input gradients with a graph, the MRL penalty, the double backward), contiguous
and channels-last, interleaved so that a load change hits every variant alike. The cost is the fastest repetition by
the thread's CPU time (the contention-free cost of one thread), the rates are images per second of that time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cifar_graddiv_speed.py     # about 2 minutes

Writes benchmarks/results/cifar_graddiv_speed/cifar_graddiv_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path

import torch

from gradguard.atomic import atomic_write_text
from gradguard.graddiv import draw_gradients, graddiv_penalty
from gradguard.models import build_model, randomize
from gradguard.provenance import git_commit

OUT = Path(__file__).resolve().parent / "results" / "cifar_graddiv_speed"
BATCH, DRAWS = 128, 4


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, lam: float) -> None:
    if lam > 0:
        grads, _, loss = draw_gradients(model, x, y, DRAWS, create_graph=True)
        total = loss.mean() + lam * graddiv_penalty("mrl", grads)
    else:
        logits = model(x.repeat_interleave(DRAWS, 0))
        total = torch.nn.functional.cross_entropy(logits, y.repeat_interleave(DRAWS, 0))
    opt.zero_grad()
    total.backward()
    opt.step()


def measure(reps: int) -> list[dict[str, object]]:
    torch.manual_seed(0)
    x, y = torch.rand(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))
    variants = {}
    for layout in ("contiguous", "channels_last"):
        for lam in (0.0, 1.0):
            model = randomize(build_model("cnn-bn", "cifar10"), "noise").train()
            xx = x
            if layout == "channels_last":
                model, xx = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
            variants[(layout, lam)] = (model, torch.optim.SGD(model.parameters(), lr=0.01), xx)
    times: dict[tuple[str, float], list[float]] = {key: [] for key in variants}
    for rep in range(reps + 1):  # the first repetition warms up and is dropped
        for key, (model, opt, xx) in variants.items():
            t0 = time.thread_time()
            _step(model, opt, xx, y, key[1])
            if rep:
                times[key].append(time.thread_time() - t0)
    return [{"layout": layout, "lam": lam, "images_per_s": BATCH / min(ts), "step_cpu_s": min(ts)}
            for (layout, lam), ts in times.items()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = measure(args.reps)
    meta = {"date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"), "git": git_commit(),
            "machine": f"{platform.machine()}, torch {torch.__version__}, 1 thread", "batch": BATCH, "draws": DRAWS,
            "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cifar_graddiv_speed.py"}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "cifar_graddiv_speed.json", json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"# One GradDiv step on cnn-bn + noise, batch {BATCH}, {DRAWS} draws ({meta['date_utc']} UTC)", "",
             f"`{meta['command']}`, commit `{str(meta['git'].get('commit', '?'))[:7]}`, {meta['machine']}.", "",
             "| layout | lam | images/s (thread CPU time) |", "| --- | --- | --- |"]
    lines += [f"| {r['layout']} | {r['lam']:g} | {r['images_per_s']:.1f} |" for r in rows]
    md = "\n".join(lines) + "\n"
    atomic_write_text(args.out / "cifar_graddiv_speed.md", md)
    print(md)


if __name__ == "__main__":
    main()
