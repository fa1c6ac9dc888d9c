"""SmallCNN of TRADES (Zhang et al. 2019), the standard MNIST robustness CNN.

conv32-conv32-pool-conv64-conv64-pool-fc200-fc200-fc10, 3x3 convs without padding, ReLU, dropout 0.5 after the
first fully connected layer (as in TRADES' `models/small_cnn.py`). The flatten size follows from the image size
(1024 on 28x28); inputs smaller than 16x16 leave no spatial extent and are refused.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import cast

from torch import Tensor, nn

from gradguard.models._common import require
from gradguard.specs import DatasetSpec

__all__ = ["SmallCNN", "build_smallcnn"]


def _feature_size(size: int) -> int:
    return ((size - 4) // 2 - 4) // 2


class SmallCNN(nn.Module):
    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, size: int = 28, drop: float = 0.5,
        zero_init_last: bool = False,
    ) -> None:
        super().__init__()
        side = _feature_size(size)
        self.flat = 64 * side * side
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 32, 3)), ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(32, 32, 3)), ("relu2", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2, 2)),
            ("conv3", nn.Conv2d(32, 64, 3)), ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(64, 64, 3)), ("relu4", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2, 2)),
        ]))
        self.classifier = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(self.flat, 200)), ("relu1", nn.ReLU()), ("drop", nn.Dropout(drop)),
            ("fc2", nn.Linear(200, 200)), ("relu2", nn.ReLU()),
            ("fc3", nn.Linear(200, num_classes)),
        ]))
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if zero_init_last:  # TRADES' choice; off by default because it zeroes every input gradient at init
            fc3 = cast(nn.Linear, self.classifier.fc3)
            nn.init.zeros_(fc3.weight)
            nn.init.zeros_(fc3.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


def build_smallcnn(spec: DatasetSpec, **kw: object) -> SmallCNN:
    require(_feature_size(spec.size) >= 1, "smallcnn", spec, "square images of at least 16x16 (e.g. MNIST 28x28)")
    return SmallCNN(spec.channels, spec.num_classes, spec.size, **kw)  # type: ignore[arg-type]
