"""The threads policy: settings, 'auto', the command line, and that training and evaluation apply and restore it."""

from __future__ import annotations

import argparse

import pytest
import torch

from gradguard.threads import auto_threads, parse_threads, resolve_threads, torch_threads


@pytest.fixture
def saved_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(saved)


def test_settings_resolve_to_counts() -> None:
    assert resolve_threads(2) == 2 and resolve_threads(0) is None
    assert 1 <= resolve_threads("auto") <= (torch.multiprocessing.cpu_count() or 1)
    for bad in (-1, "many", 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            resolve_threads(bad)  # type: ignore[arg-type]


def test_auto_leaves_the_busy_cores_alone() -> None:
    assert auto_threads(cores=2, load=0.1) == 2
    assert auto_threads(cores=2, load=1.2) == 1
    assert auto_threads(cores=2, load=8.0) == 1
    assert auto_threads(cores=16, load=4.0) == 12


def test_command_line_values() -> None:
    assert parse_threads("auto") == "auto" and parse_threads("AUTO") == "auto"
    assert parse_threads("2") == 2 and parse_threads("0") == 0
    for bad in ("-1", "x", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="integer >= 0 or 'auto'"):
            parse_threads(bad)
    from gradguard.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train", "c.toml", "--threads", "auto"]).threads == "auto"
    assert parser.parse_args(["run", "c.toml", "--threads", "2"]).threads == 2
    assert parser.parse_args(["eval", "--checkpoint", "m"]).threads == 1  # the policy's default
    assert parser.parse_args(["train", "c.toml"]).threads is None  # None: the config's train.threads


def test_torch_threads_restores_even_after_an_error(saved_threads: int) -> None:
    with torch_threads(1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == saved_threads
    with pytest.raises(RuntimeError), torch_threads(2):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == saved_threads
    with torch_threads(0) as n:
        assert n == saved_threads


def test_evaluate_runs_on_its_threads_and_restores(saved_threads: int) -> None:
    from gradguard.evaluation import evaluate

    seen: list[int] = []

    def spy(eps: float):
        def attack(model, x, y):
            seen.append(torch.get_num_threads())
            return x

        attack.eps = eps  # type: ignore[attr-defined]
        return attack

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.rand(6, 1, 2, 2), torch.zeros(6, dtype=torch.long)
    res = evaluate(model, x, y, {"spy": spy}, 0.1, run_checks=False)
    assert set(seen) == {1} and res.meta["torch_threads"] == res.meta["environment"]["torch_threads"] == 1
    seen.clear()
    evaluate(model, x, y, {"spy": spy}, 0.1, run_checks=False, threads=2)
    assert set(seen) == {2}
    assert torch.get_num_threads() == saved_threads


def test_train_threads_argument_beats_the_config_and_is_restored(tmp_path, saved_threads: int) -> None:
    from gradguard.config import parse_config
    from gradguard.training import train
    from test_training import digits_config

    cfg = parse_config(digits_config(epochs=0.25, val_every=1))
    assert cfg.train.threads == 1
    assert train(cfg, tmp_path / "a")["torch_threads"] == 1
    assert train(cfg, tmp_path / "b", threads=2)["torch_threads"] == 2
    assert torch.get_num_threads() == saved_threads
