"""A dataset that cannot be had: the error says where it comes from and how to hand a local copy to the loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradguard import data
from gradguard.data import sources


@pytest.fixture(autouse=True)
def nothing_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GRADGUARD_OFFLINE", "1")
    monkeypatch.delenv("GRADGUARD_DATA", raising=False)
    monkeypatch.setattr(sources, "shared_data_dirs", lambda: [tmp_path / "no-shared-data"])


def test_failed_fetch_of_cifar10_says_where_it_comes_from(capsys: pytest.CaptureFixture[str]) -> None:
    from gradguard.cli import main

    assert main(["data", "fetch", "cifar10"]) == 1
    err = capsys.readouterr().err
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in err and "cifar-10-python.tar.gz" in err
    assert "--root ../shared/data/cifar10-jpeg.tar.gz" in err and "GRADGUARD_DATA" in err
    assert "Fetch it with" not in err  # fetching is what just failed


def test_load_without_a_copy_still_points_to_fetch() -> None:
    with pytest.raises(data.DatasetError) as err:
        data.load("cifar10", "test")
    assert "Fetch it with: gradguard data fetch cifar10" in str(err.value)
    assert "cifar10-jpeg.tar.gz" in str(err.value)
