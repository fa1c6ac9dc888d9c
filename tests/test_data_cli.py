"""`gradguard data list|fetch|info` (isolated cache, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradguard.cli import build_parser, main


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GRADGUARD_OFFLINE", "1")
    monkeypatch.delenv("GRADGUARD_DATA", raising=False)


def test_list_names_every_dataset(capsys: pytest.CaptureFixture[str]):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist", "fashion-mnist", "cifar10", "stl10", "digits"):
        assert name in out


def test_fetch_and_info_digits(capsys: pytest.CaptureFixture[str]):
    assert main(["data", "fetch", "digits"]) == 0
    assert main(["data", "info", "digits"]) == 0
    out = capsys.readouterr().out
    assert "1442 images" in out and "355 images" in out and "intact" in out
    assert main(["data", "info", "digits", "--json"]) == 0
    assert '"count": 1442' in capsys.readouterr().out


def test_fetch_missing_dataset_exits_1_with_the_fetch_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["data", "fetch", "stl10", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "train_X.bin" in err and "gradguard data fetch stl10" in err


def test_help_has_examples():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["data"]
    assert "gradguard data fetch mnist" in sub.format_help()
