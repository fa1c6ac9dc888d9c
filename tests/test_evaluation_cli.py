"""`gradguard eval` end to end on an exported (untrained) model and the offline digits test split."""

from __future__ import annotations

import json

import pytest
import torch

from gradguard.checkpoint import save_model
from gradguard.cli import main
from gradguard.evaluation import EvalResult
from gradguard.models import build_model


@pytest.fixture
def exported(tmp_path):
    gen = torch.Generator().manual_seed(0)
    model = build_model("madry-cnn", "digits")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    path = tmp_path / "run" / "model.safetensors"
    path.parent.mkdir()
    save_model(model, path, {"model": "madry-cnn", "dataset": "digits"})
    return path


def test_eval_cli_prints_summary_and_flags_and_writes_json(exported, tmp_path, capsys) -> None:
    out = tmp_path / "results" / "eval.json"
    code = main(["eval", "--checkpoint", str(exported.parent), "--eps", "0.1", "0.2", "--n", "24", "--quick",
                 "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "clean accuracy" in printed and "masking checks" in printed and "large_eps_not_zero" in printed
    raw = json.loads(out.read_text())
    assert raw["n"] == 24 and raw["eps"] == [0.1, 0.2] and raw["suite"] == "standard"
    assert raw["meta"]["dataset"] == "digits" and raw["meta"]["model_info"]["model"] == "madry-cnn"
    assert list(raw["attacks"]) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert EvalResult.load(out).robust_accuracy == raw["robust_accuracy"]


def test_eval_cli_errors_name_the_problem(tmp_path, exported) -> None:
    with pytest.raises(SystemExit, match="does not exist"):
        main(["eval", "--checkpoint", str(tmp_path / "missing.safetensors")])
    with pytest.raises(SystemExit, match="unknown dataset"):
        main(["eval", "--checkpoint", str(exported), "--dataset", "imagenet", "--n", "4"])
