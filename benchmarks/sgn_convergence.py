"""SGN convergence and robustness benchmark on MNIST SmallCNN, eps 0.3 (docs/sgn.md).

Every method trains from the same seed with the same optimizer (Adam 1e-3, batch 100, constant lr) and the same
robust validation (PGD-40, step 0.01, 200 held-out training images, five times per run); the trainer logs wall time
(validation excluded) and forward+backward passes with each validation. After training `gradguard run` attacks the
exported network with the standard suite (quick variant) and this script adds PGD-40 and CW-Linf on the same test
images, so a gain cannot come from masking.

    python benchmarks/sgn_convergence.py launch --root runs/sgn-bench --jobs 2       # train + evaluate all
    python benchmarks/sgn_convergence.py launch --root runs/sgn-bench --only sgn pgd10
    python benchmarks/sgn_convergence.py extra  --root runs/sgn-bench                # PGD-40 + CW-Linf on test
    python benchmarks/sgn_convergence.py table  --root runs/sgn-bench [--md out.md] [--png curves.png]
    python benchmarks/sgn_convergence.py launch --root runs/sgn-bench-seed1 --seed 1 --jobs 1   # another seed
    python benchmarks/sgn_convergence.py seeds runs/sgn-bench runs/sgn-bench-seed1 runs/sgn-bench-seed2

`table` regenerates everything in docs/records/2026-11-21-sgn-mnist-convergence.md from the run directories alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gradguard.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "sgn-mnist-conv.toml"
GRADGUARD = str(Path(sys.executable).parent / "gradguard")

# name -> (label, epochs, overrides on top of configs/sgn-mnist-conv.toml). Budgets: see docs/sgn.md.
METHODS: dict[str, tuple[str, float, list[str]]] = {
    "sgn": ("SGN (learned, input tap)", 0.4, []),
    "pgd10": ("PGD-AT, 10 steps", 0.15, ["train.recipe=pgd_at",
                                        "train.recipe_args={steps=10, alpha=0.03, random_start=true}"]),
    "pgd40": ("PGD-AT, 40 steps", 0.05, ["train.recipe=pgd_at",
                                         "train.recipe_args={steps=40, alpha=0.01, random_start=true}"]),
    "fast_at": ("Fast-AT (FGSM, random start, 1.25 eps)", 0.4, [
        "train.recipe=fast_at", "train.recipe_args={alpha_ratio=1.25, random_start=true}"]),
    "trades": ("TRADES (beta 6, 10 steps)", 0.12, ["train.recipe=trades",
                                                   "train.recipe_args={beta=6.0, steps=10, step_size=0.03}"]),
    # Ablations of SGN.
    "sgn_sign": ("SGN ablation: sign response (no parameters)", 0.4, ['train.recipe_args.response="sign"']),
    "sgn_hidden": ("SGN ablation: input + 2 hidden taps", 0.4, [
        'train.recipe_args.taps=["input", "net.features.pool1", "net.features.pool2"]']),
    "sgn_noclean": ("SGN ablation: no clean term", 0.4, ["train.recipe_args.clean_weight=0.0"]),
    "sgn_rs": ("SGN variant: random start, step 1.25 eps", 0.4, [
        "train.recipe_args.random_start=true", "train.recipe_args.step_scale=1.25"]),
    "sgn_refine": ("SGN variant: + 1 refinement PGD step (3 passes per batch)", 0.4, [
        "train.recipe_args.refine_steps=1"]),
    "sgn_refine_long": ("SGN variant: + 1 refinement step, 0.6 epoch (about PGD-10's passes)", 0.6, [
        "train.recipe_args.refine_steps=1"]),
    "sgn_sign_refine": ("SGN ablation: sign response + 1 refinement step", 0.24, [
        'train.recipe_args.response="sign"', "train.recipe_args.refine_steps=1"]),
    "sgn_alt": ("SGN variant: alternating ascent (Adam 1e-3)", 0.4, ['train.recipe_args.adversary="alternating"']),
}
VALS_PER_RUN = 5  # robust validations per run (val_every = epochs / VALS_PER_RUN)
HEADLINE_REFS = ("pgd10", "pgd40")


def _cmd(name: str, root: Path, epochs: float | None, seed: int | None = None) -> list[str]:
    _, default_epochs, overrides = METHODS[name]
    ep = epochs if epochs is not None else default_epochs
    sets = [f"train.epochs={ep}", f"train.val_every={ep / VALS_PER_RUN:.4f}", f"name=\"sgn-bench-{name}\""]
    if seed is not None:
        sets.append(f"seed={seed}")
    args = [GRADGUARD, "run", str(BASE), "--out", str(root / name)]
    for o in overrides + sets:
        args += ["--set", o]
    return args


def launch(root: Path, names: list[str], jobs: int, epochs: float | None, seed: int | None = None) -> None:
    """Run `gradguard run` for each method, `jobs` at a time, logs next to the run directories."""
    root.mkdir(parents=True, exist_ok=True)
    pending, running = list(names), []
    while pending or running:
        while pending and len(running) < jobs:
            name = pending.pop(0)
            log = open(root / f"{name}.log", "w")  # noqa: SIM115 - closed when the process ends
            cmd = _cmd(name, root, epochs, seed)
            (root / f"{name}.cmd").write_text(" ".join(cmd) + "\n")
            running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log))
            print(f"started {name}", flush=True)
        time.sleep(5)
        for item in list(running):
            name, proc, log = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                print(f"finished {name}: exit {proc.returncode}", flush=True)


def extra(root: Path, names: list[str], n: int, steps: int) -> None:
    """PGD-40 and CW-Linf on the first `n` test images for each finished run (written to extra_eval.json)."""
    import torch

    from gradguard import data
    from gradguard.attacks import PGD, CWLinf
    from gradguard.checkpoint import load_model

    torch.set_num_threads(1)
    test = data.load("mnist", "test")
    test = test.subset(torch.arange(n))
    x, y = test.tensors()
    for name in names:
        run = root / name
        if not (run / "model.safetensors").exists() or (run / "extra_eval.json").exists():
            continue
        model = load_model(run / "model.safetensors").eval()
        out: dict[str, Any] = {"n": n, "eps": 0.3}
        with torch.no_grad():
            out["clean"] = float((model(x).argmax(1) == y).float().mean())
        for key, attack in (("pgd40", PGD(eps=0.3, steps=40, alpha=0.01, seed=0)),
                            (f"cw_linf{steps}", CWLinf(eps=0.3, steps=steps, alpha=0.01, seed=0))):
            t0 = time.perf_counter()
            x_adv = attack(model, x, y)
            with torch.no_grad():
                out[key] = float((model(x_adv).argmax(1) == y).float().mean())
            out[f"{key}_wall_s"] = time.perf_counter() - t0
        atomic_write_text(run / "extra_eval.json", json.dumps(out, indent=2) + "\n")
        print(name, out, flush=True)


# -- the table ---------------------------------------------------------------------------------------------
def _vals(run: Path) -> list[dict[str, Any]]:
    from gradguard.runlog import read_metrics

    return read_metrics(run / "metrics.jsonl", "val", missing_ok=True)


def first_reach(vals: list[dict[str, Any]], target: float, key: str = "wall_s") -> float | None:
    """The first `key` (wall_s or fb_passes) at which robust validation accuracy reached `target`."""
    for v in vals:
        if v["val_robust_acc"] >= target - 1e-9:
            return float(v[key])
    return None


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "—" if v is None else format(v, spec)


def _suite(run: Path) -> dict[str, Any]:
    """Worst case over the suite (last eps), each attack's cumulative accuracy, triggered masking flags."""
    from gradguard.evaluation import EvalResult

    path = run / "evaluation.json"
    if not path.exists():
        return {}
    ev = EvalResult.load(path)
    attacks = {name: acc[-1] for name, acc in ev.cumulative_accuracy().items()}
    flags = [f.name for f in ev.triggered_flags]
    return {"worst": ev.robust_accuracy[-1], "clean": ev.clean_accuracy, "attacks": attacks, "flags": flags, "n": ev.n}


