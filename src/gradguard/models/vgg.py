"""VGG-16 with batch norm, CIFAR variant (as in kuangliu/pytorch-cifar and Adv-BNN): 13 3x3 convs in five
pooled stages (64-64 | 128-128 | 256x3 | 512x3 | 512x3), global average pooling over what the five poolings
leave, one linear layer 512 -> classes (14.73 M parameters on CIFAR-10). Five 2x2 poolings need at least 32x32
images; larger ones (STL-10) are averaged down like Adv-BNN's `img_width` pooling does.
"""

from __future__ import annotations

from torch import Tensor, nn

from gradguard.models._common import require
from gradguard.specs import DatasetSpec

__all__ = ["VGG", "build_vgg16"]

VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                    512, 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, cfg: tuple[int | str, ...] = VGG16_CFG, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.BatchNorm2d(int(v)), nn.ReLU()]
                c = int(v)
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


def build_vgg16(spec: DatasetSpec, **kw: object) -> VGG:
    require(spec.size >= 32, "vgg16", spec, "square images of at least 32x32 (five 2x2 poolings)")
    return VGG(VGG16_CFG, spec.channels, spec.num_classes, **kw)
