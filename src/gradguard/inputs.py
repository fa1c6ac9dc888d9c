"""Checks at the attack and evaluation boundary: what an attack is given is what its contract promises.

Attacks assume float images in [0, 1], integer class labels and a real radius. Without these checks a NaN pixel
makes every adversarial output non-finite, 0-255 images fail deep inside an attack with a message that blames it,
and out-of-range labels can make a sample look robust (APGD-T returned x unchanged for label 10). Every check
reads the tensors only (the caller's tensors are never changed) and costs one pass over x, before any work.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor

__all__ = ["check_attack_inputs", "check_eps", "check_labels", "check_label_range", "explain_index_error"]


def check_eps(eps: Any, name: str = "eps") -> None:
    """A radius is a finite real number >= 0 (not a string, a bool or NaN), or a floating-point tensor of such
    numbers (one per sample); None means "not set yet"."""
    if eps is None:
        return
    if isinstance(eps, Tensor):
        if not eps.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor (one radius per sample), got {eps.dtype}")
        bad = ~(torch.isfinite(eps) & (eps >= 0))
        if bool(bad.any()):
            raise ValueError(f"{name} must hold finite numbers >= 0, got {eps[bad][:3].tolist()!r} among its values")
        return
    if isinstance(eps, (bool, str)) or not isinstance(eps, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(eps).__name__} {eps!r}")
    if not math.isfinite(float(eps)) or eps < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {eps!r}")


def _check_images(x: Any) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        hint = ": convert with x.float() / 255" if x.dtype == torch.uint8 else ""
        raise TypeError(f"images must be a floating-point tensor in [0, 1], got {x.dtype}{hint}")
    if x.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))  # NaN propagates into both
    if math.isnan(lo) or math.isnan(hi) or math.isinf(lo) or math.isinf(hi):
        bad = int((~torch.isfinite(x.detach())).sum())
        raise ValueError(f"images must be finite, got {bad} NaN or infinite value(s)")
    if hi > 1 and lo >= 0 and hi <= 255:
        raise ValueError(f"images must be in [0, 1]; got max {hi:g}: divide by 255 (attacks and the model's "
                         "normalization layer expect [0, 1] pixels)")
    if lo < 0 or hi > 1:
        raise ValueError(f"images must be in [0, 1]; got min {lo:g}, max {hi:g} (normalization belongs inside the "
                         "model, not in the data)")


def check_labels(y: Any, name: str = "labels") -> None:
    """Class indices: an integer tensor of values >= 0 (the upper bound needs the model: `check_label_range`)."""
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise TypeError(f"{name} must be an integer tensor of class indices, got {y.dtype}")
    if y.dim() != 1:
        raise ValueError(f"{name} must be one-dimensional (one class per sample), got shape {tuple(y.shape)}")
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"{name} must be class indices >= 0, got {int(y.min())}")


def check_label_range(y: Tensor | int, n_classes: int, name: str = "labels") -> None:
    """Labels below the model's number of outputs (known once a forward pass has run). `y` may be the labels or
    their maximum as an int (what `check_attack_inputs` returns), which costs no device synchronization."""
    top = y if isinstance(y, int) else int(y.max()) if y.numel() else -1
    if top >= n_classes:
        raise ValueError(f"{name} must be class indices in [0, {n_classes}) for a model with {n_classes} outputs, "
                         f"got {top}")


def _check_model_dtype(x: Tensor, model: Any) -> None:
    """float64 images into a float32 network fail deep in the first layer; say so up front."""
    if not isinstance(model, torch.nn.Module):
        return
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(dtypes) == 1 and x.dtype not in dtypes:
        (dtype,) = dtypes
        raise TypeError(f"images are {x.dtype} but the model's parameters are {dtype}: convert with x.to({dtype})")


def check_attack_inputs(x: Any, y: Any, eps: Any = None, *, target: Any = None, model: Any = None) -> int:
    """Everything about (x, y, eps, target) that can be checked without running the model; raises TypeError or
    ValueError naming the argument and what was expected. `eps` may be None, a number or a list of numbers.
    Returns the largest label (-1 for none), for `check_label_range` once the model's output size is known."""
    _check_images(x)
    _check_model_dtype(x, model)
    check_labels(y)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    if target is not None:
        check_labels(target, "target")
    if isinstance(eps, (list, tuple)):
        for i, e in enumerate(eps):
            check_eps(e, f"eps[{i}]")
    else:
        check_eps(eps)
    return int(y.max()) if y.numel() else -1


def explain_index_error(model: Any, x: Tensor, y: Tensor, exc: BaseException) -> None:
    """After torch's "index out of bounds" inside a loss, raise the ValueError about labels it really was.

    Run only on that error path (one forward of one image), so correct calls pay nothing for the upper bound that
    needs the model's number of outputs.
    """
    if "out of bounds" not in str(exc) or not y.numel() or not callable(model):
        return
    from gradguard.attacks.base import eval_mode  # the attack's own context: eval mode, frozen parameters

    try:
        with eval_mode(model), torch.no_grad():
            n_classes = int(model(x[:1]).shape[-1])
    except Exception:  # the diagnosis failed too: let the original error speak
        return
    try:
        check_label_range(y, n_classes)
    except ValueError as err:
        raise err from exc
