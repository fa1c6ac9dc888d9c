"""The summary of benchmarks/graddiv_budget.py, regenerated from its JSON files: tables, the verdict, two plots.

The verdict rule, stated before the runs (docs/graddiv.md): "GradDiv improves robustness against EOT attacks" holds
for a setting (regularizer, lam > 0, n_draws) only where its robust accuracy (m-draw prediction, the largest m)
beats lam = 0 with the same n_draws by at least two standard errors of the difference, at every k >= 5, on every
seed. The standard error of a difference is sqrt(se_a^2 + se_b^2), each se = sqrt(p (1 - p) / n).
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path
from typing import Any

from gradguard.atomic import atomic_write_text

__all__ = ["load_records", "verdicts", "write_summary"]

CLAIM = "GradDiv improves robustness against EOT attacks"
PLOT = "budget_curves.png"
MIN_K = 5


def load_records(out: Path) -> dict[str, dict[str, Any]]:
    """job name -> {"config", "seed", "clean", "geometry", "eot": {k: record}, "train_mrl"} from the eval JSONs."""
    jobs: dict[str, dict[str, Any]] = {}
    for path in sorted((out / "runs").glob("*/eval/*.json")):
        rec = json.loads(path.read_text())
        job = jobs.setdefault(rec["job"], {"config": rec["config"], "seed": rec["seed"], "eot": {}})
        if path.stem.startswith("eot-k"):
            job["eot"][int(rec["k"])] = rec
        else:
            job[path.stem] = rec
    for name, job in jobs.items():
        job["train_mrl"] = _train_mrl(out / "runs" / name / "metrics.jsonl")
    return jobs


def _train_mrl(metrics: Path) -> float | None:
    """Mean R of the training draws over the last quarter of the logged steps."""
    if not metrics.exists():
        return None
    recs = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    mrl = [r["graddiv_mrl"] for r in recs if r.get("kind") == "train" and "graddiv_mrl" in r]
    tail = mrl[-max(1, len(mrl) // 4):]
    return sum(tail) / len(tail) if tail else None


def _name(cfg: dict[str, Any]) -> str:
    return f"{cfg['regularizer']}-lam{cfg['lam']:g}-n{cfg['n_draws']}"


def _robust(job: dict[str, Any], k: int, m: str) -> dict[str, float]:
    return job["eot"][k]["robust"][m]


def verdicts(jobs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per setting with lam > 0: whether the rule holds, and the smallest margin (difference / its se)."""
    by_cfg: dict[str, dict[int, dict[str, Any]]] = {}
    for job in jobs.values():
        by_cfg.setdefault(_name(job["config"]), {})[job["seed"]] = job
    all_ks = sorted({k for job in jobs.values() for k in job["eot"] if k >= MIN_K})
    rows = []
    for name, seeds in sorted(by_cfg.items()):
        cfg = next(iter(seeds.values()))["config"]
        if cfg["lam"] == 0:
            continue
        base = by_cfg.get(f"mrl-lam0-n{cfg['n_draws']}", {})
        margins: list[float] = []
        complete = bool(base) and set(base) >= set(seeds)
        for seed, job in seeds.items():
            m = str(max(int(v) for v in job["clean"]["clean"])) if "clean" in job else "1"
            for k in all_ks:  # a k missing on either side leaves the verdict incomplete, never passes it
                if seed not in base or k not in base[seed]["eot"] or k not in job["eot"]:
                    complete = False
                    continue
                a, b = _robust(job, k, m), _robust(base[seed], k, m)
                se = math.sqrt(a["se"] ** 2 + b["se"] ** 2)
                margins.append((a["acc"] - b["acc"]) / se if se > 0 else (math.inf if a["acc"] > b["acc"] else 0.0))
        holds = complete and bool(margins) and min(margins) >= 2.0
        rows.append({"setting": name, "seeds": sorted(seeds), "holds": holds, "complete": complete,
                     "min_margin_se": min(margins) if margins else None})
    return rows


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _table(jobs: dict[str, dict[str, Any]]) -> list[str]:
    ks = sorted({k for j in jobs.values() for k in j["eot"]})
    ms = sorted({m for j in jobs.values() for m in j.get("clean", {}).get("clean", {})}, key=int)
    head = (["setting", "seed"] + [f"clean m={m}" for m in ms]
            + [f"k={k} m={m}" for k in ks for m in ms]
            + ["\\|E u\\|", "sqrt(c_n)", "c_n", "R_n", "R train", "EOT energy share", "white-box on a frozen draw",
               "transfer between draws"])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for _, j in sorted(jobs.items()):
        g = j.get("geometry", {})
        cells = [_name(j["config"]), str(j["seed"])]
        cells += [_fmt(j["clean"]["clean"][m]["acc"]) if "clean" in j else "-" for m in ms]
        cells += [f"{_fmt(_robust(j, k, m)['acc'])} ± {_fmt(_robust(j, k, m)['se'])}" if k in j["eot"] else "-"
                  for k in ks for m in ms]
        cn, tm = g.get("cos_n"), j.get("transfer", {})
        cells += [_fmt(g.get("mean_u_norm")), _fmt(math.sqrt(max(cn, 0.0)) if cn is not None else None), _fmt(cn),
                  _fmt(g.get("mrl_n")), _fmt(j["train_mrl"]), _fmt(g.get("eot_energy_share")),
                  _fmt(tm.get("mean_diagonal")), _fmt(tm.get("mean_off_diagonal"))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _plots(out: Path, jobs: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_cfg: dict[str, list[dict[str, Any]]] = {}
    for j in jobs.values():
        by_cfg.setdefault(_name(j["config"]), []).append(j)
    ks = sorted({k for j in jobs.values() for k in j["eot"]})
    fig, (ax_acc, ax_geo) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, group in sorted(by_cfg.items()):
        m = max((m for j in group for m in j.get("clean", {}).get("clean", {})), key=int, default="1")
        pts = [(k, [_robust(j, k, m) for j in group if k in j["eot"]]) for k in ks]
        pts = [(k, r) for k, r in pts if r]
        acc = [sum(r["acc"] for r in rs) / len(rs) for _, rs in pts]
        err = [2 * math.sqrt(sum(r["se"] ** 2 for r in rs)) / len(rs) for _, rs in pts]
        ax_acc.errorbar([k for k, _ in pts], acc, yerr=err, marker="o", capsize=3, label=name)
        geo = [j["geometry"]["mean_u_norm"] for j in group if "geometry" in j]
        if geo:
            ax_geo.axhline(sum(geo) / len(geo), ls="--", lw=1, color=ax_acc.lines[-1].get_color(), label=name)
    ax_acc.set(xscale="log", xlabel="attacker's EOT draws k", ylabel="robust accuracy (seed mean, ±2 se)",
               title="EOT-PGD against k")
    ax_geo.plot(ks, [1 / math.sqrt(k) for k in ks], "k-", marker="o", label="1/sqrt(k)")
    ax_geo.set(xscale="log", yscale="log", xlabel="attacker's EOT draws k", ylabel="|E u| (geometry draws)",
               title="mean gradient direction vs the 1/sqrt(k) threshold")
    for ax in (ax_acc, ax_geo):
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / PLOT, dpi=110)
    plt.close(fig)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_summary(out: Path, *, records: Path | None = None) -> str:
    """summary.json, summary.md and budget_curves.png under `out`, from the eval JSONs alone; returns the Markdown.

    With `records` (a records folder, normally docs/records), the tables and the verdict also go into the generated
    block of the study's experiment record there (<date>-graddiv-budget.md, see benchmarks/record.py)."""
    jobs = load_records(out)
    plan = json.loads((out / "plan.json").read_text()) if (out / "plan.json").exists() else {}
    rows = verdicts(jobs)
    holding = [r["setting"] for r in rows if r["holds"]]
    plots = [PLOT] if jobs else []
    md = [f"# GradDiv against the attacker's budget ({time.strftime('%Y-%m-%d')}, commit {_commit()})", "",
          f"Command: `{plan.get('command', 'benchmarks/graddiv_budget.py')}`; plan estimate "
          f"{plan.get('estimate_s', float('nan')) / 3600:.2f} h, sizes `{json.dumps(plan.get('size', {}))}`.", "",
          "Robust accuracy ± its standard error se = sqrt(p (1 - p) / n) (a 95% interval is about ± 2 se); c_n and "
          "R_n over the first n_draws of the geometry draws; |E u| = the square root of the mean pairwise cosine "
          f"over {plan.get('size', {}).get('geom_draws', '?')} draws of each input, averaged over the inputs; "
          "R train = mean resultant length logged over the last quarter of training. The last two columns come from "
          "the transfer matrix between frozen draws (PGD on one fixed sample model): its mean diagonal is white-box "
          "success on a frozen draw (per-draw weakness), its mean off-diagonal the transferability among draws, both "
          "among the inputs the target draw classifies correctly.", "",
          *_table(jobs), "", f"## Verdict: \"{CLAIM}\"", "",
          f"Rule: lam > 0 beats lam = 0 (same n_draws) by >= 2 se of the difference at every k >= {MIN_K} on every "
          "seed.", "", "| setting | seeds | complete | min margin (se) | holds |", "| --- | --- | --- | --- | --- |"]
    md += [f"| {r['setting']} | {r['seeds']} | {r['complete']} | {_fmt(r['min_margin_se'], 2)} | "
           f"{'yes' if r['holds'] else 'no'} |" for r in rows]
    md += ["", f"Holds for: {', '.join(holding) if holding else 'no setting'}.", ""]
    md += [f"![budget curves]({p})" for p in plots]
    text = "\n".join(md) + "\n"
    if records is not None:  # first, so that its provenance line sees the repository before this run's files change
        from record import write_block  # noqa: PLC0415 (a sibling script, found via sys.path[0])

        body = [line for line in md[2:] if not line.startswith("![")]
        repo = Path(__file__).resolve().parents[1]
        shown = out.resolve().relative_to(repo) if out.resolve().is_relative_to(repo) else out
        body.append(f"Plots and JSON: `{shown}` (summary.md, summary.json, {PLOT}).")
        write_block("graddiv-budget", "summary", "\n".join(body), title="GradDiv against the attacker's budget",
                    summary="GradDiv against EOT at k draws, the geometry behind it, and the verdict",
                    records=records)
    if jobs:
        _plots(out, jobs)
    atomic_write_text(out / "summary.json", json.dumps({"verdicts": rows, "claim": CLAIM, "holds_for": holding,
                                                        "jobs": jobs, "plan": plan}, indent=1, default=str))
    atomic_write_text(out / "summary.md", text)
    return text
