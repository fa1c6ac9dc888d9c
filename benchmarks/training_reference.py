"""Reference training runs for docs/training.md: MNIST SmallCNN, standard training and PGD-AT (eps 0.3).

Trains each config under an explicit, reduced budget (CPU time on the dev machine is scarce), then measures clean
accuracy on the test split and PGD-40 robust accuracy (eps 0.3, alpha 0.01, random start) on its first
``--test-n`` images, and writes ``<out>/<name>/reference.json`` plus a time-to-robustness plot.

    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/training_reference.py --which standard pgd-at \\
        --out benchmarks/results/training-reference > /tmp/ref.log 2>&1 &

Budgets (overrides of the configs) are recorded in the JSON together with the command and the environment.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

# name -> (config, budget overrides)
RUNS = {
    "standard": ("configs/mnist-standard.toml", [
        "train.epochs=1", "train.val_every=0.25", "data.val_size=500", "train.progress=false", "train.threads=1",
    ]),
    "pgd-at": ("configs/mnist-pgd-at.toml", [
        "train.epochs=0.15", "train.batch_size=128", "train.lr=1e-3", "train.val_every=0.03", "data.val_size=500",
        "train.checkpoint_every=20", "train.progress=false", "train.threads=1",
    ]),
}


def evaluate_test(model: torch.nn.Module, n_robust: int) -> dict[str, float]:
    from gradguard.attacks import PGD
    from gradguard.data import load

    x, y = load("mnist", "test").tensors()
    model.eval()
    with torch.no_grad():
        clean = sum((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item() for i in range(0, len(y), 1000))
    attack = PGD(eps=0.3, norm="linf", steps=40, alpha=0.01, random_start=True, seed=0)
    t0 = time.perf_counter()
    xr, yr = x[:n_robust], y[:n_robust]
    robust = 0
    for i in range(0, n_robust, 500):
        xa = attack(model, xr[i:i + 500], yr[i:i + 500])
        with torch.no_grad():
            robust += (model(xa).argmax(1) == yr[i:i + 500]).sum().item()
    return {"test_clean_acc": clean / len(y), "test_n": len(y), "test_pgd40_acc": robust / n_robust,
            "test_pgd40_n": n_robust, "pgd40_wall_s": time.perf_counter() - t0}


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, vals in curves.items():
        axes[0].plot([v["fb_passes"] for v in vals], [v["val_robust_acc"] for v in vals], "o-", label=name)
        axes[1].plot([v["wall_s"] for v in vals], [v["val_robust_acc"] for v in vals], "o-", label=name)
    axes[0].set_xlabel("forward+backward passes (batches)")
    axes[1].set_xlabel("training wall seconds (validation excluded)")
    for ax in axes:
        ax.set_ylabel("val PGD-40 accuracy (eps 0.3)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--which", nargs="+", choices=sorted(RUNS), default=sorted(RUNS))
    parser.add_argument("--out", default="benchmarks/results/training-reference")
    parser.add_argument("--test-n", type=int, default=1000, help="test images attacked with PGD-40")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from gradguard.checkpoint import load_model
    from gradguard.config import load_config
    from gradguard.provenance import environment
    from gradguard.runlog import read_metrics
    from gradguard.training import train

    out = Path(args.out)
    for name in args.which:
        config, budget = RUNS[name]
        cfg = load_config(config, budget)
        run_dir = out / name
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        resume = (run_dir / "checkpoints" / "last.safetensors").exists()
        summary = train(cfg, run_dir, resume=resume)
        test = evaluate_test(load_model(run_dir), args.test_n)
        vals = read_metrics(run_dir / "metrics.jsonl", "val")
        record = {"name": name, "config": config, "budget_overrides": budget, "started_utc": started,
                  "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
                  "machine": "2-core CPU dev machine (shared with other jobs), torch threads = 1",
                  "environment": environment("cpu"), "train_summary": summary, "test": test,
                  "time_to_robustness": [{k: v[k] for k in ("epoch", "step", "wall_s", "fb_passes", "val_clean_acc",
                                                            "val_robust_acc")} for v in vals]}
        (run_dir / "reference.json").write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps({"name": name, **test, "wall_s": summary["wall_s"], "fb_passes": summary["fb_passes"]}),
              flush=True)
    curves = {name: read_metrics(out / name / "metrics.jsonl", "val") for name in sorted(RUNS)
              if (out / name / "metrics.jsonl").exists()}
    plot(curves, out / "time_to_robustness.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