def table(root: Path, md: Path | None, png: Path | None) -> str:
    runs = {name: root / name for name in METHODS if (root / name / "metrics.jsonl").exists()}
    lines = [f"Run root: `{root}`", ""]
    lines += ["| run | epochs | train wall s | fb passes (batches) | final val PGD-40 | best val PGD-40 "
              "| test clean | test PGD-40 | test CW-Linf | suite worst case | masking flags |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, run in runs.items():
        vals = _vals(run)
        if not vals:
            continue
        last = vals[-1]
        extra_path = run / "extra_eval.json"
        ex = json.loads(extra_path.read_text()) if extra_path.exists() else {}
        cw = next((v for k, v in ex.items() if k.startswith("cw_linf") and not k.endswith("wall_s")), None)
        suite = _suite(run)
        lines.append(
            f"| {METHODS[name][0]} | {last['epoch']:.2f} | {last['wall_s']:.0f} | {last['fb_passes']:.0f} "
            f"| {last['val_robust_acc']:.3f} | {max(v['val_robust_acc'] for v in vals):.3f} "
            f"| {_fmt(ex.get('clean'))} | {_fmt(ex.get('pgd40'))} | {_fmt(cw)} | {_fmt(suite.get('worst'))} "
            f"| {', '.join(suite.get('flags', [])) or ('none' if suite else '—')} |")
    lines.append("")
    # Headline: time for PGD-AT to reach its final robust accuracy / time for SGN to reach it.
    sgn_names = [n for n in runs if n.startswith("sgn")]
    for ref in HEADLINE_REFS:
        if ref not in runs or not _vals(runs[ref]):
            continue
        rv = _vals(runs[ref])
        target = rv[-1]["val_robust_acc"]
        t_ref, p_ref = first_reach(rv, target), first_reach(rv, target, "fb_passes")
        lines.append(f"**{METHODS[ref][0]}** final val robust accuracy {target:.3f}, first reached at "
                     f"{t_ref:.0f} s / {p_ref:.0f} fb passes.")
        lines += ["", "| run | reaches it at (s) | wall-time ratio | passes ratio | if not: best acc, ratio there |",
                  "| --- | ---: | ---: | ---: | --- |"]
        for name in sgn_names + [n for n in ("fast_at", "trades") if n in runs]:
            sv = _vals(runs[name])
            t_s, p_s = first_reach(sv, target), first_reach(sv, target, "fb_passes")
            if t_s is not None and t_s > 0:
                lines.append(f"| {METHODS[name][0]} | {t_s:.0f} | {t_ref / t_s:.1f}x | {p_ref / p_s:.1f}x | |")
            else:
                best = max(v["val_robust_acc"] for v in sv)
                t_best, p_best = first_reach(sv, best), first_reach(sv, best, "fb_passes")
                t_ref_best, p_ref_best = first_reach(rv, best), first_reach(rv, best, "fb_passes")
                ratio = (f"{t_ref_best / t_best:.1f}x wall, {p_ref_best / p_best:.1f}x passes"
                         if t_ref_best and t_best else "the reference never reached it")
                lines.append(f"| {METHODS[name][0]} | never | — | — | best {best:.3f} at {_fmt(t_best, '.0f')} s / "
                             f"{_fmt(p_best, '.0f')} passes; {METHODS[ref][0]} reaches it at "
                             f"{_fmt(t_ref_best, '.0f')} s / {_fmt(p_ref_best, '.0f')} passes: {ratio} |")
        lines.append("")
    text = "\n".join(lines)
    if md:
        atomic_write_text(md, text + "\n")
    if png:
        _plot(runs, png)
    return text


def _headline(root: Path, name: str, ref: str = "pgd10") -> dict[str, float | None]:
    """Wall-time and passes ratios (ref's time to its final val accuracy / name's time to it); None if never."""
    rv, sv = _vals(root / ref), _vals(root / name)
    if not rv or not sv:
        return {"wall": None, "passes": None}
    target = rv[-1]["val_robust_acc"]
    t_s, p_s = first_reach(sv, target), first_reach(sv, target, "fb_passes")
    if t_s is None or p_s is None or t_s <= 0:
        return {"wall": None, "passes": None}
    t_ref, p_ref = first_reach(rv, target), first_reach(rv, target, "fb_passes")
    return {"wall": t_ref / t_s, "passes": p_ref / p_s}  # type: ignore[operator]


def seeds_table(roots: list[Path], md: Path | None) -> str:
    """Mean (min-max) over seed roots of every method's accuracies, and the headline ratio per seed."""
    import statistics

    def agg(values: list[float | None]) -> str:
        vs = [v for v in values if v is not None]
        if not vs:
            return "—"
        return f"{statistics.mean(vs):.3f} ({min(vs):.3f}-{max(vs):.3f})" if len(vs) > 1 else f"{vs[0]:.3f}"

    names = [n for n in METHODS if any((r / n / "metrics.jsonl").exists() for r in roots)]
    lines = [f"Seed roots: {', '.join(f'`{r}`' for r in roots)}. Mean (min-max) over the seeds that ran.", "",
             "| run | seeds | final val PGD-40 | test clean | test PGD-40 | test CW-Linf | suite worst case "
             "| reaches PGD-AT-10's final val acc: wall ratio / passes ratio, per seed |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name in names:
        runs = [r for r in roots if _vals(r / name)]
        ex = [json.loads(p.read_text()) if (p := r / name / "extra_eval.json").exists() else {} for r in runs]
        cw = [next((v for k, v in e.items() if k.startswith("cw_linf") and not k.endswith("wall_s")), None)
              for e in ex]
        heads = []
        for r in runs:
            h = _headline(r, name) if name != "pgd10" else {"wall": 1.0, "passes": 1.0}
            heads.append("never" if h["wall"] is None else f"{h['wall']:.1f}x / {h['passes']:.1f}x")
        lines.append(
            f"| {METHODS[name][0]} | {len(runs)} | {agg([_vals(r / name)[-1]['val_robust_acc'] for r in runs])} "
            f"| {agg([e.get('clean') for e in ex])} | {agg([e.get('pgd40') for e in ex])} | {agg(cw)} "
            f"| {agg([_suite(r / name).get('worst') for r in runs])} | {'; '.join(heads)} |")
    text = "\n".join(lines)
    if md:
        atomic_write_text(md, text + "\n")
    return text


def _plot(runs: dict[str, Path], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in runs.items():
        vals = _vals(run)
        if not vals:
            continue
        style = "-" if name in ("sgn", "pgd10", "pgd40", "fast_at", "trades") else ":"
        for ax, key in zip(axes, ("wall_s", "fb_passes"), strict=True):
            ax.plot([v[key] for v in vals], [v["val_robust_acc"] for v in vals], style, marker=".", label=name)
    axes[0].set_xlabel("training wall time (s, validation excluded)")
    axes[1].set_xlabel("forward+backward passes (batches of 100)")
    for ax in axes:
        ax.set_ylabel("val robust accuracy (PGD-40, eps 0.3)")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("launch")
    a.add_argument("--root", type=Path, default=ROOT / "runs" / "sgn-bench")
    a.add_argument("--only", nargs="*", default=list(METHODS), choices=list(METHODS))
    a.add_argument("--jobs", type=int, default=2)
    a.add_argument("--epochs", type=float, default=None, help="override every method's budget (quick trials)")
    a.add_argument("--seed", type=int, default=None, help="override the config's seed (one root per seed)")
    e = sub.add_parser("extra")
    e.add_argument("--root", type=Path, default=ROOT / "runs" / "sgn-bench")
    e.add_argument("--only", nargs="*", default=list(METHODS), choices=list(METHODS))
    e.add_argument("--n", type=int, default=100)
    e.add_argument("--cw-steps", type=int, default=100)
    t = sub.add_parser("table")
    t.add_argument("--root", type=Path, default=ROOT / "runs" / "sgn-bench")
    t.add_argument("--md", type=Path)
    t.add_argument("--png", type=Path)
    m = sub.add_parser("seeds", help="mean and spread over several seed roots")
    m.add_argument("roots", nargs="+", type=Path)
    m.add_argument("--md", type=Path)
    args = p.parse_args()
    if args.cmd == "launch":
        launch(args.root, args.only, args.jobs, args.epochs, args.seed)
    elif args.cmd == "seeds":
        print(seeds_table(args.roots, args.md))
    elif args.cmd == "extra":
        extra(args.root, args.only, args.n, args.cw_steps)
    else:
        print(table(args.root, args.md, args.png))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
