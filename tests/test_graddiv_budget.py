"""benchmarks/graddiv_budget.py: the toy size end to end (two one-thread workers, resumable), and the verdict rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import graddiv_budget as study  # noqa: E402
from graddiv_budget_summary import verdicts  # noqa: E402


def _job(lam: float, seed: int, acc: dict[int, float], n: int = 400) -> dict:
    se = {k: (a * (1 - a) / n) ** 0.5 for k, a in acc.items()}
    return {"config": {"regularizer": "mrl", "lam": lam, "n_draws": 4}, "seed": seed,
            "clean": {"clean": {"1": {"acc": 0.9, "se": 0.01, "n": n}, "10": {"acc": 0.9, "se": 0.01, "n": n}}},
            "eot": {k: {"robust": {"10": {"acc": a, "se": se[k], "n": n}}} for k, a in acc.items()}}


def test_verdict_needs_two_se_at_every_k_from_5_on_every_seed() -> None:
    base = {f"b{s}": _job(0.0, s, {1: 0.5, 5: 0.30, 20: 0.20, 100: 0.15}) for s in (0, 1)}
    wins = {f"w{s}": _job(4.0, s, {1: 0.1, 5: 0.45, 20: 0.35, 100: 0.30}) for s in (0, 1)}  # k=1 does not count
    (row,) = verdicts({**base, **wins})
    assert row["holds"] and row["complete"] and row["min_margin_se"] > 2
    close = {**wins, "w1": _job(4.0, 1, {1: 0.1, 5: 0.45, 20: 0.35, 100: 0.18})}  # one seed, one k: < 2 se
    (row,) = verdicts({**base, **close})
    assert not row["holds"] and row["min_margin_se"] < 2
    (row,) = verdicts({"b0": base["b0"], **wins})  # the baseline of seed 1 is missing: no verdict
    assert not row["holds"] and not row["complete"]
    del wins["w1"]["eot"][100]  # an evaluation not done yet cannot pass the rule
    (row,) = verdicts({**base, **wins})
    assert not row["holds"] and not row["complete"]


def test_sizing_picks_the_first_plan_that_fits_and_balances_two_workers() -> None:
    rates = {"train_img_per_s_n4": 300.0, "train_img_per_s_n8": 150.0, "eot_s_per_row": 1e-4}
    fast = study.fit(study.FULL, rates, 60000, 2, study.BUDGET_S)
    slow = study.fit(study.FULL, {k: v / 10 if k != "eot_s_per_row" else v * 10 for k, v in rates.items()},
                     60000, 2, study.BUDGET_S)
    assert (fast.epochs, fast.n_eval_kmax) > (slow.epochs, slow.n_eval_kmax)
    share, longest = study.assign(fast, rates, 60000, 2)
    assert sorted(sum(share, [])) == sorted(f"{c.name}-s{s}" for c, s in study.jobs(study.FULL))
    assert longest <= study.BUDGET_S


def test_toy_study_runs_end_to_end_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "toy"
    repo_records = {r: r.read_bytes() for r in (BENCH.parent / "docs" / "records").glob("*.md")}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(BENCH / "graddiv_budget.py"), "--toy", "--out", str(out)], env=env,
                   check=True, capture_output=True, text=True)
    plan = json.loads((out / "plan.json").read_text())
    assert len(plan["workers"]) == 2 and all(plan["workers"])
    evals = sorted(out.glob("runs/*/eval/*.json"))
    n_jobs = len(study.jobs(study.TOY))
    assert len(evals) == n_jobs * (3 + len(study.TOY.ks))  # clean, geometry, transfer and each k
    summary = json.loads((out / "summary.json").read_text())
    assert {r["setting"] for r in summary["verdicts"]} == {"mrl-lam4-n2", "eot-lam4-n2"}
    assert all(r["complete"] for r in summary["verdicts"])
    assert "## Verdict" in (out / "summary.md").read_text() and (out / "budget_curves.png").stat().st_size > 0
    geometry = json.loads(next(out.glob("runs/*/eval/geometry.json")).read_text())
    assert 0 < geometry["mean_u_norm"] < 1 and 0 < geometry["mrl_n"] < 1
    transfer = json.loads(next(out.glob("runs/*/eval/transfer.json")).read_text())
    assert len(transfer["success"]) == study.TOY.transfer_draws and 0 <= transfer["mean_diagonal"] <= 1
    assert "white-box on a frozen draw" in (out / "summary.md").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in evals}
    capsys.readouterr()
    for worker in (0, 1):  # a rerun finds every model and every evaluation: nothing is trained or recomputed
        study.run_worker(out, worker)
    assert capsys.readouterr().out == ""
    assert {p: p.stat().st_mtime_ns for p in evals} == stamps

    # The toy run leaves docs/records alone; asked to, the summary writes its tables into the study's record.
    # (compared with what was there before: the real study's own record may exist)
    assert {r: r.read_bytes() for r in (BENCH.parent / "docs" / "records").glob("*.md")} == repo_records
    from graddiv_budget_summary import write_summary

    records = tmp_path / "records"
    records.mkdir()
    write_summary(out, records=records)
    (record,) = records.glob("*-graddiv-budget.md")
    text = record.read_text()
    assert "<!-- generated: summary -->" in text and "## Verdict" in text and "mrl-lam4-n2" in text
    assert "![" not in text  # plot paths are relative to the results folder, so the record names the folder
