"""One vs two torch threads on CPU, side by side: the measurement behind gradguard's threads policy.

Times (a) SmallCNN training steps on MNIST at batch 100 and (b) APGD-CE (100 steps, no early stop, so every run
does the same work) on 100 MNIST test images, alternating 1 and 2 threads in each repeat, and prints the ratio
next to the load average read when each figure was taken (the `uptime` numbers). It also checks determinism: the
parameters after the training steps and the adversarial images from APGD, 1 thread against 2, same seed.

    .venv/bin/python benchmarks/threads_speed.py                 # about a minute on an idle 2-core machine

Random MNIST-shaped tensors stand in when MNIST is not cached (timing does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from gradguard.atomic import atomic_write_text
from gradguard.provenance import git_commit

OUT = Path(__file__).resolve().parent / "results" / "threads_speed"
THREADS = (1, 2)


def _data(n_train: int, n_test: int) -> tuple[Tensor, Tensor, Tensor, Tensor, str]:
    try:
        from gradguard.data import load

        train, test = load("mnist", "train"), load("mnist", "test")
        xtr, ytr = train.subset(range(n_train)).tensors()
        xte, yte = test.subset(range(n_test)).tensors()
        return xtr, ytr, xte, yte, "MNIST"
    except Exception:  # noqa: BLE001 - no MNIST here: the timing does not need real pixels
        g = torch.Generator().manual_seed(0)
        return (torch.rand(n_train, 1, 28, 28, generator=g), torch.randint(0, 10, (n_train,), generator=g),
                torch.rand(n_test, 1, 28, 28, generator=g), torch.randint(0, 10, (n_test,), generator=g), "random")


def _fresh_model() -> nn.Module:
    from gradguard.models import build_model

    torch.manual_seed(0)
    return build_model("smallcnn", "mnist")


def train_steps(x: Tensor, y: Tensor, steps: int, batch: int) -> tuple[float, nn.Module]:
    """Seconds for `steps` SGD steps from a fixed seed, and the trained model (for the determinism check)."""
    model = _fresh_model().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    t0 = time.perf_counter()
    for i in range(steps):
        lo = (i * batch) % (len(x) - batch + 1)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[lo : lo + batch]), y[lo : lo + batch]).backward()
        opt.step()
    return time.perf_counter() - t0, model


def apgd(model: nn.Module, x: Tensor, y: Tensor, steps: int) -> tuple[float, Tensor]:
    from gradguard.attacks import APGD

    attack = APGD(eps=0.3, steps=steps, early_stop=False, seed=0)
    t0 = time.perf_counter()
    x_adv = attack(model, x, y)
    return time.perf_counter() - t0, x_adv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--apgd-steps", type=int, default=100)
    ap.add_argument("--n", type=int, default=100, help="images attacked")
    ap.add_argument("--pretrain-steps", type=int, default=300, help="steps that train the attacked model (1 thread)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    commit = git_commit(Path(__file__).resolve().parent)  # at the start: the code that is measured
    xtr, ytr, xte, yte, source = _data(6000, args.n)
    torch.set_num_threads(1)
    _, attacked = train_steps(xtr, ytr, args.pretrain_steps, 100)  # a model on which APGD behaves as on a real one
    attacked.eval()
    times: dict[str, dict[int, list[float]]] = {"train": {t: [] for t in THREADS}, "apgd": {t: [] for t in THREADS}}
    loads: dict[str, dict[int, list[float]]] = {"train": {t: [] for t in THREADS}, "apgd": {t: [] for t in THREADS}}
    params: dict[int, Tensor] = {}
    advs: dict[int, Tensor] = {}
    for _ in range(args.repeats):
        for t in THREADS:
            torch.set_num_threads(t)
            loads["train"][t].append(os.getloadavg()[0])
            s, model = train_steps(xtr, ytr, args.train_steps, 100)
            times["train"][t].append(s / args.train_steps)
            params[t] = torch.cat([p.detach().flatten() for p in model.parameters()])
            loads["apgd"][t].append(os.getloadavg()[0])
            s, advs[t] = apgd(attacked, xte, yte, args.apgd_steps)
            times["apgd"][t].append(s)
            print(f"{t} thread(s): {times['train'][t][-1]:.3f} s/step, APGD {s:.2f} s, load "
                  f"{loads['train'][t][-1]:.1f} / {loads['apgd'][t][-1]:.1f}", flush=True)  # partial record
    torch.set_num_threads(1)
    rows = []
    for task, label in (("train", f"SmallCNN train step, batch 100 (s/step, {args.train_steps} steps)"),
                        ("apgd", f"APGD-CE {args.apgd_steps} steps on {args.n} images (s)")):
        med = {t: statistics.median(times[task][t]) for t in THREADS}
        rows.append({"task": label, **{f"{t}_thread_s": round(med[t], 4) for t in THREADS},
                     "ratio_2_over_1": round(med[2] / med[1], 3),
                     **{f"load_{t}_thread": [round(v, 2) for v in loads[task][t]] for t in THREADS},
                     "all_s": {t: [round(v, 4) for v in times[task][t]] for t in THREADS}})
    same = {"train_params_max_abs_diff": float((params[1] - params[2]).abs().max()),
            "apgd_x_adv_max_abs_diff": float((advs[1] - advs[2]).abs().max())}
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "commit": commit.get("commit"),
        "dirty": commit.get("dirty"),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "torch": torch.__version__,
        "data": source,
        "repeats": args.repeats,
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
    }
    lines = [
        f"Measured {meta['date_utc']} UTC at commit {str(meta['commit'])[:10]}"
        f"{' (uncommitted changes)' if meta['dirty'] else ''} on {meta['machine']}, torch "
        f"{meta['torch']}, {source} data; median of {args.repeats} alternating repeats. Load average (1 min) read "
        f"before each figure; at the end: {meta['load_average_end']}.",
        "",
        "| task | 1 thread | 2 threads | 2 / 1 | load (1 thread runs) | load (2 thread runs) |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['task']} | {r['1_thread_s']:.4f} | {r['2_thread_s']:.4f} | {r['ratio_2_over_1']:.2f} | "
                     f"{r['load_1_thread']} | {r['load_2_thread']} |")
    lines += ["", f"Same seed, 1 vs 2 threads: trained parameters differ by at most "
                  f"{same['train_params_max_abs_diff']:.3g}, APGD images by at most "
                  f"{same['apgd_x_adv_max_abs_diff']:.3g}."]
    md = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"meta": meta, "rows": rows, "determinism": same}
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    atomic_write_text(args.out / f"threads_speed-{stamp}.json", json.dumps(record, indent=2) + "\n")
    atomic_write_text(args.out / f"threads_speed-{stamp}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
