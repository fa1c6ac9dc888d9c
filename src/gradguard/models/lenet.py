"""LeNet-5 (LeCun et al. 1998) in its common modern form: ReLU and max pooling instead of tanh and
subsampling. conv6 5x5 - pool - conv16 5x5 - pool - fc120 - fc84 - fc10. Images smaller than 32x32 get a
2-pixel padding on the first conv (the usual MNIST 28x28 -> 32x32 convention); the flatten size follows from the
image size (400 on MNIST and CIFAR-10).
"""

from __future__ import annotations

from torch import Tensor, nn

from gradguard.models._common import require
from gradguard.specs import DatasetSpec

__all__ = ["LeNet5", "build_lenet5"]


def _geometry(size: int) -> tuple[int, int]:
    pad = 2 if size < 32 else 0
    side = ((size + 2 * pad - 4) // 2 - 4) // 2
    return pad, side


class LeNet5(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, size: int = 28) -> None:
        super().__init__()
        pad, side = _geometry(size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * side * side, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


def build_lenet5(spec: DatasetSpec, **kw: object) -> LeNet5:
    require(_geometry(spec.size)[1] >= 1, "lenet5", spec, "square images of at least 12x12 (e.g. MNIST 28x28)")
    return LeNet5(spec.channels, spec.num_classes, spec.size, **kw)
