"""Seeds: the one place a run seeds the global RNGs, and stable derived seeds for every local Generator.

Library code never seeds global state; it takes a `torch.Generator`. A *run* still needs the global RNG fixed once,
because weight initialisation and dropout draw from it; `seed_everything` is that single, named place, called by
`gradguard.training.train` at the start of a run (and, under torchrun, once more per rank at the start and when a
rank other than 0 resumes), nowhere else.
"""

from __future__ import annotations

import hashlib
import random

import torch

__all__ = ["seed_everything", "derive_seed", "make_generator"]


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed that depends only on `seed` and `parts` (stable across processes and Python versions)."""
    text = repr((int(seed), *[str(p) for p in parts])).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, *parts: object, device: str | torch.device = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *parts))
    return g


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (CPU and every CUDA device) for one run."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    torch.manual_seed(seed)
