"""A cache refresh is never seen half-done: readers running while entries are replaced get the old entry or the
new one whole (metadata and arrays from the same version), and a reader whose version was removed under it moves
to the new one, a bounded number of times."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from gradguard.data import cache


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRADGUARD_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _splits(value: int, n: int = 64) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    images = np.full((n, 1, 8, 8), value, dtype=np.uint8)
    labels = np.full(n, value, dtype=np.int64)
    return {"train": (images, labels), "test": (images[:8], labels[:8])}


def test_readers_never_see_a_refresh_half_done() -> None:
    cache.write("toy", _splits(1), {"source": "v1"})
    stop = threading.Event()
    problems: list[str] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            meta = cache.read_meta("toy")
            if meta is None:
                problems.append("no entry during a refresh")
                continue
            images, labels = cache.read_split("toy", "train", meta)
            value = int(meta["source"][1:])
            if not (images == value).all() or not (labels == value).all():
                problems.append(f"{meta['source']} with arrays of {int(images[0, 0, 0, 0])}")
            reads[0] += 1

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(40):
            value = 2 + i % 2
            cache.write("toy", _splits(value), {"source": f"v{value}"})
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not problems, problems[:5]
    assert reads[0] > 0


def test_reader_moves_to_the_new_version_when_its_own_was_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    cache.write("toy", _splits(1), {"source": "v1"})
    stale = cache.read_meta("toy")
    monkeypatch.setattr(cache, "_GRACE_S", -1.0)  # superseded versions go at once
    cache.write("toy", _splits(2), {"source": "v2"})
    assert not (cache.entry_dir("toy").parent / stale["version"]).exists()
    images, labels = cache.read_split("toy", "train", stale)
    assert (images == 2).all() and (labels == 2).all()


def test_superseded_versions_are_removed_after_the_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    cache.write("toy", _splits(1), {"source": "v1"})
    cache.write("toy", _splits(2), {"source": "v2"})
    versions = sorted(p.name for p in cache.entry_dir("toy").parent.glob(".toy.v-*"))
    assert len(versions) == 2  # the old one is kept for readers that read its meta.json
    monkeypatch.setattr(cache, "_GRACE_S", -1.0)
    cache.write("toy", _splits(3), {"source": "v3"})
    left = [p.name for p in cache.entry_dir("toy").parent.iterdir()]
    assert sorted(left) == sorted(["toy", cache.read_meta("toy")["version"]])


def test_entry_from_before_versions_is_replaced(tmp_path: Path) -> None:
    """A cache written by an older gradguard holds a real folder; the first refresh turns it into a link."""
    cache.write("toy", _splits(1), {"source": "v1"})
    entry = cache.entry_dir("toy")
    target = entry.parent / cache.read_meta("toy")["version"]
    entry.unlink()
    target.rename(entry)  # the old layout: the folder itself
    assert cache.read_split("toy", "train", cache.read_meta("toy"))[0].shape == (64, 1, 8, 8)
    cache.write("toy", _splits(2), {"source": "v2"})
    assert entry.is_symlink() and (cache.read_split("toy", "train", cache.read_meta("toy"))[1] == 2).all()


def test_remove_deletes_link_and_version() -> None:
    cache.write("toy", _splits(1), {"source": "v1"})
    version = cache.entry_dir("toy").parent / cache.read_meta("toy")["version"]
    cache.remove("toy")
    assert not cache.entry_dir("toy").exists() and not cache.entry_dir("toy").is_symlink() and not version.exists()
