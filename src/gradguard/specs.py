"""Static facts about each dataset: shape, classes and the normalization statistics models own.

A leaf module (standard library only): the model zoo reads it without importing the data package.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DatasetSpec", "SPECS", "get_spec", "DEFAULT_EPS", "default_eps"]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    channels: int
    size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    train_size: int = 0  # images in the training split (configs are checked against it before any data is read)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)


_DIGITS = tuple(str(i) for i in range(10))

SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", 1, 28, 10, (0.1307,), (0.3081,), _DIGITS, 60000),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist", 1, 28, 10, (0.2860,), (0.3530,),
        ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"),
        60000,
    ),
    "cifar10": DatasetSpec(
        "cifar10", 3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        50000,
    ),
    "stl10": DatasetSpec(
        "stl10", 3, 96, 10, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713),
        ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"),
        5000,
    ),
    "digits": DatasetSpec("digits", 1, 8, 10, (0.3052,), (0.3760,), _DIGITS, 1442),  # train split, v*255/16 scaling
}


def get_spec(name: str) -> DatasetSpec:
    key = name.lower().replace("_", "-")
    aliases = {"fashion": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10", "stl-10": "stl10"}
    key = aliases.get(key, key)
    if key not in SPECS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {sorted(SPECS)}")
    return SPECS[key]


#: The customary attack budget per norm for grey small images (MNIST-like) and for colour images (CIFAR-10, STL-10).
DEFAULT_EPS: dict[tuple[str, str], float] = {
    ("linf", "grey"): 0.3, ("linf", "rgb"): 8 / 255, ("l2", "grey"): 2.0, ("l2", "rgb"): 0.5,
}


def default_eps(norm: str, channels: int) -> float:
    """The budget used when none is given: 0.3 / 8/255 (linf) or 2.0 / 0.5 (l2) for 1 / 3 channels.

    One rule for `gradguard eval` and `gradguard.evaluate`, so the API and the command line agree.
    """
    key = "linf" if norm.lower().replace("-", "") in ("linf", "inf") else norm.lower()
    if key not in ("linf", "l2"):
        raise ValueError(f"unknown norm {norm!r}: expected 'linf' or 'l2'")
    return DEFAULT_EPS[(key, "rgb" if channels == 3 else "grey")]
