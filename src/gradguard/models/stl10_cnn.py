"""The STL-10 CNN of Adv-BNN (Liu et al. 2019, `models/aaron.py` of xuanqing94/BayesianDefense).

Four conv3x3(pad 1)-BN-ReLU-maxpool stages of 32, 64, 128, 256 channels (96 -> 6), then conv3x3(pad 0) 256 and
conv3x3(pad 0) 512 with BN-ReLU (6 -> 4 -> 2), 2x2 average pooling and linear 512 -> 10. The layout is fixed:
the flatten is 512 only when the image side is 96..127, so other sizes are refused.
"""

from __future__ import annotations

from torch import Tensor, nn

from gradguard.models._common import require
from gradguard.specs import DatasetSpec

__all__ = ["STL10CNN", "build_stl10_cnn"]


def _block(cin: int, cout: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=padding), nn.BatchNorm2d(cout), nn.ReLU()]


class STL10CNN(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = []
        for cin, cout in [(in_channels, w), (w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w)]:
            layers += _block(cin, cout, 1) + [nn.MaxPool2d(2, 2)]
        layers += _block(8 * w, 8 * w, 0) + _block(8 * w, 16 * w, 0) + [nn.AvgPool2d(2, 2)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(16 * w, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


def build_stl10_cnn(spec: DatasetSpec, **kw: object) -> STL10CNN:
    require(96 <= spec.size <= 127, "stl10-cnn", spec, "square images of side 96..127 (STL-10 is 96x96)")
    return STL10CNN(spec.channels, spec.num_classes, **kw)  # type: ignore[arg-type]
