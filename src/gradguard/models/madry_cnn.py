"""The MNIST CNN of Madry et al. (2018): conv32 5x5 - pool - conv64 5x5 - pool - fc1024 - fc10.

'SAME' padding as in their TensorFlow model, so the flatten size is 64 * (size // 4)^2 (3136 on MNIST, about
3.27 M parameters); it works on any size of at least 4x4, including the 8x8 digits.
"""

from __future__ import annotations

from torch import Tensor, nn

from gradguard.models._common import require
from gradguard.specs import DatasetSpec

__all__ = ["MadryCNN", "build_madry_cnn"]


class MadryCNN(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, size: int = 28) -> None:
        super().__init__()
        side = size // 4
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(64 * side * side, 1024), nn.ReLU(), nn.Linear(1024, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


def build_madry_cnn(spec: DatasetSpec, **kw: object) -> MadryCNN:
    require(spec.size >= 4, "madry-cnn", spec, "square images of at least 4x4")
    return MadryCNN(spec.channels, spec.num_classes, spec.size, **kw)
