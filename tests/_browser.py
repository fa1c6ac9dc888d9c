"""Test tooling: render a report page in headless Chromium and judge whether a person would see anything on it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["find_chromium", "screenshot", "ink_fraction"]

_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(page: Path, out: Path, *, size: tuple[int, int] = (1200, 1600), timeout: float = 60.0) -> Path:
    """Screenshot `page` (a local HTML file) into the PNG `out` with headless Chromium."""
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("headless Chromium not found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [binary, *_FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
               f"--screenshot={Path(out).resolve()}", Path(page).resolve().as_uri()]
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    return Path(out)


def ink_fraction(png: Path) -> float:
    """Share of pixels that are not (near) white: an empty page scores about 0."""
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.uint8)
    return float((pixels < 240).mean())
