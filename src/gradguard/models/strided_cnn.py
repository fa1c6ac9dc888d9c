"""A two-layer strided CNN: the shape of the MNIST network in Wong, Rice and Kolter's Fast-AT code
(conv 4x4 stride 2 - conv 4x4 stride 2 - fc - fc), widened by default to 32-64 channels and 256 hidden units.

Why it is in the zoo: strided convolutions without pooling make it 4-5x cheaper per image than SmallCNN on a CPU
(benchmarks/mnist_model_speed.py), which is what lets a robust MNIST network train in minutes on 2 cores.
``widths = [16, 32], hidden = 100`` is Wong et al.'s network exactly.
"""

from __future__ import annotations

from torch import Tensor, nn

from gradguard.models._common import require
from gradguard.specs import DatasetSpec

__all__ = ["StridedCNN", "build_strided_cnn"]


def _side(size: int) -> int:
    """Spatial side after two 4x4 stride-2 convolutions with padding 1 (28 -> 14 -> 7)."""
    return size // 4


class StridedCNN(nn.Module):
    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, size: int = 28,
        widths: tuple[int, int] | list[int] = (32, 64), hidden: int = 256,
    ) -> None:
        super().__init__()
        c1, c2 = (int(w) for w in widths)
        side = _side(size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(c2 * side * side, hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


def build_strided_cnn(spec: DatasetSpec, **kw: object) -> StridedCNN:
    require(spec.size % 4 == 0 and spec.size >= 8, "strided-cnn", spec, "square images whose side is a multiple of 4")
    widths = kw.pop("widths", (32, 64))
    if not (isinstance(widths, (list, tuple)) and len(widths) == 2):
        raise ValueError(f"model 'strided-cnn': widths must be two channel counts, got {widths!r}")
    return StridedCNN(spec.channels, spec.num_classes, spec.size, widths=widths, **kw)  # type: ignore[arg-type]
