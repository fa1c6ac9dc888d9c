"""Crafted or damaged model metadata is refused by name (CheckpointError, one line from `gradguard eval`), never a
KeyError, JSONDecodeError or TypeError from inside the model builder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from gradguard.checkpoint import MODEL_FORMAT, CheckpointError, load_model
from gradguard.cli import main

GOOD = {"format": MODEL_FORMAT, "model": "madry-cnn", "dataset": "digits"}

CASES = [
    ("not json {", "corrupt gradguard metadata"),
    ("[1, 2]", "must be a JSON object (got list)"),
    ('"text"', "must be a JSON object (got str)"),
    (json.dumps({"format": MODEL_FORMAT}), "lacks 'model'"),
    (json.dumps({"format": MODEL_FORMAT, "model": "madry-cnn"}), "lacks 'dataset'"),
    (json.dumps({**GOOD, "model": 5}), "field 'model' must be a JSON string (got 5)"),
    (json.dumps({**GOOD, "model_args": [1]}), "field 'model_args' must be a JSON object"),
    (json.dumps({**GOOD, "randomization_args": "x"}), "field 'randomization_args' must be a JSON object"),
    (json.dumps({**GOOD, "model": "nosuch"}), "cannot be built: unknown model 'nosuch'"),
    (json.dumps({**GOOD, "dataset": "imagenet"}), "cannot be built: unknown dataset 'imagenet'"),
    (json.dumps({**GOOD, "model_args": {"x": 1}}), "cannot be built"),
    (json.dumps({**GOOD, "randomization": "noize"}), "cannot be built: unknown randomization 'noize'"),
    (json.dumps({**GOOD, "randomization": "noise", "randomization_args": {"std": 1}}), "cannot be built"),
]


def _crafted(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model.safetensors"
    path.write_bytes(st_save({"w": torch.zeros(2)}, metadata={"gradguard": text}))
    return path


@pytest.mark.parametrize(("text", "fragment"), CASES)
def test_crafted_metadata_is_a_checkpoint_error(tmp_path: Path, text: str, fragment: str) -> None:
    path = _crafted(tmp_path, text)
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert fragment in str(e.value) and str(path) in str(e.value), str(e.value)


@pytest.mark.parametrize(("text", "fragment"), CASES[:3] + CASES[6:7] + CASES[8:9])
def test_eval_reports_crafted_metadata_in_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = _crafted(tmp_path, text)
    with pytest.raises(SystemExit) as e:
        main(["eval", "--checkpoint", str(path), "--dataset", "digits", "--n", "4", "--quick", "--device", "cpu"])
    message = str(e.value.code)
    assert message.startswith("gradguard eval: ") and fragment in message and "\n" not in message, message
