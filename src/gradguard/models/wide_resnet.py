"""WideResNet-d-k (Zagoruyko & Komodakis 2016) in the form of TRADES / Madry's CIFAR models:
16-channel stem, three stages of (d - 4) / 6 pre-activation blocks of width 16k, 32k, 64k, final BN-ReLU,
global average pooling, linear. WRN-28-10 has 36.48 M and WRN-34-10 46.16 M parameters on CIFAR-10.

The original pools with a fixed 8x8 window (32x32 inputs); global average pooling is the same there and lets the
network take any image size.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from gradguard.specs import DatasetSpec

__all__ = ["WideBlock", "WideResNet", "build_wrn"]


class WideBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal = in_planes == planes and stride == 1
        self.shortcut: nn.Module | None = None
        if not self.equal:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        act = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(act)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        # as in TRADES' code: the projection shortcut takes the activated input, the identity the raw one
        return out + (x if self.shortcut is None else self.shortcut(act))


class WideResNet(nn.Module):
    def __init__(
        self, depth: int = 34, widen_factor: int = 10, in_channels: int = 3, num_classes: int = 10,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = self._stage(widths[0], widths[1], n, 1, drop_rate)
        self.block2 = self._stage(widths[1], widths[2], n, 2, drop_rate)
        self.block3 = self._stage(widths[2], widths[3], n, 2, drop_rate)
        self.bn = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(in_planes: int, planes: int, n: int, stride: int, drop_rate: float) -> nn.Sequential:
        return nn.Sequential(*[
            WideBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1, drop_rate) for i in range(n)
        ])

    def forward(self, x: Tensor) -> Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def build_wrn(depth: int, widen_factor: int):  # noqa: ANN201 - returns a builder
    def build(spec: DatasetSpec, **kw: object) -> WideResNet:
        return WideResNet(depth, widen_factor, spec.channels, spec.num_classes, **kw)  # type: ignore[arg-type]

    return build
