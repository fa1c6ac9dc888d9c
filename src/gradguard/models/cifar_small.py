"""Small CIFAR-size networks that train on a CPU core: the reduced-scale CIFAR-10 studies run on them.

Two families, measured side by side by ``benchmarks/cifar_small_speed.py``:

- ``ConvBNNet``: stages of conv3x3(pad 1)-BN-ReLU followed by 2x2 max pooling (widths 32-64-128 by default), global
  average pooling and one linear layer; the classic "small CNN with BN" of fast CIFAR baselines.
- ``NarrowPreActResNet``: PreAct-ResNet-18's block (``preact_resnet.PreActBlock``) at widths 16-32-64 with one block
  per stage: the same kind of network as the paper-scale model, about 1/40 of its cost.

Global average pooling makes both size-agnostic (MNIST's one channel works too); at least 8x8 inputs are needed
for the three stages of down-sampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from gradguard.models._common import require
from gradguard.models.preact_resnet import PreActBlock
from gradguard.specs import DatasetSpec

__all__ = ["ConvBNNet", "NarrowPreActResNet", "build_cnn_bn", "build_preact_resnet_mini"]


class ConvBNNet(nn.Module):
    """``convs_per_stage`` x (conv3x3-BN-ReLU) then max-pool 2x2, per width; GAP; linear."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128), convs_per_stage: int = 1, in_channels: int = 3,
                 num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
                c = w
            layers.append(nn.MaxPool2d(2, 2))
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class NarrowPreActResNet(nn.Module):
    """3x3 stem, one stage per width (the first at stride 1, the rest at stride 2), final BN-ReLU, GAP, linear."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64), blocks: Sequence[int] = (1, 1, 1), in_channels: int = 3,
                 num_classes: int = 10) -> None:
        super().__init__()
        if len(widths) != len(blocks):
            raise ValueError(f"NarrowPreActResNet: {len(widths)} widths but {len(blocks)} block counts")
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        c = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                stages.append(PreActBlock(c, w, 2 if (i > 0 and j == 0) else 1))
                c = w
        self.layers = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(c)
        self.linear = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def build_cnn_bn(spec: DatasetSpec, **kw: object) -> ConvBNNet:
    require(spec.size >= 8, "cnn-bn", spec, "square images of at least 8x8 (three 2x2 poolings)")
    return ConvBNNet(in_channels=spec.channels, num_classes=spec.num_classes, **kw)  # type: ignore[arg-type]


def build_preact_resnet_mini(spec: DatasetSpec, **kw: object) -> NarrowPreActResNet:
    require(spec.size >= 8, "preact-resnet-mini", spec, "square images of at least 8x8 (two stride-2 stages)")
    return NarrowPreActResNet(in_channels=spec.channels, num_classes=spec.num_classes, **kw)  # type: ignore[arg-type]
