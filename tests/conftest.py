"""Session-wide test isolation: the tests never write into the user's real dataset cache."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

#: GRADGUARD_CACHE as the user had it before the tests (None: unset, i.e. ~/.cache/gradguard).
USER_CACHE = os.environ.get("GRADGUARD_CACHE")


@pytest.fixture(scope="session", autouse=True)
def private_dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary cache (GRADGUARD_CACHE, read by gradguard.data.cache) for the whole session, subprocesses
    included: the digits set decoded by the training tests lands there, not in ~/.cache/gradguard."""
    patch = pytest.MonkeyPatch()
    patch.setenv("GRADGUARD_CACHE", str(tmp_path_factory.mktemp("gradguard-cache")))
    yield
    patch.undo()


@pytest.fixture
def user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """For the tests that read (never write) what the user has cached, such as real MNIST."""
    if USER_CACHE is None:
        monkeypatch.delenv("GRADGUARD_CACHE", raising=False)
    else:
        monkeypatch.setenv("GRADGUARD_CACHE", USER_CACHE)
