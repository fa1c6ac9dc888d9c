"""What each example of the README costs on this machine: wall time of every command, run one after another.

The README states these costs; this script is where they come from. It needs the main job's model (run
`bash scripts/main.sh` first, or pass `--model`). Results go to benchmarks/results/readme_costs/ with the date, the
commit and the load average before and after each command (a busy machine makes every figure larger).

    .venv/bin/python benchmarks/readme_costs.py --model runs/mnist-sgn/model.safetensors     # about 10 minutes
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gradguard.atomic import atomic_write_text
from gradguard.provenance import git_commit

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "readme_costs"
GG = [sys.executable, "-m", "gradguard"]

PYTHON_EXAMPLE = """
import gradguard as gg
model = gg.load_model({model!r})
x, y = gg.data.load("mnist", "test").subset(range(200)).tensors()
x_adv = gg.attacks.PGD(eps=0.3, alpha=0.01, steps=40, seed=0)(model, x, y)
result = gg.evaluate(model, x, y, attacks="standard", eps=[0.1, 0.2, 0.3])
print(result.summary())
"""

RAND_EXAMPLE = """
import gradguard as gg
model = gg.load_model({model!r})
x, y = gg.data.load("mnist", "test").subset(range(50)).tensors()
noisy = gg.randomize(model, "noise")
print(gg.evaluate(noisy, x, y, attacks="rand", eps=[0.3], m=8, quick=True).summary())
"""


def examples(model: str, tmp: Path) -> list[tuple[str, list[str]]]:
    return [
        ("python: PGD-40 + evaluate(standard, 200 images, 3 eps)", [sys.executable, "-c",
                                                                    PYTHON_EXAMPLE.format(model=model)]),
        ("python: randomize + evaluate(rand, quick, 50 images, m=8)", [sys.executable, "-c",
                                                                       RAND_EXAMPLE.format(model=model)]),
        ("gradguard train configs/mnist-sgn.toml --set train.epochs=1",
         [*GG, "train", "configs/mnist-sgn.toml", "--set", "train.epochs=1", "--out", str(tmp / "train1")]),
        ("gradguard eval --suite apgd --n 500", [*GG, "eval", "--checkpoint", model, "--suite", "apgd", "--n", "500",
                                                 "--quiet"]),
        ("gradguard eval --suite standard --eps 0.1 0.2 0.3 --n 200",
         [*GG, "eval", "--checkpoint", model, "--suite", "standard", "--eps", "0.1", "0.2", "0.3", "--n", "200",
          "--quiet"]),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/mnist-sgn/model.safetensors")
    ap.add_argument("--only", type=int, nargs="+", help="indices of the examples to run")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, cmd) in enumerate(examples(args.model, Path(tmp))):
            if args.only and i not in args.only:
                continue
            load_before = os.getloadavg()[0]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            rows.append({"example": label, "wall_s": round(wall, 1), "rc": proc.returncode,
                         "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)})
            print(f"{wall:8.1f} s  rc {proc.returncode}  load {load_before:.1f}  {label}", flush=True)
            if proc.returncode:
                print(proc.stderr[-2000:], file=sys.stderr)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    record = {"date": stamp, "git": git_commit(ROOT), "cpus": os.cpu_count(), "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OUT / "results.json", json.dumps(record, indent=1))
    lines = [f"# README examples, wall time ({stamp}, commit {record['git'].get('commit', '?')[:7]}, "
             f"{os.cpu_count()} CPUs)", "", "| example | wall (s) | load before | rc |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {r['example']} | {r['wall_s']} | {r['load_before']} | {r['rc']} |" for r in rows]
    atomic_write_text(OUT / "results.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
