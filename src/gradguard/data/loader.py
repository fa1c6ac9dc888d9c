"""Fast in-memory batching: batches are slices of whole-dataset tensors; augmentation works on whole batches.

No per-image Python and no worker processes: the uint8 dataset is moved to ``device`` once, each batch is an
index into it, converted to float there, and augmented with a handful of tensor operations.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from gradguard.data.dataset import ImageData

__all__ = ["Augment", "BatchLoader"]


class Augment:
    """Random crop after zero padding (``crop_padding`` pixels each side) and random horizontal flip.

    Works on a whole batch (N, C, H, W) of any dtype; all randomness comes from ``generator`` (drawn on the CPU,
    so results are the same on every device).
    """

    def __init__(self, crop_padding: int = 4, flip: bool = True) -> None:
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        self.crop_padding = crop_padding
        self.flip = flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, _, h, w = x.shape
        p = self.crop_padding
        if p > 0:
            # one gather over the flattened padded planes; the index is shared by all channels (expand, no copy)
            c, wp = x.shape[1], w + 2 * p
            padded = F.pad(x, (p, p, p, p)).reshape(n, c, -1)
            oy = torch.randint(0, 2 * p + 1, (n, 1, 1), generator=generator).to(x.device)
            ox = torch.randint(0, 2 * p + 1, (n, 1, 1), generator=generator).to(x.device)
            rows = torch.arange(h, device=x.device)[None, :, None]
            cols = torch.arange(w, device=x.device)[None, None, :]
            index = ((oy + rows) * wp + ox + cols).reshape(n, 1, h * w)
            x = padded.gather(2, index.expand(n, c, h * w)).reshape(n, c, h, w)
        if self.flip:
            mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)
            x = torch.where(mask[:, None, None, None], x.flip(3), x)
        return x

    def __repr__(self) -> str:
        return f"Augment(crop_padding={self.crop_padding}, flip={self.flip})"


class BatchLoader:
    """Iterate over ``(x float32 in [0, 1], y int64)`` batches of ``data``, on ``device``.

    Each pass over the loader is one epoch; with ``shuffle`` the order is a fresh permutation from ``generator``
    (a local generator seeded with 0 when none is given, so runs are reproducible by default).
    """

    def __init__(
        self,
        data: ImageData,
        batch_size: int,
        *,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        augment: Augment | None = None,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.augment = augment
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.images.shape[0]
        order = torch.randperm(n, generator=self.generator).to(self.device) if self.shuffle else None
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min(n, (b + 1) * self.batch_size)
            if order is None:
                xb, yb = self.images[lo:hi], self.labels[lo:hi]
            else:
                idx = order[lo:hi]
                xb, yb = self.images[idx], self.labels[idx]
            if self.augment is not None:
                xb = self.augment(xb, self.generator)
            yield xb.float().div_(255.0), yb
