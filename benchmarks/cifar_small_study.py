"""CIFAR-10 at reduced scale on 2 cores: SGN against its baselines, and GradDiv (issue 15, items 2 and 3).

The zoo's cnn-bn at eps 8/255, one thread per run, two runs side by side, every run with the same training
wall-time budget (configs/cifar10-small-*.toml, `train.max_wall_s`).

- SGN part: queue A trains Fast-AT then SGN, queue B PGD-AT-7 then TRADES; each final model is scored on the first
  1,000 test images by the full standard suite (APGD-CE, APGD-T, FAB-T, Square) chained with CW-Linf (100 steps),
  so its robust accuracy is the worst case over all five. The question: does SGN gain robust accuracy over the
  baselines at equal cost, and by how much? Rule: equal cost is the same training wall-time budget; SGN gains (or
  loses) against a baseline only when their 95% Wilson intervals do not overlap (`gradguard.intervals.differs`);
  the difference is given in points with both intervals.
- GradDiv part: queues C and D train the noise-injection cnn-bn with lam 0 and lam 1 (MRL); each is scored with
  EOT-PGD at k in {1, 10, 50} (m in {1, 10} draw predictions), the concentration of its input gradients (mean
  pairwise cosine and |E u| over 200 draws) and the transfer matrix between 5 frozen draws
  (benchmarks/graddiv_budget.py's evaluation functions, `gradguard.graddiv.transfer_matrix`).

The data is whatever `gradguard.data` finds for CIFAR-10: usually the lossy JPEG copy (PSNR 27-33 dB); every table
says which copy was read. Every run resumes where it stopped (checkpoints) and a finished run or evaluation is
skipped, so the same command continues a stopped study.

    python benchmarks/cifar_small_study.py plan                     # the runs and an estimate of the wall time
    python benchmarks/cifar_small_study.py run --queue A &          # both cores: one queue each (train + score)
    python benchmarks/cifar_small_study.py run --queue B
    python benchmarks/cifar_small_study.py run --queue C &          # then the GradDiv part
    python benchmarks/cifar_small_study.py run --queue D
    python benchmarks/cifar_small_study.py run --queue A --seed 1 & # ... the second seed, the same way
    python benchmarks/cifar_small_study.py summary                  # tables, verdicts, the record's block
    python benchmarks/cifar_small_study.py run --toy --root /tmp/t  # end to end on the offline digits set (tests)

`evaluate` scores finished runs without training (`run` does both). `--toy` replaces CIFAR-10 by the 8x8 digits set
that ships with the library (no data needed), with tiny attacks: it checks the plumbing, never a claim.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradguard.intervals import differs, wilson

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "cifar_small_study"
EPS = 8 / 255
N_TRAIN = 49_000  # CIFAR-10's 50,000 training images less the 1,000 held out for validation

#: Contention-free one-thread rates of cnn-bn (images/s of forward+backward, CPU time; benchmarks/results/
#: cifar_small_speed, 2026-12-02): the plan's estimate only.
TRAIN_RATE, ATTACK_RATE = 1108, 1107


@dataclass(frozen=True)
class Run:
    key: str
    label: str
    queue: str
    config: str
    passes_per_batch: int  # forward+backward passes per training batch, for the plan's estimate

    @property
    def path(self) -> Path:
        return ROOT / "configs" / self.config

    @property
    def graddiv(self) -> bool:
        return self.queue in ("C", "D")


RUNS: list[Run] = [
    Run("fast_at", "Fast-AT (FGSM 10/255 from a random start)", "A", "cifar10-small-fast-at.toml", 2),
    Run("sgn", "SGN (learned input response, random start, 1 refinement)", "A", "cifar10-small-sgn.toml", 4),
    Run("pgd_at", "PGD-AT-7 (7 x 2/255, random start)", "B", "cifar10-small-pgd-at.toml", 8),
    Run("trades", "TRADES (beta 6, 10 x 2/255)", "B", "cifar10-small-trades.toml", 11),
    # GradDiv, measured on one thread (benchmarks/cifar_graddiv_speed.py, 2026-12-02): 4 draws with the double
    # backward at about 27 images/s (41 passes' worth of TRAIN_RATE); lam 0 logged 88 images/s in the recipe (13)
    Run("graddiv_lam0", "noise-injection cnn-bn, GradDiv lam 0 (noise alone)", "C", "cifar10-small-graddiv-lam0.toml",
        13),
    Run("graddiv_lam1", "noise-injection cnn-bn, GradDiv MRL lam 1", "D", "cifar10-small-graddiv-lam1.toml", 41),
]
BASELINES = ("fast_at", "pgd_at", "trades")
TOY_SETS = ["data.dataset=\"digits\"", "data.train_subset=200", "data.val_size=50", "data.test_subset=50",
            "train.epochs=1", "train.val_every=1", "train.val_attack_steps=2", "train.batch_size=50",
            "train.max_wall_s=60", "train.channels_last=false"]


def run_dir(root: Path, run: Run) -> Path:
    return root / run.key


def is_done(out: Path) -> bool:
    return (out / "train_summary.json").exists() and (out / "model.safetensors").exists()


def seed_root(root: Path, seed: int) -> Path:
    """Each seed's runs in their own folder: root/seed<N>/<run>."""
    return root / f"seed{seed}"


