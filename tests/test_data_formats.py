"""File-format readers, on small files the tests write in the exact published layouts."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradguard.data import cifar, stl10
from gradguard.data.checksums import MD5
from gradguard.data.digits import digits_csv_path, read_digits, split_digits
from gradguard.data.errors import ChecksumError, DatasetError
from gradguard.data.idx import parse_idx, read_idx_bytes, write_idx
from gradguard.data.image_folder import read_image_folder
from gradguard.data.safe_pickle import safe_loads

# -- idx --------------------------------------------------------------------------------------------------------------


def test_idx_header_is_decoded_by_hand():
    # magic 0x00000803, dims 2 x 2 x 3, then 12 bytes
    data = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    data += bytes(range(12))
    arr = parse_idx(data, "x", expect_magic=0x803)
    assert arr.shape == (2, 2, 3) and arr.dtype == np.uint8
    assert arr[1, 0, 2] == 8  # C order: index 1*6 + 0*3 + 2


def test_idx_raw_and_gzip_read_the_same(tmp_path: Path):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    (tmp_path / "a").write_bytes(write_idx(arr))
    (tmp_path / "a.gz").write_bytes(gzip.compress(write_idx(arr)))
    for name in ("a", "a.gz"):
        np.testing.assert_array_equal(parse_idx(read_idx_bytes(tmp_path / name), name), arr)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "truncated"),
        (b"PK\x03\x04" + bytes(20), "bad magic"),
        (bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(5), "truncated"),
        (bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(11), "wrong size"),
        (bytes([0, 0, 8, 2]) + (10).to_bytes(4, "big"), "truncated"),
    ],
)
def test_idx_rejects_bad_bytes_naming_the_file(data: bytes, message: str):
    with pytest.raises(DatasetError, match=message) as info:
        parse_idx(data, "/some/dir/train-labels-idx1-ubyte")
    assert "/some/dir/train-labels-idx1-ubyte" in str(info.value)


def test_idx_expected_magic_is_enforced():
    with pytest.raises(DatasetError, match="bad magic number 0x00000801, expected 0x00000803"):
        parse_idx(write_idx(np.zeros(3, np.uint8)), "f", expect_magic=0x803)


def test_truncated_gzip_names_the_file(tmp_path: Path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(write_idx(np.zeros((50, 28, 28), np.uint8)))[:-30])
    with pytest.raises(DatasetError, match="truncated or corrupt gzip") as info:
        read_idx_bytes(path)
    assert str(path) in str(info.value)


# -- restricted pickle and CIFAR batches -----------------------------------------------------------------------------


class _Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        import os

        return (os.mkdir, (self.target,))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path):
    target = tmp_path / "pwned"
    payload = pickle.dumps({"data": _Evil(str(target)), "labels": [0]}, protocol=2)
    with pytest.raises(DatasetError, match="refusing to load global") as info:
        safe_loads(payload, tmp_path / "data_batch_1")
    assert "data_batch_1" in str(info.value)
    assert not target.exists()
    # the plain pickle module would have run it: the test payload really is hostile
    pickle.loads(payload)
    assert target.exists()


@pytest.mark.parametrize("global_name", [b"builtins\neval", b"numpy\nload", b"_codecs\ndecode"])
def test_only_the_allow_list_resolves(global_name: bytes):
    payload = b"\x80\x02c" + global_name + b"\n."
    with pytest.raises(DatasetError, match="refusing"):
        safe_loads(payload, "f")


def test_codecs_encode_allows_latin1_only():
    ok = pickle.dumps(b"\x00\xff", protocol=2)  # protocol 2 writes bytes via _codecs.encode(..., 'latin1')
    assert safe_loads(ok, "f") == b"\x00\xff"
    bad = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(DatasetError, match="refusing _codecs.encode"):
        safe_loads(bad, "f")


def _batch_bytes(images: np.ndarray, labels: list[int], *, bytes_keys: bool = False) -> bytes:
    batch = {"batch_label": "test", "labels": labels, "data": images.reshape(len(images), -1),
             "filenames": ["x.png"] * len(images)}
    if bytes_keys:
        batch = {k.encode(): v for k, v in batch.items()}
    return pickle.dumps(batch, protocol=2)


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar_batch_layout_is_channel_major_rows(bytes_keys: bool):
    images = np.zeros((2, 3, 32, 32), np.uint8)
    flat = images.reshape(2, -1)
    flat[1, 1024 + 32 * 5 + 7] = 200  # green plane, row 5, column 7 of image 1
    out, labels = cifar.decode_batch(_batch_bytes(flat.reshape(2, 3, 32, 32), [3, 9], bytes_keys=bytes_keys), "b")
    assert out.shape == (2, 3, 32, 32) and out[1, 1, 5, 7] == 200 and out.sum() == 200
    assert labels.tolist() == [3, 9] and labels.dtype == np.int64


def _write_batches(folder: Path, per_batch: int = 4) -> np.ndarray:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    allimg = []
    for names in cifar.BATCHES.values():
        for n in names:
            imgs = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
            (folder / n).write_bytes(_batch_bytes(imgs, list(range(per_batch))))
            allimg.append(imgs)
    return np.concatenate(allimg)


def test_cifar_batch_folder_and_archive(tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-py"
    expected = _write_batches(folder)
    splits, sums = cifar.read_batch_folder(folder, md5=None, counts={"train": 20, "test": 4})
    np.testing.assert_array_equal(np.concatenate([splits["train"][0], splits["test"][0]]), expected)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    splits2, sums2 = cifar.read_batch_archive(archive, md5=None, counts={"train": 20, "test": 4})
    np.testing.assert_array_equal(splits2["train"][0], splits["train"][0])
    assert sums == sums2 and len(sums) == 6


def test_cifar_checksum_mismatch_names_the_batch(tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_batches(folder)
    with pytest.raises(ChecksumError, match="checksum mismatch") as info:
        cifar.read_batch_folder(folder, md5=MD5["cifar10"], counts=None)
    assert str(folder / "data_batch_1") in str(info.value)


def test_cifar_truncated_and_malformed_batches(tmp_path: Path):
    good = _batch_bytes(np.zeros((2, 3, 32, 32), np.uint8), [0, 1])
    with pytest.raises(DatasetError, match="truncated or corrupt pickle") as info:
        cifar.decode_batch(good[: len(good) // 2], "/d/data_batch_3")
    assert "/d/data_batch_3" in str(info.value)
    wrong = pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, protocol=2)
    with pytest.raises(DatasetError, match="wrong size"):
        cifar.decode_batch(wrong, "f")
    with pytest.raises(DatasetError, match="2 labels for 1 images"):
        cifar.decode_batch(_batch_bytes(np.zeros((1, 3, 32, 32), np.uint8), [0, 1]), "f")


# -- STL-10 ----------------------------------------------------------------------------------------------------------


def test_stl10_images_are_column_major_and_labels_shift(tmp_path: Path):
    raw = bytearray(2 * stl10.IMAGE_BYTES)
    # image 1, channel 2, row 3, column 40: column-major inside the channel plane, so offset = col * 96 + row
    raw[stl10.IMAGE_BYTES + 2 * 96 * 96 + 40 * 96 + 3] = 77
    images = stl10.decode_images(bytes(raw), "train_X.bin")
    assert images.shape == (2, 3, 96, 96) and images[1, 2, 3, 40] == 77 and int(images.sum()) == 77
    assert stl10.encode_images(images) == bytes(raw)
    assert stl10.decode_labels(bytes([1, 10, 5]), "y").tolist() == [0, 9, 4]


def test_stl10_bad_files(tmp_path: Path):
    with pytest.raises(DatasetError, match="wrong size") as info:
        stl10.decode_images(bytes(stl10.IMAGE_BYTES + 5), "/x/train_X.bin")
    assert "/x/train_X.bin" in str(info.value)
    with pytest.raises(DatasetError, match="labels must be 1..10") as info:
        stl10.decode_labels(bytes([1, 0, 3]), "/x/train_y.bin")
    assert "/x/train_y.bin" in str(info.value)


def test_stl10_folder_reader_with_counts_and_checksums(tmp_path: Path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    for split, n in (("train", 3), ("test", 2)):
        (folder / f"{split}_X.bin").write_bytes(bytes(range(256)) * (n * stl10.IMAGE_BYTES // 256))
        (folder / f"{split}_y.bin").write_bytes(bytes([1 + i for i in range(n)]))
    splits, _ = stl10.read_stl10_folder(folder, md5=None, counts={"train": 3, "test": 2})
    assert splits["train"][0].shape == (3, 3, 96, 96) and splits["test"][1].tolist() == [0, 1]
    with pytest.raises(DatasetError, match="wrong size: 3 images, expected 5000"):
        stl10.read_stl10_folder(folder, md5=None)
    with pytest.raises(ChecksumError, match="train_X.bin"):
        stl10.read_stl10_folder(folder, md5=MD5["stl10"], counts={"train": 3, "test": 2})


# -- image folders ---------------------------------------------------------------------------------------------------

CLASSES = ("cat", "dog", "frog")


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _write_folder(root: Path, per_class: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    out: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for split in ("train", "test"):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                (root / split / c / f"{i:04d}.png").write_bytes(_png(img))
                out[split].append(img.transpose(2, 0, 1))
    return {k: np.stack(v) for k, v in out.items()}


def test_image_folder_from_folder_and_archive_agree(tmp_path: Path):
    expected = _write_folder(tmp_path / "set")
    splits = read_image_folder(tmp_path / "set", CLASSES, size=8, counts={"train": 6, "test": 6})
    np.testing.assert_array_equal(splits["train"][0], expected["train"])
    assert splits["test"][1].tolist() == [0, 0, 1, 1, 2, 2]
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted((tmp_path / "set").rglob("*"), reverse=True):  # archive order must not matter
            tar.add(path, arcname="set/" + str(path.relative_to(tmp_path / "set")), recursive=False)
    from_tar = read_image_folder(archive, CLASSES, size=8, counts=None)
    for split in ("train", "test"):
        np.testing.assert_array_equal(from_tar[split][0], splits[split][0])
        np.testing.assert_array_equal(from_tar[split][1], splits[split][1])
    with pytest.raises(DatasetError, match="wrong size: 6 train images, expected 7"):
        read_image_folder(tmp_path / "set", CLASSES, size=8, counts={"train": 7, "test": 6})


def test_image_folder_bad_images_name_the_file(tmp_path: Path):
    _write_folder(tmp_path / "set", per_class=1)
    broken = tmp_path / "set" / "test" / "dog" / "0007.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(DatasetError, match="undecodable image") as info:
        read_image_folder(tmp_path / "set", CLASSES, size=8, counts=None)
    assert str(broken) in str(info.value)
    broken.write_bytes(_png(np.zeros((9, 8, 3), np.uint8)))
    with pytest.raises(DatasetError, match="wrong image size") as info:
        read_image_folder(tmp_path / "set", CLASSES, size=8, counts=None)
    assert str(broken) in str(info.value)
    broken.unlink()
    (tmp_path / "set" / "test" / "horse").mkdir()
    (tmp_path / "set" / "test" / "horse" / "0.png").write_bytes(_png(np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(DatasetError, match="unknown class folder 'horse'"):
        read_image_folder(tmp_path / "set", CLASSES, size=8, counts=None)


# -- digits ----------------------------------------------------------------------------------------------------------


def test_digits_csv_is_read_and_split_deterministically():
    images, labels = read_digits(digits_csv_path())
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.uint8 and int(images.max()) == 255
    assert sorted(set(labels.tolist())) == list(range(10))
    a, b = split_digits(images, labels), split_digits(images, labels)
    assert len(a["train"][1]) == 1442 and len(a["test"][1]) == 355
    np.testing.assert_array_equal(a["test"][0], b["test"][0])
    counts = np.bincount(a["test"][1], minlength=10)
    assert counts.min() >= 34 and counts.max() <= 36


def test_digits_malformed_csv_names_the_file(tmp_path: Path):
    path = tmp_path / "digits.csv.gz"
    path.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    with pytest.raises(DatasetError, match="wrong size") as info:
        read_digits(path)
    assert str(path) in str(info.value)
