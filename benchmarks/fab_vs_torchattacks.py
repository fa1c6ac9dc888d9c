"""FAB-T: gradguard against torchattacks 3.5.1 on the same small digits network, at AutoAttack's settings.

Trains the conv net of the tests on the offline 8x8 digits (10 epochs, seconds), then runs FAB-T (9 targets, 100
steps, 1 restart, alpha_max 0.1, eta 1.05, beta 0.9) from both libraries on the first `--n` test images, L-inf
and L2: robust accuracy and wall time at one eps, and the median minimal perturbation with one target (no eps).
Writes `fab_vs_torchattacks.{md,json}` under `--out`.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fab_vs_torchattacks.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from gradguard.atomic import atomic_write_text
from gradguard.attacks import FABT
from gradguard.data import load
from gradguard.provenance import environment

SETTINGS = {"linf": 0.1, "l2": 0.5}


def train_digits_net(seed: int = 0) -> nn.Module:
    x, y = load("digits", "train").tensors()
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 64), nn.ReLU(),
                        nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(10):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            b = order[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[b]), y[b]).backward()
            opt.step()
    return net.eval()


def _norms(x_adv: Tensor, x: Tensor, norm: str) -> Tensor:
    d = (x_adv - x).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


def _timed(fn):
    """(result, wall s, CPU s of this process): on a shared machine the CPU time is the steadier measure."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def compare(model: nn.Module, x: Tensor, y: Tensor, norm: str, eps: float, steps: int) -> dict:
    import torchattacks as ta

    ta_norm = "Linf" if norm == "linf" else "L2"
    @torch.no_grad()
    def robust(a: Tensor) -> float:
        return float((model(a).argmax(1) == y).float().mean())

    @torch.no_grad()
    def fooled(a: Tensor) -> Tensor:
        return model(a).argmax(1) != y

    with torch.random.fork_rng():  # torchattacks reseeds the global RNG
        reference = ta.FAB(model, norm=ta_norm, eps=eps, steps=steps, multi_targeted=True, n_classes=10)
        theirs, t_theirs, c_theirs = _timed(lambda: reference(x, y))
        theirs_min = ta.FAB(model, norm=ta_norm, eps=1e3, steps=steps, multi_targeted=True, n_classes=2)(x, y)
    ours, t_ours, c_ours = _timed(lambda: FABT(eps=eps, norm=norm, steps=steps)(model, x, y))
    ours_min = FABT(norm=norm, steps=steps, n_target_classes=1)(model, x, y)
    ok_o, ok_t = fooled(ours_min), fooled(theirs_min)
    return {
        "norm": norm, "eps": eps,
        "robust_ours": robust(ours), "robust_theirs": robust(theirs), "wall_ours_s": t_ours, "wall_theirs_s": t_theirs,
        "cpu_ours_s": c_ours, "cpu_theirs_s": c_theirs,
        "median_min_ours": float(_norms(ours_min, x, norm)[ok_o].median()),
        "median_min_theirs": float(_norms(theirs_min, x, norm)[ok_t].median()),
        "fooled_min_ours": float(ok_o.float().mean()), "fooled_min_theirs": float(ok_t.float().mean()),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="test images")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/fab"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)  # torchattacks' FAB draws nothing with one restart; this only pins the training shuffle
    model = train_digits_net()
    x, y = load("digits", "test").tensors()
    x, y = x[: args.n], y[: args.n]
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    rows = [compare(model, x, y, norm, eps, args.steps) for norm, eps in SETTINGS.items()]
    import torchattacks

    meta = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="minutes"), "n": args.n,
            "steps": args.steps, "clean_accuracy": clean, "torchattacks": torchattacks.__version__,
            "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fab_vs_torchattacks.py",
            "load_average": round(os.getloadavg()[0], 1), **environment()}
    lines = [
        f"FAB-T, 9 targets, {args.steps} steps, digits net (clean accuracy {clean:.3f}), first {args.n} test images;",
        f"{meta['date']}, torch {meta['torch']}, torchattacks {meta['torchattacks']}, commit "
        f"{meta['git'].get('commit', '?')[:7]}, one thread, load average {meta['load_average']}.",
        "",
        "| norm | eps | robust acc. (ours / torchattacks) | CPU s (ours / torchattacks) | wall s (ours / torchattacks) "
        "| median minimal norm, 1 target (ours / torchattacks) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['norm']} | {r['eps']} | {r['robust_ours']:.3f} / {r['robust_theirs']:.3f} | "
                     f"{r['cpu_ours_s']:.1f} / {r['cpu_theirs_s']:.1f} | "
                     f"{r['wall_ours_s']:.1f} / {r['wall_theirs_s']:.1f} | "
                     f"{r['median_min_ours']:.4f} / {r['median_min_theirs']:.4f} |")
    md = "\n".join(lines) + "\n"
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "fab_vs_torchattacks.json", json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    atomic_write_text(args.out / "fab_vs_torchattacks.md", md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
