"""benchmarks/cifar_small_study.py end to end at toy size (the offline digits set): six runs trained, the SGN part
scored by the standard suite chained with CW-Linf, the GradDiv part by EOT at three k, concentration and the transfer
matrix; the summary's tables and verdicts; a second start skips what is done and a stopped run resumes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cifar_small_study.py"


def _study(*args: str, root: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SCRIPT.parents[1] / "src")}
    done = subprocess.run([sys.executable, str(SCRIPT), *args, "--toy", "--root", str(root)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _load_script():
    sys.path.insert(0, str(SCRIPT.parent))  # its sibling scripts (sgn_study, graddiv_budget, record)
    spec = importlib.util.spec_from_file_location("cifar_small_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_toy_study_trains_scores_summarizes_and_resumes(tmp_path: Path):
    top = tmp_path / "study"
    _study("run", root=top)
    root = top / "seed0"
    for key in ("fast_at", "sgn", "pgd_at", "trades"):
        ev = json.loads((root / key / "final_eval.json").read_text())
        assert list(ev["attacks"]) == ["apgd-ce", "apgd-t", "fab-t", "square", "cw-linf"]
        assert ev["n"] == 16 and ev["meta"]["dataset"] == "digits" and ev["meta"]["lossy"] is False
    for key in ("graddiv_lam0", "graddiv_lam1"):
        names = sorted(p.stem for p in (root / key / "eval").glob("*.json"))
        assert names == ["clean", "data", "eot-k1", "eot-k10", "eot-k50", "geometry", "transfer"]
        tm = json.loads((root / key / "eval" / "transfer.json").read_text())
        assert len(tm["success"]) == 5 and len(tm["success"][0]) == 5

    stamp = (root / "sgn" / "final_eval.json").stat().st_mtime_ns
    again = _study("run", root=top)
    assert again.count(": trained") == 6 and "gradguard train" not in again and " -m gradguard" not in again
    assert (root / "sgn" / "final_eval.json").stat().st_mtime_ns == stamp

    table = _study("summary", root=top)
    summaries = json.loads((top / "summary.json").read_text())
    assert list(summaries) == ["0"]  # seed 1 not run: not tabulated
    summary = summaries["0"]
    assert [r["key"] for r in summary["sgn"]["rows"]] == ["fast_at", "sgn", "pgd_at", "trades"]
    assert [v["baseline"] for v in summary["sgn"]["verdict"]] == ["fast_at", "pgd_at", "trades"]
    for row in summary["sgn"]["rows"]:
        lo, hi = row["robust_ci"]
        assert lo <= row["robust"] <= hi and row["fb_passes"] > 0 and row["train_wall_s"] > 0
    assert all(v["wall_ratio"] > 0 for v in summary["sgn"]["verdict"])
    assert summary["graddiv"]["verdict"]["lam1_vs_lam0"]["k"] == 50
    assert "## Seed 0" in table and "| Fast-AT" in table and "EOT k=50" in table and "Does SGN gain" in table
    assert "Data: exact copy" in table  # the digits set; the CIFAR-10 JPEG copy reads "LOSSY JPEG copy"
    assert not (tmp_path / "docs").exists()


def test_a_stopped_run_resumes_from_its_checkpoint_and_the_plan_covers_every_run(tmp_path: Path):
    study = _load_script()
    run = study.RUNS[1]
    out = tmp_path / run.key
    assert "seed=1" in study.train_command(run, out, toy=True, seed=1)
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.safetensors").write_bytes(b"")
    assert study.train_command(run, out, toy=True)[-2:] == ["--resume", str(out)]
    lines = study.plan_lines()
    assert len(lines) == len(study.RUNS) + 1 and "max_wall_s 2700" in lines[0] and "2.5 h budget" in lines[-1]
    assert study.markdown({}).endswith("Not run yet.\n")


def test_the_data_line_says_when_the_copy_is_lossy():
    study = _load_script()
    line = study.data_line([{"data_source": "LOSSY JPEG copy ...", "lossy": True}])
    assert "LOSSY JPEG copy of CIFAR-10" in line and "not the exact images" in line