def train_command(run: Run, out: Path, *, toy: bool, seed: int = 0) -> list[str]:
    """The one-thread `gradguard train` call for one run (a resume when its folder holds a checkpoint)."""
    exe = [sys.executable, "-m", "gradguard", "train"]
    if (out / "checkpoints" / "last.safetensors").exists():
        return [*exe, "--resume", str(out)]
    sets = [f"seed={seed}", "train.threads=1", "train.progress=false", "train.tensorboard=false",
            *(TOY_SETS if toy else [])]
    cmd = [*exe, str(run.path), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def train(root: Path, run: Run, *, toy: bool, seed: int) -> None:
    from sgn_study import record_start  # noqa: PLC0415 (a sibling script: who ran it, when, from which commit)

    out = run_dir(root, run)
    if is_done(out):
        print(f"[cifar_small] {run.key}: trained", flush=True)
        return
    cmd = train_command(run, out, toy=toy, seed=seed)
    record_start(out, cmd)
    print(f"[cifar_small] {run.key}: {' '.join(cmd[1:])}", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


# ------------------------------------------------------------------------------------------------- scoring


def _test_data(out: Path, n: int) -> tuple[Any, dict[str, Any]]:
    """The first `n` test images of the run's dataset, and which copy they came from (lossy or exact)."""
    from gradguard import data  # noqa: PLC0415

    name = tomllib.loads((out / "config.toml").read_text())["data"]["dataset"]
    test = data.load(name, "test")
    facts = data.info(name, check_cache=False)
    return test.subset(range(min(n, len(test)))), {"dataset": name, "data_source": test.source,
                                                    "lossy": bool(facts.get("lossy"))}


def score_final(out: Path, *, n: int, toy: bool) -> Path:
    """The standard suite chained with CW-Linf (worst case over the five) on the first `n` test images, masking
    checks on; final_eval.json beside the run, in `gradguard eval`'s format. No suite of the library has CW-Linf,
    so the suite's attacks and CWLinf go to `gradguard.evaluation.evaluate` as one chained ensemble."""
    from gradguard.attacks import CWLinf  # noqa: PLC0415
    from gradguard.checkpoint import load_model  # noqa: PLC0415
    from gradguard.evaluation import evaluate  # noqa: PLC0415
    from gradguard.evaluation.suites import build_suite  # noqa: PLC0415

    target = out / "final_eval.json"
    if target.exists():
        return target
    test, facts = _test_data(out, n)
    attacks: dict[str, Any] = dict(build_suite("standard", quick=toy))
    attacks["cw-linf"] = CWLinf(eps=EPS, steps=5 if toy else 100)
    x, y = test.tensors()
    result = evaluate(load_model(out), x, y, attacks, [EPS], mode="chained", quick=toy, run_checks=not toy,
                      threads=1, progress=lambda line: print(f"[cifar_small] {out.name}: {line}", flush=True))
    result.meta.update({**facts, "quick": toy, "suite": "standard + cw-linf (chained)"})
    result.save(target)
    return target


def graddiv_size(toy: bool) -> Any:
    """graddiv_budget's sizing, at this study's scale: EOT-PGD-50 at k 1, 10, 50 on 500 images (200 at k = 50)."""
    from graddiv_budget import Size  # noqa: PLC0415 (a sibling script)

    if toy:
        return Size(dataset="digits", model="cnn-bn", eps=EPS, steps=2, ks=(1, 10, 50), ms=(1, 10), n_eval=8,
                    n_eval_kmax=4, n_geom=4, geom_draws=10, seeds=(0,))
    return Size(dataset="cifar10", model="cnn-bn", eps=EPS, steps=50, ks=(1, 10, 50), ms=(1, 10), n_eval=500,
                n_eval_kmax=200, n_geom=100, geom_draws=200, seeds=(0,))


def score_graddiv(out: Path, *, toy: bool) -> None:
    """Clean, EOT-PGD at each k, the gradients' concentration and the transfer matrix; eval/<name>.json each,
    skipped when present."""
    import torch  # noqa: PLC0415
    from graddiv_budget import (  # noqa: PLC0415
        eval_attack,
        eval_clean,
        eval_geometry,
        eval_transfer,
        write_evaluations,
    )

    from gradguard.atomic import atomic_write_text  # noqa: PLC0415

    torch.set_num_threads(1)
    size = graddiv_size(toy)
    cfg = tomllib.loads((out / "config.toml").read_text())
    n_draws, seed = cfg["train"]["recipe_args"]["n_draws"], int(cfg["seed"])

    todo = {"clean": lambda m: eval_clean(m, size, seed),
            "geometry": lambda m: eval_geometry(m, size, n_draws, seed),
            **{f"eot-k{k}": (lambda m, k=k: eval_attack(m, size, k, seed)) for k in size.ks},
            "transfer": lambda m: eval_transfer(m, size, seed)}
    write_evaluations(out, todo, {"run": out.name}, tag="cifar_small")
    if not (out / "eval" / "data.json").exists():
        atomic_write_text(out / "eval" / "data.json", json.dumps(_test_data(out, 1)[1], indent=1))


def score(root: Path, run: Run, *, n: int, toy: bool) -> None:
    out = run_dir(root, run)
    if not is_done(out):
        print(f"[cifar_small] {run.key}: not trained yet, not scored", flush=True)
        return
    if run.graddiv:
        score_graddiv(out, toy=toy)
    else:
        score_final(out, n=n, toy=toy)


def selected(queue: str, only: list[str] | None) -> list[Run]:
    return [r for r in RUNS if (queue == "all" or r.queue == queue) and (not only or r.key in only)]


# ------------------------------------------------------------------------------------------------- summary


def _interval(acc: float, n: int) -> tuple[float, float]:
    return wilson(round(acc * n), n)


def _train_facts(out: Path) -> dict[str, Any]:
    tr = json.loads((out / "train_summary.json").read_text()) if (out / "train_summary.json").exists() else {}
    return {"epochs": tr.get("epochs"), "fb_passes": tr.get("fb_passes"), "train_wall_s": tr.get("wall_s")}


def sgn_rows(root: Path) -> list[dict[str, Any]]:
    rows = []
    for run in RUNS:
        out = run_dir(root, run)
        if run.graddiv or not (out / "final_eval.json").exists():
            continue
        ev = json.loads((out / "final_eval.json").read_text())
        n, robust, clean = int(ev["n"]), float(ev["robust_accuracy"][0]), float(ev["clean_accuracy"])
        cw = ev["attacks"].get("cw-linf", {}).get("robust_accuracy", [None])[0]
        rows.append({"key": run.key, "label": run.label, "n": n, "clean": clean, "clean_ci": _interval(clean, n),
                     "robust": robust, "robust_ci": _interval(robust, n), "cw_linf_alone": cw,
                     "flags": [f["name"] for f in ev.get("flags", []) if f.get("triggered")],
                     "data_source": ev["meta"].get("data_source"), "lossy": ev["meta"].get("lossy"),
                     "quick": bool(ev["meta"].get("quick")), **_train_facts(out)})
    return rows


def sgn_verdict(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SGN's robust accuracy against each baseline's: the difference in points and whether it clears the intervals."""
    by = {r["key"]: r for r in rows}
    sgn = by.get("sgn")
    if sgn is None:
        return []
    out = []
    for key in BASELINES:
        if key not in by:
            continue
        b = by[key]
        diff = sgn["robust"] - b["robust"]
        call = ("gain" if diff > 0 else "loss") if differs(sgn["robust"], b["robust"], sgn["n"], b["n"]) else \
            "no difference at 95%"
        walls = sgn["train_wall_s"], b["train_wall_s"]
        out.append({"baseline": key, "difference_points": 100 * diff, "verdict": call,
                    "wall_ratio": walls[0] / walls[1] if all(walls) else None,
                    "sgn_ci": sgn["robust_ci"], "baseline_ci": b["robust_ci"]})
    return out


def graddiv_rows(root: Path) -> list[dict[str, Any]]:
    rows = []
    for run in RUNS:
        folder = run_dir(root, run) / "eval"
        if not run.graddiv or not (folder / "transfer.json").exists():
            continue
        ev = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
        eot = {k[len("eot-k"):]: v["robust"] for k, v in ev.items() if k.startswith("eot-k")}
        geo, tm = ev["geometry"], ev["transfer"]
        rows.append({"key": run.key, "label": run.label, "clean": ev["clean"]["clean"], "eot": eot,
                     "cos": geo["cos_all"], "mean_u_norm": geo["mean_u_norm"], "mrl_n": geo["mrl_n"],
                     "tm_off_diagonal": tm["mean_off_diagonal"], "tm_diagonal": tm["mean_diagonal"],
                     "data_source": ev["data"]["data_source"], "lossy": ev["data"]["lossy"],
                     **_train_facts(run_dir(root, run))})
    return rows


def graddiv_verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """At the largest k (m = 10): lam 1 against lam 0, and whether raising k from the middle to the largest still
    lowered each model's accuracy (then k is not yet large enough), both by the interval rule."""
    by = {r["key"]: r for r in rows}
    out: dict[str, Any] = {}
    for r in rows:
        ks = sorted(r["eot"], key=int)
        mid, top = r["eot"][ks[-2]]["10"], r["eot"][ks[-1]]["10"]
        out[f"{r['key']}_k_still_lowers"] = differs(mid["acc"], top["acc"], mid["n"], top["n"])
    if "graddiv_lam0" in by and "graddiv_lam1" in by:
        k = sorted(by["graddiv_lam1"]["eot"], key=int)[-1]
        a, b = by["graddiv_lam1"]["eot"][k]["10"], by["graddiv_lam0"]["eot"][k]["10"]
        diff = a["acc"] - b["acc"]
        out["lam1_vs_lam0"] = {"k": int(k), "difference_points": 100 * diff, "verdict": (
            ("gain" if diff > 0 else "loss") if differs(a["acc"], b["acc"], a["n"], b["n"]) else
            "no difference at 95%")}
    return out


def summarize(root: Path) -> dict[str, Any]:
    rows, g_rows = sgn_rows(root), graddiv_rows(root)
    return {"eps": EPS, "sgn": {"rows": rows, "verdict": sgn_verdict(rows)},
            "graddiv": {"rows": g_rows, "verdict": graddiv_verdict(g_rows)},
            "rule": "equal cost = the same training wall-time budget (max_wall_s); a difference counts when the 95% "
                    "Wilson intervals do not overlap (gradguard.intervals.differs)"}


def _pct(acc: float | None, ci: tuple[float, float] | None = None) -> str:
    if acc is None:
        return "n/a"
    return f"{100 * acc:.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _num(v: Any) -> str:
    return "n/a" if v is None else f"{v:,.0f}" if isinstance(v, (int, float)) and v >= 100 else f"{v:.2f}"


def data_line(rows: list[dict[str, Any]]) -> str:
    sources = sorted({str(r["data_source"]) for r in rows})
    lossy = any(r["lossy"] for r in rows)
    head = "LOSSY JPEG copy of CIFAR-10 (PSNR 27-33 dB), not the exact images" if lossy else "exact copy"
    return f"Data: {head}; read from: {'; '.join(sources) or 'n/a'}."


def markdown(summaries: dict[str, dict[str, Any]]) -> str:
    """Every seed's tables under one title ("Not run yet." when no seed has a result)."""
    lines = ["# CIFAR-10 at reduced scale on 2 cores (cnn-bn, eps 8/255)", ""]
    for seed, summary in summaries.items():
        lines += [f"## Seed {seed}", "", seed_markdown(summary)]
    return "\n".join(lines if summaries else [*lines, "Not run yet.", ""])


def seed_markdown(summary: dict[str, Any]) -> str:
    s, g = summary["sgn"], summary["graddiv"]
    lines = ["### SGN against its baselines", ""]
    if not s["rows"]:
        lines += ["Not run yet.", ""]
    else:
        lines += [data_line(s["rows"]), "",
                  "Robust: worst case over the standard suite chained with CW-Linf; [95% Wilson interval].", "",
                  "| method | n | clean (%) | robust (%) | CW-Linf alone (%) | epochs | train passes | train wall (s) "
                  "| flags |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in s["rows"]:
            quick = " (quick)" if r["quick"] else ""
            lines.append(f"| {r['label']}{quick} | {r['n']} | {_pct(r['clean'], r['clean_ci'])} | "
                         f"{_pct(r['robust'], r['robust_ci'])} | {_pct(r['cw_linf_alone'])} | {_num(r['epochs'])} "
                         f"| {_num(r['fb_passes'])} | {_num(r['train_wall_s'])} | {', '.join(r['flags']) or '-'} |")
        lines += ["", f"Does SGN gain robust accuracy over the baselines at equal cost? Rule: {summary['rule']}.", ""]
        for v in s["verdict"]:
            lines.append(f"- against {v['baseline']}: {v['difference_points']:+.1f} points "
                         f"(SGN {100 * v['sgn_ci'][0]:.1f}-"
                         f"{100 * v['sgn_ci'][1]:.1f}, baseline {100 * v['baseline_ci'][0]:.1f}-"
                         f"{100 * v['baseline_ci'][1]:.1f}): {v['verdict']}; SGN's training wall time "
                         f"{_num(v['wall_ratio'])} x the baseline's")
        lines += ["" if s["verdict"] else "SGN or every baseline not scored yet: no verdict.", ""]
    lines += ["### GradDiv on the noise-injection cnn-bn", ""]
    if not g["rows"]:
        lines += ["Not run yet.", ""]
        return "\n".join(lines)
    ks = sorted({k for r in g["rows"] for k in r["eot"]}, key=int)
    lines += [data_line(g["rows"]), "", "EOT-PGD robust accuracy (%) with m = 10 draw predictions "
              "[95% Wilson interval]; concentration over the input gradients of the draws; TM: transfer matrix "
              "between 5 frozen draws (attack success).", "",
              "| model | clean m=10 (%) | " + " | ".join(f"EOT k={k}" for k in ks) +
              " | mean cos | norm of E u | TM off-diag | TM diag | train passes | train wall (s) |",
              "| --- |" + " ---: |" * (len(ks) + 7)]
    for r in g["rows"]:
        cells = [_pct(r["eot"][k]["10"]["acc"], _interval(r["eot"][k]["10"]["acc"], r["eot"][k]["10"]["n"]))
                 for k in ks]
        clean = r["clean"]["10"]
        lines.append(f"| {r['label']} | {_pct(clean['acc'], _interval(clean['acc'], clean['n']))} | "
                     + " | ".join(cells) + f" | {r['cos']:.3f} | {r['mean_u_norm']:.3f} | "
                     f"{r['tm_off_diagonal']:.3f} | {r['tm_diagonal']:.3f} | {_num(r['fb_passes'])} | "
                     f"{_num(r['train_wall_s'])} |")
    v = g["verdict"]
    if "lam1_vs_lam0" in v:
        c = v["lam1_vs_lam0"]
        lines += ["", f"lam 1 against lam 0 under EOT-PGD at k = {c['k']} (m = 10): {c['difference_points']:+.1f} "
                      f"points, {c['verdict']} (same interval rule)."]
    still = [key[: -len("_k_still_lowers")] for key, val in v.items() if key.endswith("_k_still_lowers") and val]
    lines.append(f"Largest k still lowers the accuracy of: {', '.join(still)} (k not large enough there)." if still
                 else "Raising k to its largest value lowers no model's accuracy beyond the intervals.")
    return "\n".join(lines) + "\n"


def write_record(summary: dict[str, dict[str, Any]]) -> Path:
    from record import RECORDS, write_block  # noqa: PLC0415 (a sibling script)

    body = markdown(summary).split("\n", 1)[1].replace("\n### ", "\n#### ").replace("\n## ", "\n### ")
    return write_block("cifar-small-study", "summary", body, title="CIFAR-10 at reduced scale on 2 cores",
                       summary="SGN against Fast-AT, PGD-AT-7 and TRADES, and GradDiv, on CIFAR-10 (cnn-bn)",
                       records=RECORDS)


# ---------------------------------------------------------------------------------------------------- plan


def suite_passes(n: int, robust_share: float = 0.4) -> float:
    """Rough forward+backward passes of the standard suite + CW-Linf on n images, a share of them still robust
    after APGD-CE (FAB-T counted twice an APGD-T step; Square's forwards at a third of a pass)."""
    left = n * robust_share
    return 100 * n + 900 * left + 1800 * left + 5000 * left / 3 + 100 * left


def plan_lines() -> list[str]:
    lines, per_queue = [], {}
    for run in RUNS:
        cfg = tomllib.loads(run.path.read_text())["train"]
        by_epochs = cfg["epochs"] * N_TRAIN * run.passes_per_batch / TRAIN_RATE
        train_s = min(by_epochs, cfg.get("max_wall_s") or by_epochs)
        if run.graddiv:
            s = graddiv_size(False)
            eval_s = (s.steps * sum(k * (s.n_eval_kmax if k == max(s.ks) else s.n_eval) for k in s.ks)
                      + s.n_geom * s.geom_draws + 5 * s.steps * s.n_eval_kmax) / ATTACK_RATE
        else:
            eval_s = suite_passes(1000) / ATTACK_RATE
        per_queue[run.queue] = per_queue.get(run.queue, 0.0) + train_s + eval_s
        lines.append(f"{run.queue}  {run.key:13s} {cfg['epochs']:>3} epochs, max_wall_s {cfg.get('max_wall_s')}: "
                     f"train ~{train_s / 60:3.0f} min, score ~{eval_s / 60:3.0f} min  {run.label}")
    total = max(per_queue.get("A", 0), per_queue.get("B", 0)) + max(per_queue.get("C", 0), per_queue.get("D", 0))
    lines.append(f"queues A | B side by side, then C | D: ~{total / 3600:.1f} h per seed on 2 free cores "
                 f"(contention-free one-thread rates of cnn-bn, {TRAIN_RATE} and {ATTACK_RATE} images/s; "
                 f"{'fits' if total <= 2.5 * 3600 else 'OVER'} the 2.5 h budget). Under load it takes longer; a "
                 "verdict wants a second seed (--seed 1), as long again.")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["plan", "run", "evaluate", "summary"])
    ap.add_argument("--root", type=Path, default=RESULTS)
    ap.add_argument("--queue", choices=["A", "B", "C", "D", "all"], default="all")
    ap.add_argument("--part", choices=["sgn", "graddiv", "all"], default="all",
                    help="sgn: queues A and B; graddiv: queues C and D")
    ap.add_argument("--only", nargs="+", help="only these run keys")
    ap.add_argument("--seed", type=int, default=0, help="run/evaluate: the seed (root/seed<N>/); a verdict wants two")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="summary: the seeds to tabulate")
    ap.add_argument("--n", type=int, default=1000, help="test images for the SGN part's final suite")
    ap.add_argument("--toy", action="store_true", help="the offline digits set, tiny runs (end-to-end test)")
    args = ap.parse_args(argv)
    if args.command == "plan":
        print("\n".join(plan_lines()))
        return 0
    runs = [r for r in selected(args.queue, args.only)
            if args.part == "all" or r.graddiv == (args.part == "graddiv")]
    n = min(args.n, 16) if args.toy else args.n
    if args.command in ("run", "evaluate"):
        for run in runs:
            if args.command == "run":
                train(seed_root(args.root, args.seed), run, toy=args.toy, seed=args.seed)
            score(seed_root(args.root, args.seed), run, n=n, toy=args.toy)
        return 0
    summary = {str(s): summarize(seed_root(args.root, s)) for s in args.seeds if seed_root(args.root, s).exists()}
    args.root.mkdir(parents=True, exist_ok=True)
    (args.root / "summary.json").write_text(json.dumps(summary, indent=1))
    (args.root / "summary.md").write_text(markdown(summary))
    if args.root.resolve() == RESULTS.resolve():  # the study's own results (not a toy) refresh its record
        print(f"[cifar_small] record: {write_record(summary)}")
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
