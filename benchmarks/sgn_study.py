"""The SGN convergence study that can decide the 10x claim (docs/sgn.md; protocol in ../shared/EXPERIMENTS.md).

MNIST, eps 0.3, strided-cnn (configs/mnist-sgn.toml is the base of every run). Each method logs its robust accuracy
under APGD-CE (25 steps, 500 held-out training images) every quarter epoch against forward+backward passes and wall
time, and keeps the network behind every point (models/step-N.safetensors) so that the curve can be re-scored.

- Baselines as published: PGD-AT-40 (40 steps of 0.01, random start) and PGD-AT-10 (2.5 eps / 10), both with the
  SGN runs' optimizer (Adam, one-cycle lr peaking at 3e-3, eps ramped up over the first epoch); Fast-AT with Wong et
  al.'s MNIST recipe (step 0.375 from a random start, Adam with a cyclic lr up to 5e-3, 10 epochs, early stopping on
  the validation); N-FGSM (noise 2 eps, step eps, no clipping) on the same schedule as Fast-AT.
- SGN variants: learned / frozen (reversal_scale 0: the response does not learn from its own gradient) / sign
  responses, each with 0 and 1 refinement steps, and the learned one with a random start (the one-step baselines'
  remedy).
- The two readings of SGN as an architecture: its modules inside ordinary adversarial training (pgd10_sgnarch:
  PGD-AT-10's point as the start, hidden taps; against pgd10 in passes to X) and its input response active at
  inference (sgn_active: the main job's training, exported active; against sgn_learned_r1 under the standard suite
  plus BPDA through the purifier and transfer from the backbone, which `gradguard eval` adds for such a network).
  An input gradient through the active network costs 4-5 times the plain one (benchmarks/sgn_arch_cost.py), so its
  final suite does too.

The decision rule: X = 90% of PGD-AT-40's plateau robust accuracy (mean of its last three validations); a method
reaches X when two consecutive validations are at or above it; R = PGD-AT-40's passes to X over the method's.
Two queues run side by side, one thread each (queue A: the long PGD-AT-40 runs; queue B: everything else). Every
run resumes where it stopped; a finished run is skipped.

    python benchmarks/sgn_study.py plan                       # the runs, their budgets and an estimate
    python benchmarks/sgn_study.py run --queue A &            # both cores: one queue each
    python benchmarks/sgn_study.py run --queue B
    python benchmarks/sgn_study.py evaluate --only pgd40 &    # the full standard suite on 1,000 test images
    python benchmarks/sgn_study.py evaluate                   #   for the final models (FINAL), one per core
    python benchmarks/sgn_study.py summary [--install]        # table, plots; --install: curves for the report
    python benchmarks/sgn_study.py archive                    # the scored finals into docs/results.md
    python benchmarks/sgn_study.py run --queue B --toy --root /tmp/study   # end to end in a minute (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradguard.intervals import wilson  # the evaluator's 95% interval, so the study's cells match its reports

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "mnist-sgn.toml"
RESULTS = ROOT / "benchmarks" / "results" / "sgn_study"

# Every run: the strong, frequent time-to-robustness log, one thread, no bars.
COMMON = ["train.val_every=0.25", "train.val_attack=\"apgd-ce\"", "train.val_attack_steps=25", "data.val_size=500",
          "train.keep_val_models=true", "train.threads=1", "train.progress=false", "train.tensorboard=false"]
SGN_SCHEDULE = ["train.optimizer=\"adam\"", "train.lr=3e-3", "train.schedule=\"onecycle\"", "train.eps_rampup_epochs=1"]
WONG_SCHEDULE = [
    "train.optimizer=\"adam\"", "train.lr=5e-3", "train.schedule=\"onecycle\"", "train.eps_rampup_epochs=0"]


#: strided-cnn's hidden taps for the architecture reading: after the second convolution's ReLU (64 x 7 x 7) and the
#: hidden fully connected layer's (256), with a 2-layer, 4-channel response to keep the run near pgd10's cost
#: (benchmarks/sgn_arch_cost.py, 2026-12-02, shared 2-core machine: CPU s per batch, PGD-AT-10 0.26-0.30, these taps
#: with the default 8-channel, 3-layer response 0.46, with the small one 0.34). The first convolution's output
#: (32 x 14 x 14) would cost more again.
STRIDED_HIDDEN_TAPS = ("net.features.3", "net.classifier.1")


@dataclass(frozen=True)
class Run:
    key: str
    label: str
    queue: str
    epochs: float
    overrides: list[str] = field(default_factory=list)
    passes_per_batch: int = 3  # for the plan's estimate only


def _sgn(response: str, refine: int, *extra: str) -> list[str]:
    return ["train.recipe=\"sgn\"", *SGN_SCHEDULE, f"train.recipe_args.response=\"{response}\"",
            f"train.recipe_args.refine_steps={refine}", *extra]


METHODS: list[Run] = [
    Run("pgd40", "PGD-AT-40 (40 x 0.01, random start)", "A", 6, [
        "train.recipe=\"pgd_at\"", *SGN_SCHEDULE, "train.recipe_args={steps=40, alpha=0.01, random_start=true}"], 41),
    Run("pgd40_2ep", "PGD-AT-40 on a 2-epoch schedule (is its passes-to-X the schedule's?)", "A", 2, [
        "train.recipe=\"pgd_at\"", *SGN_SCHEDULE, "train.recipe_args={steps=40, alpha=0.01, random_start=true}"], 41),
    # The one-step baselines given SGN's own schedule and eps ramp-up: any gain left over is SGN's, not the schedule's.
    Run("n_fgsm_sgnsched", "N-FGSM on SGN's schedule (one-cycle 3e-3, eps ramp-up over epoch 1)", "B", 4, [
        "train.recipe=\"n_fgsm\"", *SGN_SCHEDULE, "train.recipe_args={}"], 2),
    Run("fast_at_sgnsched", "Fast-AT on SGN's schedule (one-cycle 3e-3, eps ramp-up over epoch 1)", "B", 4, [
        "train.recipe=\"fast_at\"", *SGN_SCHEDULE, "train.recipe_args={alpha_ratio=1.25, random_start=true}"], 2),
    Run("pgd2_sgnsched", "PGD-AT-2 (2 x 1.25 eps) on SGN's schedule: SGN-with-refinement's cost, no learned step", "B",
        4, ["train.recipe=\"pgd_at\"", *SGN_SCHEDULE, "train.recipe_args={steps=2, random_start=true}"], 3),
    Run("fast_at", "Fast-AT (Wong et al.: 0.375 from random start, cyclic lr, early stop)", "B", 10, [
        "train.recipe=\"fast_at\"", *WONG_SCHEDULE, "train.recipe_args={alpha_ratio=1.25, random_start=true}"], 2),
    Run("n_fgsm", "N-FGSM (noise 2 eps, step eps, no clipping)", "B", 10, [
        "train.recipe=\"n_fgsm\"", *WONG_SCHEDULE, "train.recipe_args={}"], 2),
    Run("pgd10", "PGD-AT-10 (10 x 2.5 eps/10)", "B", 4, [
        "train.recipe=\"pgd_at\"", *SGN_SCHEDULE, "train.recipe_args={steps=10, random_start=true}"], 11),
    Run("sgn_learned_r1", "SGN learned + 1 refinement (the main job)", "B", 4, _sgn("learned", 1), 3),
    Run("sgn_learned_r1_2ep", "SGN learned + 1 refinement on PGD-AT-40's 2-epoch schedule (same schedule both sides)",
        "B", 2, _sgn("learned", 1), 3),
    Run("sgn_learned_r0", "SGN learned, no refinement", "B", 4, _sgn("learned", 0), 2),
    Run("sgn_frozen_r1", "SGN frozen response (reversal 0) + 1 refinement", "B", 4,
        _sgn("learned", 1, "train.recipe_args.reversal_scale=0.0"), 3),
    Run("sgn_frozen_r0", "SGN frozen response (reversal 0), no refinement", "B", 4,
        _sgn("learned", 0, "train.recipe_args.reversal_scale=0.0"), 2),
    Run("sgn_sign_r1", "SGN sign response + 1 refinement", "B", 4, _sgn("sign", 1), 3),
    Run("sgn_sign_r0", "SGN sign response, no refinement (FGSM-like)", "B", 4, _sgn("sign", 0), 2),
    Run("sgn_rs_r1", "SGN learned + 1 refinement, random start (the one-step remedy)", "B", 4,
        _sgn("learned", 1, "train.recipe_args.start=\"random\""), 3),
    # The readings not tried before: SGN modules inside ordinary adversarial training (compare with pgd10 in passes
    # to X) and the input response active at inference (compare with sgn_learned_r1, the same training, under the
    # suite plus BPDA and transfer, which say whether a gain is real or gradient masking).
    Run("pgd10_sgnarch", "PGD-AT-10 start + SGN hidden taps (the architecture reading; pgd10's schedule)", "B", 4, [
        "train.recipe=\"sgn\"", *SGN_SCHEDULE, f"train.recipe_args={{taps={json.dumps(list(STRIDED_HIDDEN_TAPS))}, "
        "start=\"pgd\", start_steps=10, refine_steps=0, clean_weight=1.0, response_hidden=4, response_layers=2}"], 12),
    Run("sgn_active", "SGN learned + 1 refinement, input response active at inference", "B", 4,
        _sgn("learned", 1, "train.recipe_args.active_inference=true"), 3),
]
SEEDS = (0, 1)


def run_dir(root: Path, run: Run, seed: int) -> Path:
    return root / f"{run.key}-s{seed}"


def train_command(run: Run, seed: int, out: Path, *, toy: bool) -> list[str]:
    """The `gradguard train` call for one run (a resume when its folder holds a checkpoint)."""
    exe = [sys.executable, "-m", "gradguard", "train"]
    if (out / "checkpoints" / "last.safetensors").exists():
        return [*exe, "--resume", str(out)]
    sets = [*COMMON, *run.overrides, f"seed={seed}", f"name=\"sgn-study-{run.key}-s{seed}\"",
            f"train.epochs={run.epochs}"]
    if toy:  # seconds end to end, offline: the 8x8 digits set, a few batches, a tiny validation
        sets += ["data.dataset=\"digits\"", "data.train_subset=400", "data.test_subset=100", "data.val_size=50",
                 "train.val_attack_steps=2", "train.epochs=2", "train.val_every=0.5", "train.eps_rampup_epochs=0"]
    cmd = [*exe, str(BASE), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def is_done(out: Path) -> bool:
    return (out / "train_summary.json").exists() and (out / "model.safetensors").exists()


def run_queue(root: Path, queue: str, *, seeds: tuple[int, ...], toy: bool, only: list[str] | None) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for seed in seeds:  # seed 0 of every method first: a stopped study still has one complete seed
        for run in METHODS:
            if (queue != "all" and run.queue != queue) or (only and run.key not in only):
                continue
            out = run_dir(root, run, seed)
            if is_done(out):
                print(f"[sgn_study] {out.name}: done", flush=True)
                continue
            cmd = train_command(run, seed, out, toy=toy)
            record_start(out, cmd)
            print(f"[sgn_study] {out.name}: {' '.join(cmd[1:])}", flush=True)
            subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def record_start(out: Path, cmd: list[str]) -> None:
    """Append who ran this run when, where and from which commit (study_log.jsonl in the run folder)."""
    import time

    from gradguard.provenance import environment, git_commit

    entry = {"utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(cmd[1:]),
             "git": git_commit(ROOT), "environment": environment("cpu"), "loadavg": os.getloadavg()}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "study_log.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


# ------------------------------------------------------------------------------------------------- final suite

#: The final models scored with the full standard suite (the rest keep their curve only: the suite costs minutes per
#: model on a CPU). Fast-AT is scored at its best validation (early stopping, as Wong et al. prescribe).
FINAL = ("pgd40", "pgd40_2ep", "n_fgsm_sgnsched", "pgd10", "fast_at", "n_fgsm", "sgn_learned_r1", "sgn_frozen_r1",
         "sgn_sign_r1", "pgd10_sgnarch", "sgn_active")


def final_model(out: Path, key: str) -> Path:
    return out / ("model-best.safetensors" if key == "fast_at" else "model.safetensors")


def evaluate_finals(root: Path, *, seeds: tuple[int, ...], n: int, only: list[str] | None, toy: bool) -> None:
    """The full standard suite (AutoAttack's four attacks) on the first `n` test images, at eps 0.3, per final
    model; the result beside the run (final_eval.json), skipped when present. An active network (sgn_active) is
    scored by the same command, which adds BPDA through its purifier and transfer from its backbone."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for seed in seeds:
        for run in METHODS:
            if run.key not in FINAL or (only and run.key not in only):
                continue
            out = run_dir(root, run, seed)
            target = out / "final_eval.json"
            if not is_done(out) or target.exists():
                continue
            cmd = [sys.executable, "-m", "gradguard", "eval", "--checkpoint", str(final_model(out, run.key)),
                   "--suite", "standard", "--eps", "0.3", "--n", str(n), "--out", str(target)]
            if toy:
                cmd.append("--quick")
            print(f"[sgn_study] final suite: {' '.join(cmd[1:])}", flush=True)
            subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def archive_finals(root: Path, archive: Path, *, seeds: tuple[int, ...]) -> list[Path]:
    """Each scored final model as a `results.json` beside its run and in the results table's archive (`archive`,
    docs/results/ for the study's own results), so docs/results.md lists the study's finals with everything else."""
    from gradguard.report.records import RESULTS_SCHEMA  # noqa: PLC0415
    from gradguard.report.results_table import archive_results  # noqa: PLC0415

    written = []
    for seed in seeds:
        for run in METHODS:
            out = run_dir(root, run, seed)
            if not (out / "final_eval.json").exists() or not (out / "train_summary.json").exists():
                continue
            ev = json.loads((out / "final_eval.json").read_text())
            tr = json.loads((out / "train_summary.json").read_text())
            info, env = ev["meta"]["model_info"], ev["meta"]["environment"]
            log = [json.loads(line) for line in (out / "study_log.jsonl").read_text().splitlines()]
            results = {
                "schema": RESULTS_SCHEMA, "name": f"sgn-study-{run.key}-s{seed}",
                "command": f"python benchmarks/sgn_study.py run --only {run.key} --seeds {seed}, then evaluate",
                "date": str(ev["meta"]["date"]).replace("T", " ").replace("Z", " UTC"),
                "machine": f"{env.get('device', 'cpu')} ({env.get('machine', '?')}), {env.get('processor_count')} CPU "
                           "cores, 1 torch thread",
                "seed": seed, "dataset": {"name": ev["meta"]["dataset"], "source": ev["meta"]["data_source"]},
                "model": {"name": info["model"], "randomization": info.get("randomization", "none"),
                          "randomization_args": info.get("randomization_args", {})},
                "training": {"recipe": tr["recipe"], "wall_s": tr["wall_s"], "fb_passes": tr["fb_passes"],
                             "epochs": tr["epochs"], "final_val": tr.get("final_val"),
                             "train_command": log[0]["command"]},
                "evaluation": ev, "environment": env,
            }
            (out / "results.json").write_text(json.dumps(results, indent=1))
            written.append(archive_results(out, archive))
    return written


# ----------------------------------------------------------------------------------------------------- summary


def val_records(out: Path) -> list[dict[str, Any]]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind") == "val"]


def plateau(records: list[dict[str, Any]], last: int = 3) -> float | None:
    """Mean robust accuracy of the last `last` validations (the reference's plateau)."""
    if len(records) < last:
        return None
    return sum(r["val_robust_acc"] for r in records[-last:]) / last


def passes_to(records: list[dict[str, Any]], target: float) -> float | None:
    """Passes at the first validation that reaches `target` and is followed by one that holds it."""
    for a, b in zip(records, records[1:], strict=False):
        if a["val_robust_acc"] >= target and b["val_robust_acc"] >= target:
            return float(a["fb_passes"])
    return None


def at_budget(records: list[dict[str, Any]], passes: float) -> float | None:
    """Robust accuracy of the last validation within `passes` (None if the run did not log one by then)."""
    within = [r for r in records if r["fb_passes"] <= passes]
    return within[-1]["val_robust_acc"] if within else None


def final_suite(out: Path) -> dict[str, Any]:
    """The final model's standard-suite result with its 95% Wilson interval (empty when not evaluated yet)."""
    path = out / "final_eval.json"
    if not path.exists():
        return {}
    ev = json.loads(path.read_text())
    n, acc = int(ev["n"]), float(ev["robust_accuracy"][0])
    flags = [f["name"] for f in ev.get("flags", []) if f.get("triggered")]
    bypass = next((f for f in ev.get("flags", []) if f["name"] == "purifier_bypass"), None)
    return {**({"suite_bypass": bypass["message"]} if bypass else {}),
            "suite_robust": acc, "suite_ci": wilson(round(acc * n), n), "suite_n": n,
            "suite_clean": ev["clean_accuracy"], "suite_flags": flags, "suite_quick": bool(ev["meta"].get("quick"))}


def summarize(root: Path, seeds: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"seeds": {}, "protocol": {
        "target": "X = 0.9 x PGD-AT-40's plateau (mean of its last 3 validations), reached and held twice",
        "val": "APGD-CE 25 steps, 500 held-out MNIST training images, eps 0.3, every 0.25 epoch"}}
    for seed in seeds:
        ref = val_records(run_dir(root, METHODS[0], seed))
        top = plateau(ref)
        target = 0.9 * top if top is not None else None
        ref_passes = passes_to(ref, target) if target is not None else None
        rows = []
        for run in METHODS:
            rec = val_records(run_dir(root, run, seed))
            if not rec:
                continue
            p = passes_to(rec, target) if target is not None else None
            rows.append({
                "key": run.key, "label": run.label, "points": len(rec), "epochs": rec[-1]["epoch"],
                "fb_passes": rec[-1]["fb_passes"], "wall_s": rec[-1]["wall_s"],
                "final_robust": rec[-1]["val_robust_acc"], "best_robust": max(r["val_robust_acc"] for r in rec),
                "passes_to_x": p, "ratio": (ref_passes / p) if (p and ref_passes) else None,
                "at_ref_tenth": at_budget(rec, ref_passes / 10) if ref_passes else None,
                "done": is_done(run_dir(root, run, seed)),
                **final_suite(run_dir(root, run, seed)),
            })
        out["seeds"][str(seed)] = {"plateau": top, "target": target, "ref_passes_to_x": ref_passes, "rows": rows,
                                   "readings": readings(rows)}
    return out


def readings(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The two readings against their own baselines: the architecture in PGD-AT-10 against PGD-AT-10 (passes to
    X), the active network against the same training exported plain (standard suite, and what bypassing says)."""
    by = {r["key"]: r for r in rows}
    arch, ref = by.get("pgd10_sgnarch", {}), by.get("pgd10", {})
    p_arch, p_ref = arch.get("passes_to_x"), ref.get("passes_to_x")
    active, plain = by.get("sgn_active", {}), by.get("sgn_learned_r1", {})
    a, b = active.get("suite_robust"), plain.get("suite_robust")
    short_pgd = by.get("pgd40_2ep", {}).get("passes_to_x")
    short_sgn = by.get("sgn_learned_r1_2ep", {}).get("passes_to_x")
    return {"same_schedule": {"pgd40_2ep_passes_to_x": short_pgd, "sgn_2ep_passes_to_x": short_sgn,
                              "ratio": (short_pgd / short_sgn) if (short_pgd and short_sgn) else None},
            "architecture": {"pgd10_passes_to_x": p_ref, "pgd10_sgnarch_passes_to_x": p_arch,
                             "ratio": (p_ref / p_arch) if (p_ref and p_arch) else None},
            "active": {"active_suite": a, "plain_suite": b, "gain": (a - b) if (a is not None and b is not None)
                       else None, "bypass": active.get("suite_bypass")}}


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    if pct:
        return f"{100 * v:.1f}"
    return f"{v:,.0f}" if isinstance(v, float) and v > 100 else (f"{v:.2f}" if isinstance(v, float) else str(v))


def _suite_cell(r: dict[str, Any]) -> str:
    if "suite_robust" not in r:
        return "not run"
    lo, hi = r["suite_ci"]
    note = " (quick)" if r["suite_quick"] else ""
    flags = f"; flags: {', '.join(r['suite_flags'])}" if r["suite_flags"] else ""
    return f"{100 * r['suite_robust']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}], n={r['suite_n']}{note}{flags}"


def markdown(summary: dict[str, Any]) -> str:
    head = ("| method | done | epochs | passes | final robust (%) | best (%) | passes to X | R (PGD-AT-40 / method) "
            "| robust at PGD-AT-40's passes-to-X / 10 (%) | standard suite (%, 95% CI) |")
    lines = ["# SGN study: passes to X against PGD-AT-40", "", f"Target: {summary['protocol']['target']}.",
             f"Curves: {summary['protocol']['val']}.", ""]
    for seed, s in summary["seeds"].items():
        lines += [f"## Seed {seed}", "",
                  f"PGD-AT-40 plateau {_fmt(s['plateau'], True)}%, X = {_fmt(s['target'], True)}%, "
                  f"PGD-AT-40 passes to X: {_fmt(s['ref_passes_to_x'])}.", "",
                  head, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in s["rows"]:
            cells = [r["label"], "yes" if r["done"] else "running", f"{r['epochs']:.2f}", _fmt(r["fb_passes"]),
                     _fmt(r["final_robust"], True), _fmt(r["best_robust"], True), _fmt(r["passes_to_x"]),
                     _fmt(r["ratio"]), _fmt(r["at_ref_tenth"], True), _suite_cell(r)]
            lines.append("| " + " | ".join(cells) + " |")
        same, arch, act = s["readings"]["same_schedule"], s["readings"]["architecture"], s["readings"]["active"]
        lines += ["", "Same 2-epoch schedule on both sides: PGD-AT-40 reaches X at "
                      f"{_fmt(same['pgd40_2ep_passes_to_x'])} passes, SGN learned + 1 refinement at "
                      f"{_fmt(same['sgn_2ep_passes_to_x'])} (R {_fmt(same['ratio'])}).",
                  f"SGN hidden taps in PGD-AT-10: passes to X {_fmt(arch['pgd10_sgnarch_passes_to_x'])} against "
                      f"PGD-AT-10's {_fmt(arch['pgd10_passes_to_x'])} (ratio {_fmt(arch['ratio'])}).",
                  f"Active inference: standard suite + BPDA + transfer {_fmt(act['active_suite'], True)}% against "
                  f"{_fmt(act['plain_suite'], True)}% for the same training exported plain (gain "
                  f"{_fmt(act['gain'], True)} points); bypass check: {act['bypass'] or 'not run'}", ""]
    return "\n".join(lines)


def write_record(summary: dict[str, Any], records: Path) -> Path:
    """The tables into the generated block of the study's experiment record (docs/records/<date>-sgn-study.md)."""
    from record import write_block  # noqa: PLC0415 (a sibling script, found via sys.path[0])

    body = markdown(summary).split("\n", 1)[1]  # the record has its own title
    body = body.replace("\n## ", "\n### ")  # under the record's own "Tables" heading
    body += ("\nCurves (robust accuracy against passes and wall time): `benchmarks/results/sgn_study/curves.png`; "
             "every number above: `benchmarks/results/sgn_study/summary.json`.\n")
    return write_block("sgn-study", "summary", body, title="SGN convergence study on MNIST",
                       summary="the SGN convergence study that decides the 10x claim", records=records)


def plot(root: Path, seeds: tuple[int, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(seeds), 2, figsize=(13, 4.5 * len(seeds)), squeeze=False)
    for i, seed in enumerate(seeds):
        for run in METHODS:
            rec = val_records(run_dir(root, run, seed))
            if not rec:
                continue
            acc = [100 * r["val_robust_acc"] for r in rec]
            style = "-" if run.key.startswith("sgn") else "--"
            axes[i][0].plot([r["fb_passes"] for r in rec], acc, style, marker=".", label=run.label)
            axes[i][1].plot([r["wall_s"] for r in rec], acc, style, marker=".", label=run.label)
        for ax, xlabel in zip(axes[i], ["forward+backward passes (batches of 100)", "training wall time (s)"],
                              strict=True):
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"robust accuracy (%), APGD-CE, seed {seed}")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def reference_curves(root: Path, seed: int = 0) -> dict[str, Any]:
    """The baselines' curves in the form the main job's report overlays (report/reference.py)."""
    curves = []
    for key in ("pgd40", "pgd40_2ep", "pgd10", "fast_at"):
        run = next(r for r in METHODS if r.key == key)
        out = run_dir(root, run, seed)
        rec = val_records(out)
        if not rec:
            continue
        log = out / "study_log.jsonl"
        starts = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        curves.append({"key": key, "label": run.label, "done": is_done(out),
                       "points": [{"fb_passes": r["fb_passes"], "wall_s": r["wall_s"],
                                   "val_robust_acc": r["val_robust_acc"]} for r in rec],
                       "started": [{k: e.get(k) for k in ("utc", "git", "environment", "loadavg")} for e in starts]})
    return {"dataset": "mnist", "model": "strided-cnn", "eps": 0.3, "norm": "linf", "val_attack": "apgd-ce",
            "val_attack_steps": 25, "val_n": 500, "seed": seed, "curves": curves}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["plan", "run", "evaluate", "summary", "archive"])
    ap.add_argument("--n", type=int, default=1000, help="evaluate: test images for the final suite")
    ap.add_argument("--root", type=Path, default=RESULTS)
    ap.add_argument("--queue", choices=["A", "B", "all"], default="all")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--only", nargs="+", help="run only these method keys")
    ap.add_argument("--toy", action="store_true", help="tiny runs (end-to-end test)")
    ap.add_argument("--install", action="store_true",
                    help="summary: also copy the baselines' curves into the package, for the main job's report")
    args = ap.parse_args(argv)
    seeds = tuple(args.seeds)
    if args.command == "plan":
        for run in METHODS:
            batches = 600 * run.epochs * run.passes_per_batch
            print(f"{run.queue}  {run.key:16s} {run.epochs:>4} epochs  ~{batches:>9,.0f} passes  "
                  f"~{batches / 30 / 60:5.0f} min/seed at 30 passes/s  {run.label}")
        return 0
    if args.command == "run":
        run_queue(args.root, args.queue, seeds=seeds, toy=args.toy, only=args.only)
        return 0
    if args.command == "evaluate":
        evaluate_finals(args.root, seeds=seeds, n=args.n, only=args.only, toy=args.toy)
        return 0
    if args.command == "archive":  # the scored finals into the results table (docs/results.md)
        sys.path.insert(0, str(ROOT / "scripts"))
        from update_results import regenerate  # noqa: PLC0415

        for path in archive_finals(args.root, ROOT / "docs" / "results", seeds=seeds):
            print(f"[sgn_study] archived {path}")
        print(f"[sgn_study] wrote {regenerate(ROOT)}")
        return 0
    summary = summarize(args.root, seeds)
    (args.root / "summary.json").write_text(json.dumps(summary, indent=1))
    (args.root / "summary.md").write_text(markdown(summary))
    plot(args.root, seeds, args.root / "curves.png")
    curves = json.dumps(reference_curves(args.root), indent=1)
    (args.root / "reference_curves.json").write_text(curves)
    if args.install:
        (ROOT / "src" / "gradguard" / "report" / "reference_curves.json").write_text(curves)
    if args.root.resolve() == RESULTS.resolve():  # the study's own results (not a toy) refresh its record
        from record import RECORDS  # noqa: PLC0415

        print(f"[sgn_study] record: {write_record(summary, RECORDS)}")
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
