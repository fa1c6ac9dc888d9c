"""Every config key is checked at load, before data is read or a folder is made: one line per problem naming the
file, the key, the value and what was expected; the command exits 1 without a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gradguard.cli import main
from gradguard.config import ConfigError, load_config, parse_config
from gradguard.config_checks import model_options
from gradguard.data.specs import SPECS
from gradguard.models import build_model
from gradguard.models.zoo import MODELS

CASES = [
    # registries
    ('[eval]\nsuite = "nosuch"\n', "eval.suite: unknown suite 'nosuch'"),
    ('[data]\ndataset = "imagenet"\n', "data.dataset: unknown dataset 'imagenet'"),
    ('[model]\nname = "resnet9000"\n', "model.name: unknown model 'resnet9000'"),
    ('[model]\nrandomization = "noize"\n', "model.randomization: unknown randomization 'noize'"),
    ('[model]\nrandomization = "noise"\nrandomization_args = {std = 0.1}\n',
     "randomization 'noise' has no setting(s) ['std']"),
    ('[model]\nrandomization = "dropout"\nrandomization_args = {p = "half"}\n', "p must be a float"),
    ('[model]\nargs = {dropp = 0.1}\n', "model 'smallcnn' takes no argument(s) ['dropp']"),
    ('[model]\nname = "wrn-34-10"\nargs = {num_classes = 3}\n', "takes no argument(s) ['num_classes']"),
    ('[model]\nargs = {drop = "x"}\n', "model.args: drop must be a float"),
    ('[train]\ndevice = "gpu"\n', "train.device: expected 'auto', 'cpu', 'cuda', 'cuda:N'"),
    ('[train]\ndevice = "cuda:x"\n', "train.device"),
    # numbers: finite and in range
    ('[eval]\neps = [nan]\n', "eval.eps[0]: Input should be a finite number (got nan)"),
    ('[eval]\neps = [0.1, inf]\n', "eval.eps[1]"),
    ('[eval]\neps = [0.0]\n', "eval.eps[0]: must be > 0"),
    ('[model]\nargs = {drop = nan}\n', "model.args.drop: must be a finite number (got nan)"),
    ('[model]\nrandomization = "noise"\nrandomization_args = {init_std = inf}\n', "model.randomization_args.init_std"),
    ('[train]\nrecipe = "trades"\nrecipe_args = {beta = nan}\n', "train.recipe_args.beta"),
    ('[train]\nepochs = inf\n', "train.epochs: Input should be a finite number (got inf)"),
    ('[train]\nlr = nan\n', "train.lr"),
    ("seed = 18446744073709551616\n", "seed: Input should be less than or equal to 9223372036854775807"),
    ("seed = -1\n", "seed"),
    ("[train]\nthreads = 100000\n", "train.threads: must be between 1 and the"),
    ("[data]\nval_size = 60000\n", "data.val_size: must be smaller than the 60000 training images of mnist"),
    ('[data]\ndataset = "digits"\nval_size = 1500\n', "1442 training images of digits"),
    # run names: one plain path component
    ('name = "../../../x"\n', "name: must be a single folder name without '/'"),
    ('name = "/tmp/x"\n', "name: must be a single folder name"),
    ('name = "a\\\\b"\n', "name: must be a single folder name"),
    ('name = ""\n', "name: must be a folder name, not ''"),
    ('name = "."\n', "name: must be a folder name"),
    ('name = ".."\n', "name: must be a folder name"),
    ('name = "run\\u0007x"\n', "name: must not contain control characters"),
    ('name = "run\\nx"\n', "name: must not contain control characters"),
    (f'name = "{"x" * 256}"\n', "name: must be at most 255 bytes"),
]


@pytest.mark.parametrize(("text", "fragment"), CASES)
def test_bad_config_is_one_line_naming_file_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert fragment in msg, msg
    assert all(line.startswith(f"{path}: ") for line in msg.splitlines()), msg


@pytest.mark.parametrize("text", [
    'name = "run-1.b_c"\n', 'name = "café ü"\n', "seed = 9223372036854775807\n", "[train]\nthreads = 1\n",
    '[train]\ndevice = "cuda:1"\n',
    '[model]\nname = "wrn-34-10"\nargs = {drop_rate = 0.3}\n[data]\ndataset = "cifar10"\n',
    '[model]\nrandomization = "noise"\nrandomization_args = {init_std = 0}\n', "[data]\nval_size = 59999\n",
    '[model]\nrandomization_args = {init_std = 0.1}\n',  # kept but unused with randomization "none"
])
def test_good_values_still_load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(text, encoding="utf-8")
    load_config(path)


def test_non_utf8_config_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.toml is not UTF-8 text \(byte 0xe9 at offset 11\)"):
        load_config(path)


def test_threads_bound_is_this_machine() -> None:
    cores = os.cpu_count() or 1
    assert parse_config({"train": {"threads": cores}}).train.threads == cores
    with pytest.raises(ConfigError, match=f"the {cores} CPU cores"):
        parse_config({"train": {"threads": cores + 1}})


@pytest.mark.parametrize("text", [
    b'name = "caf\xe9"\n', b"[train]\nepochs = inf\n", b"seed = 18446744073709551616\n", b'name = "../../x"\n',
    b"[train]\nthreads = 100000\n",
])
@pytest.mark.parametrize("command", ["train", "run"])
def test_cli_exits_1_with_one_line_before_making_the_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: bytes, command: str
) -> None:
    path = tmp_path / "exp.toml"
    path.write_bytes(text)
    out = tmp_path / "run"
    assert main([command, str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"gradguard {command}: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and not out.exists()


def test_dataset_train_sizes_match_the_readers() -> None:
    """The sizes configs are checked against are the ones the format readers enforce."""
    from gradguard.data import cifar, mnist, stl10

    assert SPECS["mnist"].train_size == SPECS["fashion-mnist"].train_size == mnist.COUNTS["train"]
    assert SPECS["cifar10"].train_size == cifar.COUNTS["train"]
    assert SPECS["stl10"].train_size == stl10.COUNTS["train"]
    assert SPECS["digits"].train_size == 1442  # docs: 1,442 train / 355 test


@pytest.mark.parametrize("name", [n for n in MODELS if not n.startswith("wrn")])  # a WRN build takes seconds
def test_model_options_are_what_the_builder_accepts(name: str) -> None:
    dataset = "stl10" if name == "stl10-cnn" else "cifar10"
    build_model(name, dataset, **model_options(name))  # every option, at its default, is accepted


def test_wrn_options_come_from_its_signature() -> None:
    assert model_options("wrn-34-10") == {"drop_rate": 0.0}
    assert model_options("smallcnn") == {"drop": 0.5, "zero_init_last": False}


def test_missing_cuda_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path = tmp_path / "exp.toml"
    path.write_text('[train]\ndevice = "cuda"\n')
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "gradguard train: train.device = 'cuda' but CUDA is not available on this machine"


def test_settings_problems_are_reported_with_field_errors() -> None:
    """pydantic skips after-validators when a field is invalid; these checks still run on the raw dict."""
    with pytest.raises(ConfigError) as e:
        parse_config({"train": {"epochs": float("inf")}, "model": {"args": {"drop": float("nan"), "dropp": 1}},
                      "data": {"val_size": 70000}}, "x.toml")
    for fragment in ("train.epochs", "model.args.drop: must be a finite", "takes no argument(s) ['dropp']",
                     "data.val_size: must be smaller"):
        assert fragment in str(e.value), str(e.value)


def test_no_duplicate_or_spurious_lines_for_an_unknown_dataset_or_model() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"data": {"dataset": "imagenet"}, "model": {"name": "nosuch", "args": {"x": 1}}}, "x.toml")
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and len(set(lines)) == 2, lines
