"""Memory layout on CPU: contiguous (NCHW) vs channels-last, side by side in one run.

Times, for each zoo model (and the small MNIST nets with each kind of noise layer), one training step (forward +
backward to the parameters; channels-last weights and batch) and one attack pass (forward + backward to the input,
parameters frozen; the caller's NCHW weights, channels-last input, as the attacks run it) in both layouts,
interleaved, and reports the ratio. This is the measurement behind gradguard's attacks choosing
channels-last for conv nets on CPU and behind `train.channels_last` (docs/attacks.md, docs/training.md).

    .venv/bin/python benchmarks/layout_speed.py                  # one thread, two to five minutes
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from gradguard.atomic import atomic_write_text

OUT = Path(__file__).resolve().parent / "results" / "layout_speed"
#: (model, dataset, batch, randomization). The randomized nets run at 128 rows, the size of an EOT pass on CPU
#: (`gradients.AUTO_CHUNK_ROWS`); PNI and Bayesian layers call F.conv2d themselves instead of holding an nn.Conv2d.
CASES = [
    ("smallcnn", "mnist", 100, None), ("lenet5", "mnist", 100, None), ("preact_resnet18", "cifar10", 16, None),
    *((m, "mnist", 128, kind) for kind in ("noise", "pni", "bayes") for m in ("smallcnn", "lenet5")),
]


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()


def _attack_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    xr = x.detach().clone().requires_grad_(True)
    torch.autograd.grad(nn.functional.cross_entropy(model(xr), y), xr)


def measure(name: str, dataset: str, batch: int, kind: str | None, repeats: int, inner: int) -> dict[str, object]:
    from gradguard.data.specs import get_spec
    from gradguard.models import build_model, randomize

    spec = get_spec(dataset)
    torch.manual_seed(0)
    nchw = build_model(name, dataset)
    if kind is not None:
        nchw = randomize(nchw, kind)
    cl = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    x = torch.rand(batch, spec.channels, spec.size, spec.size)
    y = torch.randint(0, spec.num_classes, (batch,))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    row: dict[str, object] = {"model": name if kind is None else f"{name} + {kind}", "batch": batch}
    for phase, fn, mode in (("train_step", _train_step, "train"), ("attack_pass", _attack_pass, "eval")):
        for m in (nchw, cl):
            m.train(mode == "train")
            for p in m.parameters():
                p.requires_grad_(mode == "train")
        # Training holds the weights channels-last (`train.channels_last`); attacks leave the caller's weights alone
        # and feed channels-last inputs only (`layout.channels_last_input`), which is what is timed here.
        fast = cl if phase == "train_step" else nchw
        cases = {"contiguous": lambda f=fn: f(nchw, x, y), "channels_last": lambda f=fn, m=fast: f(m, x_cl, y)}
        for f in cases.values():
            f()
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(repeats):  # interleaved, so a load change hits both layouts alike
            for k, f in cases.items():
                t0 = time.perf_counter()
                for _ in range(inner):
                    f()
                times[k].append((time.perf_counter() - t0) / inner)
        med = {k: statistics.median(v) for k, v in times.items()}
        row[phase] = {
            "contiguous_ms": round(1000 * med["contiguous"], 2),
            "channels_last_ms": round(1000 * med["channels_last"], 2),
            "speedup": round(med["contiguous"] / med["channels_last"], 3),
        }
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--inner", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [measure(n, d, b, k, args.repeats, args.inner) for n, d, b, k in CASES]
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()} {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}",
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "repeats": args.repeats,
    }
    lines = [
        f"Measured {meta['date_utc']} UTC on {meta['machine']}, torch {meta['torch']}, load average at the end "
        f"{meta['load_average'][0]:.1f}; median of {args.repeats} interleaved repeats of {args.inner} calls.",
        "",
        "| model | batch | train step ms (contiguous / channels-last) | speedup | attack pass ms | speedup |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        t, a = r["train_step"], r["attack_pass"]
        lines.append(
            f"| {r['model']} | {r['batch']} | {t['contiguous_ms']} / {t['channels_last_ms']} | {t['speedup']} | "  # type: ignore[index]
            f"{a['contiguous_ms']} / {a['channels_last_ms']} | {a['speedup']} |"  # type: ignore[index]
        )
    md = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "layout_speed.json", json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    atomic_write_text(args.out / "layout_speed.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
