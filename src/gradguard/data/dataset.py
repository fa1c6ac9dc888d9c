"""`ImageData`: a whole dataset split held in memory as uint8 tensors, with its spec and provenance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gradguard.data.specs import DatasetSpec

__all__ = ["ImageData"]


@dataclass(frozen=True)
class ImageData:
    """``images``: uint8 (N, C, H, W); ``labels``: int64 (N,); ``source``: where the pixels came from.

    Kept as uint8 (4x smaller than float) and converted per batch; ``tensors()`` gives the float view in [0, 1].
    """

    images: torch.Tensor
    labels: torch.Tensor
    spec: DatasetSpec
    source: str
    split_name: str = "train"

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 ({self.images.shape[0]},), got {self.labels.dtype} "
                             f"{tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x float32 in [0, 1], y int64) for the whole split."""
        return self.images.float().div_(255.0), self.labels

    def subset(self, indices: Sequence[int] | torch.Tensor) -> ImageData:
        index = torch.as_tensor(indices, dtype=torch.long)
        return ImageData(self.images[index], self.labels[index], self.spec, self.source, self.split_name)

    def split(self, val_size: int, seed: int = 0) -> tuple[ImageData, ImageData]:
        """(train, val): a held-out set of ``val_size`` images drawn uniformly at random by ``seed``.

        The same seed gives the same split on every machine (a local CPU generator, not the global RNG).
        """
        if not 0 < val_size < len(self):
            raise ValueError(f"val_size must be in 1..{len(self) - 1}, got {val_size}")
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        val_idx, train_idx = perm[:val_size].sort().values, perm[val_size:].sort().values
        train, val = self.subset(train_idx), self.subset(val_idx)
        return train, ImageData(val.images, val.labels, self.spec, self.source, f"{self.split_name}-val")

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.spec.num_classes).tolist()

    def __repr__(self) -> str:
        return (f"ImageData({self.spec.name}/{self.split_name}: {len(self)} x {tuple(self.images.shape[1:])}, "
                f"source={self.source!r})")
