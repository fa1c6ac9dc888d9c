"""Which CIFAR-10 network trains on a CPU core? Candidates side by side in one run.

For each candidate (small CNNs with BN, narrow pre-activation ResNets, and the zoo's paper-scale models for
reference, at batch 32) it times, at batch 128 on 32x32x3 inputs, one training step (forward + backward to the
parameters, train mode) and one attack pass (forward + backward to the input, eval mode, parameters frozen), in both
memory layouts, interleaved so that a load change on a shared machine hits every candidate alike. It keeps the
fastest repetition by the thread's CPU time (the contention-free cost of one thread) and, beside it, the fastest
and median wall time. Parameter counts come with each row.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cifar_small_speed.py      # one thread; 16 min at load 10-24
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cifar_small_speed.py --learn-check   # does cnn-bn learn?

Writes benchmarks/results/cifar_small_speed/cifar_small_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from gradguard.atomic import atomic_write_text
from gradguard.provenance import git_commit

OUT = Path(__file__).resolve().parent / "results" / "cifar_small_speed"
BATCH = 128


def _candidates() -> dict[str, Callable[[], nn.Module]]:
    from gradguard.data.specs import get_spec
    from gradguard.models import build_model
    from gradguard.models.cifar_small import ConvBNNet, NarrowPreActResNet
    from gradguard.models.normalization import Normalize

    spec = get_spec("cifar10")

    def wrap(net: nn.Module) -> nn.Module:  # the zoo's form: normalization inside, [0, 1] inputs
        return nn.Sequential(Normalize(spec.mean, spec.std), net)

    return {
        "cnn-bn 16-32-64": lambda: wrap(ConvBNNet((16, 32, 64), 1)),
        "cnn-bn 32-64-128 (zoo: cnn-bn)": lambda: build_model("cnn-bn", "cifar10"),
        "cnn-bn 16-32-64, 2 convs/stage": lambda: wrap(ConvBNNet((16, 32, 64), 2)),
        "preact-resnet 16-32-64, 1-1-1 blocks (zoo: preact-resnet-mini)":
            lambda: build_model("preact-resnet-mini", "cifar10"),
        "preact-resnet 16-32-64, 2-2-2 blocks": lambda: wrap(NarrowPreActResNet((16, 32, 64), (2, 2, 2))),
        "lenet5 (zoo, reference)": lambda: build_model("lenet5", "cifar10"),
        "preact-resnet18 (zoo, paper scale)": lambda: build_model("preact-resnet18", "cifar10"),
        "vgg16 (zoo, paper scale)": lambda: build_model("vgg16", "cifar10"),
    }


#: The paper-scale models run at batch 32 (a batch-128 step takes seconds to tens of seconds on one loaded core);
#: their images/s are per image all the same.
_HEAVY_BATCH = {"preact-resnet18 (zoo, paper scale)": 32, "vgg16 (zoo, paper scale)": 32}


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()


def _attack_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    xr = x.detach().clone().requires_grad_(True)
    torch.autograd.grad(nn.functional.cross_entropy(model(xr), y), xr)


def _set_phase(model: nn.Module, phase: str) -> None:
    model.train(phase == "train_step")
    for p in model.parameters():
        p.requires_grad_(phase == "train_step")


def _inputs(batch: int, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=g)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, 10, (batch,), generator=g)


def measure(builders: dict[str, Callable[[], nn.Module]], repeats: int, inner: int) -> list[dict[str, object]]:
    """Per (candidate, phase, layout): fastest wall time and fastest thread CPU time per image, all interleaved.

    On a loaded machine wall time overstates the cost; the thread's CPU time (one thread: OMP_NUM_THREADS=1) is the
    contention-free figure, up to cache sharing. Both are recorded.
    """
    torch.manual_seed(0)
    layouts = ("contiguous", "channels_last")
    models: dict[tuple[str, str], nn.Module] = {}
    data: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
    for name, build in builders.items():
        net = build()
        models[(name, "contiguous")] = net
        models[(name, "channels_last")] = copy.deepcopy(net).to(memory_format=torch.channels_last)
        for lay in layouts:
            data[(name, lay)] = _inputs(_HEAVY_BATCH.get(name, BATCH), lay)
    phases = {"train_step": _train_step, "attack_pass": _attack_pass}
    wall: dict[tuple[str, str, str], list[float]] = {}
    cpu: dict[tuple[str, str, str], list[float]] = {}
    for phase, fn in phases.items():
        for key, m in models.items():
            _set_phase(m, phase)
            fn(m, *data[key])  # warm-up (oneDNN primitive creation)
        for _ in range(repeats):
            for (name, lay), m in models.items():
                x, y = data[(name, lay)]
                n_inner = 1 if name in _HEAVY_BATCH else inner
                t0, c0 = time.perf_counter(), time.thread_time()
                for _ in range(n_inner):
                    fn(m, x, y)
                wall.setdefault((name, phase, lay), []).append((time.perf_counter() - t0) / (n_inner * len(y)))
                cpu.setdefault((name, phase, lay), []).append((time.thread_time() - c0) / (n_inner * len(y)))
    rows: list[dict[str, object]] = []
    for name in builders:
        row: dict[str, object] = {"model": name, "batch": _HEAVY_BATCH.get(name, BATCH),
                                  "params": sum(p.numel() for p in models[(name, "contiguous")].parameters())}
        for phase in phases:
            best_cpu = {lay: min(cpu[(name, phase, lay)]) for lay in layouts}
            lay = min(best_cpu, key=best_cpu.__getitem__)
            row[phase] = {
                "layout": lay,
                "images_per_s_cpu_time": round(1 / best_cpu[lay]),
                "images_per_s_wall_fastest": round(1 / min(wall[(name, phase, lay)])),
                "images_per_s_wall_median": round(1 / statistics.median(wall[(name, phase, lay)])),
                "images_per_s_cpu_time_by_layout": {k: round(1 / v) for k, v in best_cpu.items()},
            }
        rows.append(row)
    return rows


def learn_check(n_train: int, n_test: int) -> dict[str, object]:
    """Does the zoo's cnn-bn learn CIFAR-10? One epoch of standard training on the first-seeded `n_train` images,
    clean accuracy on the first `n_test` test images (whatever copy the loader finds; recorded)."""
    import tempfile

    from gradguard import data
    from gradguard.checkpoint import load_model
    from gradguard.config import parse_config
    from gradguard.evaluation.predict import predict_labels
    from gradguard.training import train

    cfg = parse_config({
        "name": "cnn-bn-learn-check", "seed": 0,
        "data": {"dataset": "cifar10", "val_size": 0, "train_subset": n_train, "augment": True},
        "model": {"name": "cnn-bn"},
        "train": {"recipe": "standard", "epochs": 1, "batch_size": 128, "lr": 0.1, "schedule": "onecycle",
                  "val_attack": "none", "channels_last": True, "threads": 1, "progress": False, "tensorboard": False},
    })
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(cfg, Path(tmp) / "run")
        model = load_model(Path(tmp) / "run")
    test = data.load("cifar10", "test")
    x, y = test.subset(torch.arange(n_test)).tensors()
    with torch.no_grad():
        acc = (predict_labels(model, x, 1, 500, randomized=False) == y).float().mean().item()
    facts = data.info("cifar10", check_cache=False)
    return {"train_images": n_train, "epochs": 1, "train_wall_s": round(summary["wall_s"], 1),
            "test_images": n_test, "clean_accuracy": round(acc, 4), "data_source": facts["source"],
            "lossy": facts["lossy"]}


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--inner", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--learn-check", action="store_true", help="instead: train cnn-bn one epoch on 10,000 images and "
                    "report clean test accuracy (learn_check.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    uptime_before = _uptime()
    if args.learn_check:
        check = learn_check(10_000, 2_000)
        check.update({"command": " ".join(["OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "?"),
                                           Path(sys.executable).name, *sys.argv]),
                      "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"), "git": git_commit(),
                      "uptime_before": uptime_before, "uptime_after": _uptime(), "torch": torch.__version__})
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / "learn_check.json", json.dumps(check, indent=2) + "\n")
        print(json.dumps(check, indent=2))
        return 0
    rows = measure(_candidates(), args.repeats, args.inner)
    meta = {
        "command": " ".join(["OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "?"), Path(sys.executable).name,
                             *sys.argv]),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "git": git_commit(),
        "machine": f"{platform.machine()} {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}",
        "uptime_before": uptime_before,
        "uptime_after": _uptime(),
        "torch": torch.__version__,
        "batch": BATCH,
        "repeats": args.repeats,
        "inner": args.inner,
    }
    commit = (meta["git"] or {}).get("commit", "?")[:10]  # type: ignore[union-attr]
    lines = [
        f"Measured {meta['date_utc']} UTC at commit {commit}{' (dirty)' if meta['git'].get('dirty') else ''} on "  # type: ignore[union-attr]
        f"{meta['machine']}, torch {meta['torch']}; fastest of {args.repeats} interleaved repetitions of "
        f"{args.inner} calls (1 for the paper-scale models), 3x32x32 inputs, the better layout of contiguous / "
        "channels-last by CPU time. images/s by the thread's CPU time is the contention-free figure of one thread "
        "(two one-thread runs side by side on 2 cores: twice it in all); wall-clock figures beside it show the load.",
        f"`uptime` before: `{uptime_before}`; after: `{meta['uptime_after']}`.",
        f"Command: `{meta['command']}`.",
        "",
        "| model | params | batch | train step images/s: CPU time (wall fastest / median) | layout | "
        "attack pass images/s: CPU time (wall fastest / median) |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in rows:
        t, a = r["train_step"], r["attack_pass"]
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['batch']} | {t['images_per_s_cpu_time']:,} "  # type: ignore[index]
            f"({t['images_per_s_wall_fastest']:,} / {t['images_per_s_wall_median']:,}) | {t['layout']} | "  # type: ignore[index]
            f"{a['images_per_s_cpu_time']:,} ({a['images_per_s_wall_fastest']:,} / "  # type: ignore[index]
            f"{a['images_per_s_wall_median']:,}) |"  # type: ignore[index]
        )
    md = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "cifar_small_speed.json", json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    atomic_write_text(args.out / "cifar_small_speed.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
