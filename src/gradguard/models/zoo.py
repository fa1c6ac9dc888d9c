"""The model zoo: `build_model(name, dataset)` returns a network that takes [0, 1] images and owns its
normalization, so attacks and the trainer never see dataset statistics."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from gradguard.models.cifar_small import build_cnn_bn, build_preact_resnet_mini
from gradguard.models.lenet import build_lenet5
from gradguard.models.madry_cnn import build_madry_cnn
from gradguard.models.normalization import Normalize
from gradguard.models.preact_resnet import build_preact_resnet18
from gradguard.models.smallcnn import build_smallcnn
from gradguard.models.stl10_cnn import build_stl10_cnn
from gradguard.models.strided_cnn import build_strided_cnn
from gradguard.models.vgg import build_vgg16
from gradguard.models.wide_resnet import build_wrn
from gradguard.specs import DatasetSpec, get_spec

__all__ = ["ZooEntry", "ZooModel", "build_model", "list_models", "MODELS"]


@dataclass(frozen=True)
class ZooEntry:
    name: str
    builder: Callable[..., nn.Module]
    summary: str


MODELS: dict[str, ZooEntry] = {e.name: e for e in [
    ZooEntry("smallcnn", build_smallcnn, "TRADES' MNIST CNN: conv32-conv32-pool-conv64-conv64-pool-fc200-fc200"),
    ZooEntry("strided-cnn", build_strided_cnn, "Fast-AT's MNIST net, wider: conv32 4x4/2-conv64 4x4/2-fc256"),
    ZooEntry("madry-cnn", build_madry_cnn, "Madry et al.'s MNIST CNN: conv32 5x5-pool-conv64 5x5-pool-fc1024"),
    ZooEntry("lenet5", build_lenet5, "LeNet-5 with ReLU and max pooling"),
    ZooEntry("preact-resnet18", build_preact_resnet18, "PreAct-ResNet-18, CIFAR form"),
    ZooEntry("wrn-28-10", build_wrn(28, 10), "WideResNet-28-10"),
    ZooEntry("wrn-34-10", build_wrn(34, 10), "WideResNet-34-10 (TRADES / Madry CIFAR)"),
    ZooEntry("vgg16", build_vgg16, "VGG-16 with batch norm, CIFAR variant"),
    ZooEntry("stl10-cnn", build_stl10_cnn, "Adv-BNN's STL-10 CNN (conv 32-64-128-256-256-512, BN)"),
    ZooEntry("cnn-bn", build_cnn_bn, "small CIFAR CNN for CPU studies: conv3x3-BN-ReLU-pool 32-64-128, GAP, linear"),
    ZooEntry("preact-resnet-mini", build_preact_resnet_mini,
             "narrow PreAct-ResNet for CPU studies: widths 16-32-64, one block per stage"),
]}

_ALIASES = {"small-cnn": "smallcnn", "madry": "madry-cnn", "lenet": "lenet5", "lenet-5": "lenet5",
            "preactresnet18": "preact-resnet18", "preact-resnet-18": "preact-resnet18", "vgg-16": "vgg16",
            "wrn28-10": "wrn-28-10", "wrn34-10": "wrn-34-10", "stl10cnn": "stl10-cnn", "aaron": "stl10-cnn"}


class ZooModel(nn.Sequential):
    """`normalize` then `net`: a Sequential so that `model[0]` is the Normalize layer and `model.net` the raw
    architecture. `arch` and `dataset` record what was built (checkpoints store them)."""

    def __init__(self, normalize: Normalize, net: nn.Module, arch: str, dataset: str) -> None:
        super().__init__(OrderedDict([("normalize", normalize), ("net", net)]))
        self.arch = arch
        self.dataset = dataset


def list_models() -> list[str]:
    """Names accepted by `build_model`."""
    return list(MODELS)


def build_model(name: str, dataset: str | DatasetSpec, **kw: object) -> ZooModel:
    """Build zoo model `name` for `dataset` (its channels, size, classes and normalization statistics).

    Extra keywords go to the architecture (e.g. `drop=0.5` for smallcnn, `drop_rate` for WideResNets).
    Raises ValueError for an unknown name and a SizeError when the architecture cannot take the dataset's size.
    """
    key = name.lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}: expected one of {list_models()}")
    spec = dataset if isinstance(dataset, DatasetSpec) else get_spec(dataset)
    try:
        net = MODELS[key].builder(spec, **kw)
    except TypeError as exc:
        raise TypeError(f"model {key!r}: bad keyword argument(s) {sorted(kw)}: {exc}") from exc
    return ZooModel(Normalize(spec.mean, spec.std), net, key, spec.name)
