"""The SGN study's decision rule (benchmarks/sgn_study.py) and one end-to-end toy run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("sgn_study", ROOT / "benchmarks" / "sgn_study.py")
study = importlib.util.module_from_spec(spec)
sys.modules["sgn_study"] = study  # dataclasses look their module up there
spec.loader.exec_module(study)


def recs(*points: tuple[float, float]) -> list[dict]:
    return [{"fb_passes": p, "val_robust_acc": a, "epoch": i} for i, (p, a) in enumerate(points)]


def test_target_must_be_reached_and_held_at_two_consecutive_validations() -> None:
    curve = recs((10, 0.5), (20, 0.9), (30, 0.7), (40, 0.9), (50, 0.91), (60, 0.95))
    assert study.passes_to(curve, 0.9) == 40  # 20 reached it once and fell back
    assert study.passes_to(curve, 0.99) is None
    assert study.plateau(curve) == pytest.approx((0.9 + 0.91 + 0.95) / 3)
    assert study.plateau(curve[:2]) is None
    assert study.at_budget(curve, 35) == 0.7 and study.at_budget(curve, 5) is None


def test_wilson_interval_matches_the_closed_form() -> None:
    lo, hi = study.wilson(8, 10)  # (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.96
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)


def _ok(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_toy_study_runs_end_to_end_and_summarizes(tmp_path: Path) -> None:
    """Offline (the toy size trains on the 8x8 digits set): the queue, the skip of finished runs, the summary."""
    repo_records = {p: p.read_bytes() for p in (ROOT / "docs" / "records").glob("*.md")}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "sgn_study.py")]
    args = ["--root", str(tmp_path), "--seeds", "0", "--toy", "--only", "pgd40", "n_fgsm", "sgn_learned_r1"]
    _ok([*cmd, "run", *args])
    _ok([*cmd, "run", *args])  # done runs are skipped
    _ok([*cmd, "summary", "--root", str(tmp_path), "--seeds", "0"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = {r["key"]: r for r in summary["seeds"]["0"]["rows"]}
    assert set(rows) == {"pgd40", "n_fgsm", "sgn_learned_r1"} and all(r["done"] for r in rows.values())
    assert rows["pgd40"]["points"] == 4 and (tmp_path / "curves.png").exists()
    assert len(list((tmp_path / "pgd40-s0" / "models").glob("step-*.safetensors"))) == 4
    log = [json.loads(line) for line in (tmp_path / "pgd40-s0" / "study_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["git"] is not None  # the second call skipped the finished run
    ref = json.loads((tmp_path / "reference_curves.json").read_text())
    assert [c["key"] for c in ref["curves"]] == ["pgd40"] and ref["val_attack"] == "apgd-ce"
    # Asked to, the summary writes its tables into the study's record; a toy root never touches docs/records.
    sys.path.insert(0, str(ROOT / "benchmarks"))
    records = tmp_path / "records"
    records.mkdir()
    record = study.write_record(summary, records)
    text = record.read_text()
    assert record.name.endswith("-sgn-study.md") and "<!-- generated: summary -->" in text
    assert "\n### Seed 0" in text and "passes to X" in text and "# SGN study: passes to X" not in text
    assert {p: p.read_bytes() for p in (ROOT / "docs" / "records").glob("*.md")} == repo_records


def test_toy_readings_run_evaluate_and_summarize(tmp_path: Path) -> None:
    """Both readings at toy size: the architecture run counts its PGD steps, the active network is scored with the
    bypass attacks and the summary states the comparison against each reading's own baseline."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "sgn_study.py")]
    plan = subprocess.run([*cmd, "plan"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "pgd10_sgnarch" in plan and "sgn_active" in plan
    args = ["--root", str(tmp_path), "--seeds", "0", "--toy"]
    _ok([*cmd, "run", *args, "--only", "pgd10_sgnarch", "sgn_active"])
    _ok([*cmd, "evaluate", *args, "--only", "sgn_active", "--n", "20"])
    _ok([*cmd, "summary", "--root", str(tmp_path), "--seeds", "0"])
    arch = json.loads((tmp_path / "pgd10_sgnarch-s0" / "train_summary.json").read_text())
    assert arch["fb_passes"] == 8 * 12  # 8 batches x (10 PGD steps + tap pass + perturbed pass)
    ev = json.loads((tmp_path / "sgn_active-s0" / "final_eval.json").read_text())
    assert ev["suite"] == "standard+bypass" and "bpda-apgd-ce" in ev["attacks"]
    assert "purifier_bypass" in {f["name"] for f in ev["flags"]}
    seed = json.loads((tmp_path / "summary.json").read_text())["seeds"]["0"]
    assert {r["key"] for r in seed["rows"]} == {"pgd10_sgnarch", "sgn_active"}
    active = seed["readings"]["active"]
    assert active["active_suite"] == ev["robust_accuracy"][0]
    assert active["bypass"].startswith("attacks that do not differentiate through the purifier")
    assert active["plain_suite"] is None and active["gain"] is None  # sgn_learned_r1 was not run here
    assert "Active inference" in (tmp_path / "summary.md").read_text()
    # The scored final goes into a results-table archive in the format `gradguard run` writes.
    (archived,) = study.archive_finals(tmp_path, tmp_path / "archive", seeds=(0,))
    row = json.loads(archived.read_text())
    assert archived.name == "sgn-study-sgn_active-s0.json" and row["evaluation"]["suite"] == "standard+bypass"
    assert row["training"]["fb_passes"] > 0 and row["model"]["name"] and "clean_correct" not in row["evaluation"]
