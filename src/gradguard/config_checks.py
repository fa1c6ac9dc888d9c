"""Checks of single config values against what the library knows (registries, the machine, the dataset sizes).

They run when a config is loaded (`gradguard.config`), so a typo fails in the first second, before any data is read
or a run folder is made. Each returns None or raises ValueError with the message the config error shows after the
key. Registries are looked up inside the functions: the config module stays importable without the model zoo,
the evaluation package or torch (``config <- training``, never the other way).
"""

from __future__ import annotations

import inspect
import math
import os
import re
import typing
import unicodedata
from collections.abc import Mapping
from typing import Any

__all__ = [
    "check_run_name",
    "check_dataset",
    "check_model_name",
    "check_randomization",
    "check_randomization_args",
    "check_model_args",
    "model_options",
    "check_suite",
    "check_device",
    "check_threads",
    "check_val_size",
    "non_finite_numbers",
    "SEED_MAX",
]

SEED_MAX = 2**63 - 1  # torch seeds are 64-bit; evaluation derives per-rank seeds from it modulo 2**64
_NAME_MAX_BYTES = 255  # the longest file name Linux, macOS and Windows file systems all accept
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$")


def check_run_name(name: str) -> None:
    """A run name becomes one folder under runs/: it must be a single, plain path component."""
    if name in ("", ".", ".."):
        raise ValueError(f"must be a folder name, not {name!r}")
    if "/" in name or "\\" in name:
        raise ValueError(f"must be a single folder name without '/' or '\\' (got {name!r})")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise ValueError(f"must not contain control characters (got {name!r})")
    if len(name.encode("utf-8")) > _NAME_MAX_BYTES:
        raise ValueError(f"must be at most {_NAME_MAX_BYTES} bytes in UTF-8 (got {len(name.encode('utf-8'))})")


def check_dataset(name: str) -> None:
    from gradguard.data.specs import get_spec

    get_spec(name)  # ValueError: unknown dataset 'x': expected one of [...]


def check_model_name(name: str) -> None:
    from gradguard.models.zoo import _ALIASES, list_models

    key = name.lower().replace("_", "-")
    if _ALIASES.get(key, key) not in list_models():
        raise ValueError(f"unknown model {name!r}: expected one of {list_models()}")


def check_randomization(kind: str) -> None:
    from gradguard.models.randomized import KINDS

    if kind != "none" and kind.lower().replace("_", "-") not in KINDS:
        raise ValueError(f"unknown randomization {kind!r}: expected 'none' or one of {list(KINDS)}")


def check_randomization_args(kind: str, args: Mapping[str, Any]) -> None:
    """Settings of a randomization kind: known keys, values of the default's type. With 'none' they are unused
    (kept so that `--set model.randomization=none` can switch a randomized config off)."""
    from gradguard.models.randomized import KINDS

    key = kind.lower().replace("_", "-")
    if key not in KINDS:
        return
    defaults = KINDS[key]
    unknown = sorted(set(args) - set(defaults))
    if unknown:
        raise ValueError(f"randomization {key!r} has no setting(s) {unknown}: expected some of {sorted(defaults)}")
    for name, value in args.items():
        if not _same_kind(value, defaults[name]):
            raise ValueError(f"{name} must be a {type(defaults[name]).__name__} like the default {defaults[name]!r} "
                             f"(got {value!r})")


def _same_kind(value: Any, default: Any) -> bool:
    """True when `value` can stand where `default` stands: bool for bool, a number for a float, else same type."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


_SPEC_FILLED = ("in_channels", "num_classes", "size")  # what every zoo builder passes from the dataset spec


def model_options(name: str) -> dict[str, Any]:
    """The keyword arguments `model.args` may set for zoo model `name`, with their defaults.

    Zoo builders call their architecture class with the dataset-derived arguments first (architecture constants,
    then ``in_channels``, ``num_classes``, ``size``) and pass ``**args`` on; the options are the parameters after
    the last dataset-derived one. Read from the signature, so nothing is built (a WideResNet takes seconds).
    """
    from gradguard.models.zoo import _ALIASES, MODELS

    key = name.lower().replace("_", "-")
    builder = MODELS[_ALIASES.get(key, key)].builder
    params = list(inspect.signature(typing.get_type_hints(builder)["return"]).parameters.values())
    last_filled = max((i for i, p in enumerate(params) if p.name in _SPEC_FILLED), default=-1)
    return {p.name: p.default for p in params[last_filled + 1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_model_args(name: str, args: Mapping[str, Any]) -> None:
    """Keys the architecture takes, values of the default's type (finiteness is checked for every table)."""
    options = model_options(name)
    unknown = sorted(set(args) - set(options))
    if unknown:
        allowed = ", ".join(f"{k} (default {v!r})" for k, v in options.items()) or "none"
        raise ValueError(f"model {name!r} takes no argument(s) {unknown}; it takes: {allowed}")
    for key, value in args.items():
        if options[key] is not inspect.Parameter.empty and not _same_kind(value, options[key]):
            raise ValueError(f"{key} must be a {type(options[key]).__name__} like the default "
                             f"{options[key]!r} (got {value!r})")


def check_suite(name: str) -> None:
    from gradguard.evaluation.suites import SUITES

    if name.lower() not in SUITES:
        raise ValueError(f"unknown suite {name!r}: expected one of {list(SUITES)}")


def check_device(text: str) -> None:
    if not _DEVICE.match(text):
        raise ValueError(f"expected 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or 'xpu' (got {text!r})")


def check_threads(n: int | str) -> None:
    """0 leaves torch's thread count alone; more threads than cores only slows down (and 100000 crashes libgomp).
    "auto" is checked by its own type: it never asks for more than the cores."""
    cores = os.cpu_count() or 1
    if isinstance(n, int) and n > cores:
        raise ValueError(f"must be between 1 and the {cores} CPU cores of this machine, or 0 to leave as is (got {n})")


def check_val_size(val_size: int, dataset: str) -> None:
    """The validation subset is carved out of the training split: it must leave at least one training image."""
    from gradguard.data.specs import get_spec

    try:
        train_size = get_spec(dataset).train_size
    except ValueError:  # an unknown dataset is data.dataset's error, not this one
        return
    if val_size >= train_size:
        raise ValueError(f"must be smaller than the {train_size} training images of {dataset} (got {val_size})")


def non_finite_numbers(value: Any, key: str) -> list[str]:
    """Dotted keys of every NaN or infinite number inside a (nested) settings table."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{key}: must be a finite number (got {value})"]
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in non_finite_numbers(v, f"{key}.{k}")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in non_finite_numbers(v, f"{key}[{i}]")]
    return []
