"""benchmarks/gpu_cifar10.py end to end on CPU at toy size (--toy): four runs trained, evaluated and recorded in the
results schema, the results table written, weights kept out of the outputs; on tiny pickle batches it writes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gradguard.data import cifar, sources
from gradguard.data.checksums import md5_bytes
from gradguard.report import RESULTS_SCHEMA

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_cifar10.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_cifar10", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """.device-data/cifar-10-batches-py with 5 x 64 training and 64 test images (their md5 made 'published')."""
    monkeypatch.setenv("GRADGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GRADGUARD_OFFLINE", "1")
    monkeypatch.delenv("GRADGUARD_DATA", raising=False)
    monkeypatch.setattr(sources, "shared_data_dirs", lambda: [])
    monkeypatch.setitem(cifar.COUNTS, "train", 320)
    monkeypatch.setitem(cifar.COUNTS, "test", 64)
    folder = tmp_path / ".device-data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sums = {}
    for names in cifar.BATCHES.values():
        for n in names:
            labels = rng.integers(0, 10, 64)
            images = (rng.integers(0, 64, (64, 3, 32, 32)) + 19 * labels[:, None, None, None]).astype(np.uint8)
            blob = cifar.encode_batch(images, labels)  # class-dependent brightness: something to learn
            (folder / n).write_bytes(blob)
            sums[n] = md5_bytes(blob)
    monkeypatch.setitem(sources.MD5, "cifar10", sums)
    return folder.parent


def test_toy_run_writes_four_results_and_the_table(tiny_batches: Path, tmp_path: Path):
    script = _load_script()
    out = tmp_path / "out"
    assert script.main(["--toy", "--out", str(out), "--work", str(tmp_path / "work"), "--budget-s", "3600",
                        "--data-root", str(tiny_batches), "--device", "cpu"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    names = [r["name"] for r in plan["runs"]]
    assert names == ["cifar10-gpu-fast-at", "cifar10-gpu-sgn", "cifar10-gpu-graddiv-lam0", "cifar10-gpu-graddiv-lam1"]
    assert plan["data"]["lossy"] is False and "python batches" in plan["data"]["source"]
    for run in plan["runs"]:
        assert "skipped" not in run and run["epochs_run"] > 0 and run["n_eval"] == 16
        results = json.loads((out / "runs" / run["name"] / "results.json").read_text())
        assert results["schema"] == RESULTS_SCHEMA and results["dataset"]["lossy"] is False
        assert list(results["evaluation"]["attacks"]) == ["apgd-ce", "apgd-t"]
        assert (out / "archive" / f"{run['name']}.json").exists()
    lam1 = json.loads((out / "runs" / "cifar10-gpu-graddiv-lam1" / "results.json").read_text())
    assert lam1["model"]["randomization"] == "noise" and lam1["evaluation"]["m"] == 10
    assert lam1["evaluation"]["k"] == 2 and lam1["gradient_statistics"] is not None
    table = (out / "results.md").read_text()
    assert table.count("| cifar10-gpu-") == 4 and "CIFAR-10 (exact python batches)" in table
    assert not list(out.rglob("*.safetensors"))
    assert sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) < 5 * 2**20


def test_a_spent_budget_still_writes_the_plan_saying_what_was_skipped(tiny_batches: Path, tmp_path: Path):
    script = _load_script()
    out = tmp_path / "out"
    assert script.main(["--toy", "--out", str(out), "--budget-s", "1", "--data-root", str(tiny_batches),
                        "--device", "cpu"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert len(plan["runs"]) == 4 and all(r["skipped"].startswith("deadline") for r in plan["runs"])
    assert not (out / "archive").exists() and not (out / "results.md").exists()


def test_a_failed_run_is_recorded_and_the_others_keep_their_slot(tiny_batches: Path, tmp_path: Path, monkeypatch):
    script = _load_script()
    calls = []

    def fake_run(cfg, **kw):
        kw["record"]["runs"].append({"name": cfg.name})
        calls.append(cfg.name)
        if cfg.name.endswith("fast-at"):
            raise RuntimeError("boom")

    monkeypatch.setattr(script, "run_one", fake_run)
    out = tmp_path / "out"
    assert script.main(["--toy", "--out", str(out), "--data-root", str(tiny_batches), "--device", "cpu"]) == 0
    runs = json.loads((out / "plan.json").read_text())["runs"]
    assert len(calls) == 4 and runs[0]["error"] == "RuntimeError: boom"
    assert all("error" not in r for r in runs[1:])


def test_epochs_fit_the_budget_and_never_exceed_the_recipe():
    script = _load_script()
    assert script.plan_epochs(rate=1000.0, seconds=100.0, n_train=49000, cap=15) == 2.0
    assert script.plan_epochs(rate=1e6, seconds=100.0, n_train=49000, cap=15) == 15
    assert script.plan_epochs(rate=1.0, seconds=1.0, n_train=49000, cap=15) == 0.1
