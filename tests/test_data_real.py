"""Checks on the real datasets this machine can reach: the shared CIFAR-10 JPEG archive (../shared/data from the
project root) and MNIST when `gradguard data fetch mnist` has cached it. They skip where the data is absent."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from gradguard import data
from gradguard.data.checksums import MD5
from gradguard.data.image_folder import read_image_folder
from gradguard.data.sources import CIFAR_JPEG_MD5

ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
needs_archive = pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"{ARCHIVE} not present")


@needs_archive
def test_cifar_archive_partial_read_and_recorded_md5():
    assert hashlib.md5(ARCHIVE.read_bytes()).hexdigest() == CIFAR_JPEG_MD5[ARCHIVE.name]
    spec = data.get_spec("cifar10")
    splits = read_image_folder(ARCHIVE, spec.classes, size=32, counts=None, max_images=300)
    images = np.concatenate([splits[s][0] for s in splits])
    labels = np.concatenate([splits[s][1] for s in splits])
    assert images.shape == (300, 3, 32, 32) and images.dtype == np.uint8
    assert labels.min() >= 0 and labels.max() <= 9
    assert 40 < images.mean() < 200 and images.std() > 20  # real photographs, not blank decodes


@needs_archive
@pytest.mark.slow
def test_cifar_archive_loads_balanced_and_says_it_is_lossy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GRADGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GRADGUARD_OFFLINE", "1")
    train = data.load("cifar10", root=ARCHIVE)
    test = data.load("cifar10", "test", root=ARCHIVE)
    assert len(train) == 50000 and len(test) == 10000 and train.images.shape[1:] == (3, 32, 32)
    assert train.class_counts() == [5000] * 10 and test.class_counts() == [1000] * 10
    assert "LOSSY" in train.source
    report = data.info("cifar10")
    assert report["lossy"] and report["verified"] and report["cache_intact"]


@pytest.mark.skipif(not data.is_cached("mnist"), reason="MNIST not cached: run `gradguard data fetch mnist`")
def test_cached_mnist_is_the_verified_published_set(user_cache):
    report = data.info("mnist")
    assert report["verified"] and report["cache_intact"]
    assert report["checksums"] == MD5["mnist"]
    assert report["splits"]["train"]["count"] == 60000 and report["splits"]["test"]["count"] == 10000
    test = data.load("mnist", "test")
    assert test.class_counts() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # the published counts


def test_shared_archive_is_a_local_route_for_cifar10():
    from gradguard.data.sources import local_routes, shared_data_dirs

    assert ARCHIVE.parent in shared_data_dirs()
    assert any(str(ARCHIVE) in r.label for r in local_routes("cifar10"))
