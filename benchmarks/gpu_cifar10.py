"""Paper-scale CIFAR-10 on one GPU inside a fixed wall-clock budget (default 540 s, for a 10-minute device slot).

Four runs, each trained by gradguard's trainer and evaluated by its protocol, each leaving a results.json in the
schema `gradguard run` writes (so `scripts/update_results.py` and the results table read them):

1. ``cifar10-gpu-fast-at``: PreAct-ResNet-18 Fast-AT, Wong et al.'s recipe (eps 8/255, FGSM step 10/255 from a
   random start, cyclic lr up to 0.2, SGD momentum 0.9, wd 5e-4, batch 128, 15 epochs), bf16 autocast, channels-last.
2. ``cifar10-gpu-sgn``: the SGN recipe (learned input response, random start, one refinement step) on the same
   network, for the wall time Fast-AT took (same cost).
3. ``cifar10-gpu-graddiv-lam0`` / ``-lam1``: the noise-injection VGG-16 trained with GradDiv's MRL penalty at lam 0
   (the baseline) and lam 1 (4 draws per input, standard CE base).

Every run is evaluated with APGD-CE + targeted APGD (100 steps; 9 targets, or 3 with EOT over k = 10 draws and
m = 10 prediction draws for the randomized VGG) on the first 1,000 test images. How long each may train is planned
from a short throughput probe of that very run, printed before it starts, and enforced by `train.max_wall_s`;
an evaluation that no longer fits is shrunk to 500 images or skipped, and plan.json says so. What was done is
always written, whatever the deadline cut.

Data: `--data-root` (default .device-data/) holding the exact python batches (cifar-10-batches-py/ or
cifar-10-python.tar.gz) or the lossy JPEG archive cifar10-jpeg.tar.gz; the exact batches are preferred. No network.

    python benchmarks/gpu_cifar10.py --out gpu-out                  # on the GPU (benchmarks/gpu_cifar10.sh)
    python benchmarks/gpu_cifar10.py --toy --out /tmp/toy           # CPU end-to-end check, tiny models, seconds

Outputs under --out, small (JSON, Markdown, PNG; weights stay in --work): plan.json, results.md (the results
table of these runs), archive/<run>.json (slim results.json), runs/<run>/ (results, report, metrics, plots).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EPS = 8 / 255
PAPER_EPOCHS = 15
N_EVAL = 1000
_KEEP = ("results.json", "evaluation.json", "train_summary.json", "metrics.jsonl", "config.toml", "report.md")


@dataclass
class Plan:
    """Sizes of one invocation: the paper-scale default or the CPU toy."""

    toy: bool
    budget_s: float
    n_eval: int = N_EVAL
    attack_steps: int = 100
    probe_batches: int = 30
    resnet: str = "preact-resnet18"
    vgg: str = "vgg16"
    train_subset: int = 0
    val_size: int = 1000
    # fractions of the budget: training of Fast-AT (SGN matches its wall time) and of each GradDiv run; what
    # remains is kept for the probes, data loading and the four evaluations
    fast_share: float = 0.22
    graddiv_share: float = 0.08
    eval_share: dict[str, float] = field(default_factory=lambda: {"det": 0.07, "rand": 0.09})

    @classmethod
    def make(cls, toy: bool, budget_s: float | None) -> Plan:
        if not toy:
            return cls(False, budget_s or 540.0)
        return cls(True, budget_s or 120.0, n_eval=16, attack_steps=3, probe_batches=2, resnet="preact-resnet-mini",
                   vgg="cnn-bn", train_subset=256, val_size=32)


@dataclass
class Clock:
    budget_s: float
    start: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)


def _log(msg: str) -> None:
    print(f"[gpu_cifar10 {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- configs ---------------------------------------------------------------------------------------------------------


def _config(name: str, plan: Plan, data_root: str, model: dict[str, Any], train: dict[str, Any],
            evaluation: dict[str, Any]) -> Any:
    from gradguard.config import parse_config

    batch = 32 if plan.toy else 128
    t = {"epochs": PAPER_EPOCHS, "batch_size": batch, "optimizer": "sgd", "lr": 0.2, "momentum": 0.9,
         "weight_decay": 5e-4, "schedule": "onecycle", "onecycle_peak": 0.4, "norm": "linf", "eps": EPS,
         "amp": True, "channels_last": True, "val_attack_steps": 2 if plan.toy else 10, "val_attack_alpha": 2 / 255,
         "val_batch_size": 1000, "progress": False, "tensorboard": False, "log_every": 1 if plan.toy else 20,
         "checkpoint_every": 0, **train}
    if plan.toy:  # one epoch of 256 images at most, whatever the budget
        t["epochs"] = 1
    return parse_config({
        "name": name, "seed": 0,
        "data": {"dataset": "cifar10", "root": data_root, "val_size": plan.val_size, "train_subset": plan.train_subset,
                 "augment": True, "crop_padding": 4, "flip": True, "test_subset": plan.n_eval},
        "model": model, "train": t, "eval": {"eps": [EPS], "n": plan.n_eval, **evaluation},
    }, source=f"gpu_cifar10:{name}")


def fast_at_config(plan: Plan, root: str) -> Any:
    return _config("cifar10-gpu-fast-at", plan, root, {"name": plan.resnet},
                   {"recipe": "fast_at", "recipe_args": {"alpha_ratio": 1.25, "random_start": True,
                                                         "bn_mode": "train"}}, {"suite": "standard"})


def sgn_config(plan: Plan, root: str) -> Any:
    args = {"taps": ["input"], "response": "learned", "clean_weight": 0.5, "random_start": True, "step_scale": 1.25,
            "refine_steps": 1}
    return _config("cifar10-gpu-sgn", plan, root, {"name": plan.resnet}, {"recipe": "sgn", "recipe_args": args},
                   {"suite": "standard"})


def graddiv_config(plan: Plan, root: str, lam: float) -> Any:
    args = {"regularizer": "mrl", "lam": lam, "n_draws": 2 if plan.toy else 4, "warmup": 0.1, "base": "standard"}
    return _config(f"cifar10-gpu-graddiv-lam{lam:g}", plan, root, {"name": plan.vgg, "randomization": "noise"},
                   {"recipe": "graddiv", "recipe_args": args, "lr": 0.05, "epochs": 30},
                   {"suite": "rand", "m": 10, "k": eot_draws(plan, True)})


# -- one run: probe, plan, train, evaluate ---------------------------------------------------------------------------


def probe_rate(cfg: Any, plan: Plan, work: Path) -> float:
    """Training images/s of `cfg`'s own step, from a short run (its last logged window: warm-up excluded)."""
    from gradguard.runlog import read_metrics
    from gradguard.training import train

    batch = cfg.train.batch_size
    probe = cfg.model_copy(deep=True)
    probe.name = cfg.name + "-probe"
    probe.data.val_size = 0
    probe.data.train_subset = plan.probe_batches * batch
    probe.train.epochs = 1
    probe.train.val_attack = "none"
    probe.train.log_every = max(1, plan.probe_batches // 3)
    out = work / probe.name
    shutil.rmtree(out, ignore_errors=True)
    summary = train(probe, out)
    records = read_metrics(out / "metrics.jsonl", "train")
    rate = records[-1].get("imgs_per_s") if records else None
    if not rate or rate != rate:  # nan: a window of zero length
        rate = plan.probe_batches * batch / max(summary["wall_s"], 1e-6)
    shutil.rmtree(out, ignore_errors=True)
    return float(rate)


def plan_epochs(rate: float, seconds: float, n_train: int, cap: float) -> float:
    """Epochs that fit `seconds` at `rate` images/s, at most `cap`, in tenths (at least one tenth)."""
    return max(0.1, min(cap, int(10 * seconds * rate / n_train) / 10))


def eot_draws(plan: Plan, randomized: bool) -> int:
    """EOT draws per gradient: 10 for the randomized VGG (2 in the toy), 1 for deterministic models."""
    return (2 if plan.toy else 10) if randomized else 1


def evaluation_attacks(plan: Plan, randomized: bool) -> dict[str, Any]:
    """APGD-CE then targeted APGD (9 targets; 3 with EOT over k=10 for randomized models)."""
    from gradguard.evaluation.suites import AttackSpec

    k = eot_draws(plan, randomized)
    targets = (2 if plan.toy else 3) if randomized else (2 if plan.toy else 9)
    common = {"norm": "linf", "steps": plan.attack_steps, "restarts": 1, "eot": k}
    return {"apgd-ce": AttackSpec("APGD", {**common, "loss": "ce"}),
            "apgd-t": AttackSpec("APGDT", {**common, "n_target_classes": targets})}


def run_one(cfg: Any, *, plan: Plan, clock: Clock, work: Path, out: Path, device: str, train_seconds: float,
            randomized: bool, n_train: int, command: str, record: dict[str, Any]) -> dict[str, Any] | None:
    """Probe, plan, train (deadline-bound), evaluate (shrunk or skipped near the deadline); copy the small files."""
    from gradguard.runner import evaluate_run
    from gradguard.training import train

    entry: dict[str, Any] = {"name": cfg.name, "recipe": cfg.train.recipe, "model": cfg.model.name,
                             "randomization": cfg.model.randomization}
    record["runs"].append(entry)
    eval_reserve = plan.budget_s * plan.eval_share["rand" if randomized else "det"]
    if clock.left() - eval_reserve < 5:  # not even a probe and a few batches fit before its evaluation
        entry["skipped"] = f"deadline: {clock.left():.0f} s left, {eval_reserve:.0f} s kept for its evaluation"
        _log(f"{cfg.name}: skipped ({entry['skipped']})")
        return None
    rate = probe_rate(cfg, plan, work)
    train_seconds = min(train_seconds, clock.left() - eval_reserve)
    epochs = plan_epochs(rate, train_seconds, n_train, cfg.train.epochs)
    cfg.train.epochs = epochs
    cfg.train.max_wall_s = max(1.0, train_seconds * 1.1)
    cfg.train.val_every = max(0.1, epochs / 5)
    entry.update({"probe_images_per_s": round(rate, 1), "train_budget_s": round(train_seconds, 1),
                  "epochs_planned": epochs, "epochs_paper": PAPER_EPOCHS if cfg.train.recipe != "graddiv" else None})
    _log(f"{cfg.name}: probe {rate:.0f} images/s -> {epochs:g} epochs in at most {cfg.train.max_wall_s:.0f} s "
         f"({clock.left():.0f} s left)")
    run_dir = work / cfg.name
    shutil.rmtree(run_dir, ignore_errors=True)
    summary = train(cfg, run_dir)
    entry.update({"train_wall_s": round(summary["wall_s"], 1), "epochs_run": summary["epochs"],
                  "stopped_early": summary["stopped_early"]})
    n = plan.n_eval
    if clock.left() < eval_reserve and not plan.toy:
        n = 500 if clock.left() > eval_reserve / 2 else 0
    if n == 0:
        entry["evaluation"] = f"skipped: deadline ({clock.left():.0f} s left)"
        _log(f"{cfg.name}: evaluation skipped, {clock.left():.0f} s left")
        _copy_small(run_dir, out / "runs" / cfg.name)
        return summary
    entry["n_eval"] = n
    t0 = time.perf_counter()
    evaluate_run(cfg, run_dir, summary, command, attacks=evaluation_attacks(plan, randomized), device=device, n=n)
    entry["evaluation_wall_s"] = round(time.perf_counter() - t0, 1)
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    entry.update({"clean_accuracy": results["evaluation"]["clean_accuracy"],
                  "robust_accuracy": results["evaluation"]["robust_accuracy"]})
    _copy_small(run_dir, out / "runs" / cfg.name)
    from gradguard.report.results_table import archive_results

    archive_results(run_dir, out / "archive")
    return summary


def _copy_small(src: Path, dst: Path) -> None:
    """The run's record without weights or checkpoints: JSON, Markdown and PNG only."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and (f.name in _KEEP or f.suffix == ".png"):
            shutil.copy2(f, dst / f.name)


# -- the whole study -------------------------------------------------------------------------------------------------


def _device(requested: str) -> str:
    import torch

    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="small outputs (JSON, Markdown, PNG)")
    ap.add_argument("--work", type=Path, default=None, help="run directories with weights (default: a temp dir)")
    ap.add_argument("--data-root", default=".device-data", help="folder with CIFAR-10 (batches or JPEG archive); "
                    "'' = the library's own sources (cache, shared data)")
    ap.add_argument("--budget-s", type=float, default=None, help="wall-clock budget (default 540; toy 120)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--toy", action="store_true", help="CPU end-to-end check: tiny models, 256 images, 3 steps")
    args = ap.parse_args(argv)
    plan = Plan.make(args.toy, args.budget_s)
    clock = Clock(plan.budget_s)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    device = _device(args.device)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_cifar10-"))
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    from gradguard import data
    from gradguard.provenance import environment
    from gradguard.report.results_table import write_results_table

    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 evaluation on tensor cores
        torch.backends.cudnn.allow_tf32 = True
    root = args.data_root if args.data_root and Path(args.data_root).exists() else ""
    facts = data.info("cifar10", root=root or None, check_cache=False)
    n_train = plan.train_subset or facts["splits"]["train"]["count"] - plan.val_size
    record: dict[str, Any] = {"command": command, "budget_s": plan.budget_s, "toy": plan.toy, "device": device,
                              "data": {k: facts[k] for k in ("source", "lossy", "verified", "verification")},
                              "environment": environment(device), "runs": []}
    label = "CIFAR-10 (lossy JPEG copy, PSNR 27-33 dB)" if facts["lossy"] else "CIFAR-10 (exact python batches)"
    _log(f"data: {label}: {facts['source']}")
    _log(f"plan: budget {plan.budget_s:.0f} s on {device}; Fast-AT {plan.resnet} trains up to "
         f"{plan.fast_share * plan.budget_s:.0f} s ({PAPER_EPOCHS} epochs if they fit), SGN for Fast-AT's wall time, "
         f"GradDiv {plan.vgg}+noise lam 0 and 1 up to {plan.graddiv_share * plan.budget_s:.0f} s each; APGD-CE + "
         f"APGD-T ({plan.attack_steps} steps) on {plan.n_eval} test images each")

    def save_record() -> None:
        record["elapsed_s"] = round(plan.budget_s - clock.left(), 1)
        (args.out / "plan.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    common = {"plan": plan, "clock": clock, "work": work, "out": args.out, "device": device, "n_train": n_train,
              "command": command, "record": record}
    def attempt(cfg: Any, **kw: Any) -> dict[str, Any] | None:
        """One run; a failure is recorded and the next run still gets its slot."""
        try:
            return run_one(cfg, **kw, **common)
        except Exception as exc:  # noqa: BLE001 - any failure of one run is reported, not fatal to the others
            traceback.print_exc()
            entry = record["runs"][-1] if record["runs"] and record["runs"][-1]["name"] == cfg.name else None
            if entry is None:
                entry = {"name": cfg.name}
                record["runs"].append(entry)
            entry["error"] = f"{type(exc).__name__}: {exc}"
            return None
        finally:
            save_record()

    try:
        fast = attempt(fast_at_config(plan, root), train_seconds=plan.fast_share * plan.budget_s, randomized=False)
        matched = fast["wall_s"] if fast else plan.fast_share * plan.budget_s
        attempt(sgn_config(plan, root), train_seconds=matched, randomized=False)
        for lam in (0.0, 1.0):
            attempt(graddiv_config(plan, root, lam), train_seconds=plan.graddiv_share * plan.budget_s,
                    randomized=True)
    finally:
        save_record()
        if (args.out / "archive").exists():
            write_results_table(args.out / "archive", args.out / "results.md",
                                f"Data: {label}. Written by `{command}` within a {plan.budget_s:.0f} s budget.")
    _log(f"done in {plan.budget_s - clock.left():.0f} s; outputs in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
