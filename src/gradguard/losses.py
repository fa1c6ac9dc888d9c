"""Attack losses: per-sample, larger means "more adversarial".

Every loss has the signature ``f(logits, y, target=None) -> Tensor(N)``. Untargeted losses ignore ``target``;
targeted ones need it. Keeping the loss per sample lets attacks track the best point of each input separately and
lets EOT average losses over draws before anything is reduced.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LossFn",
    "LOSSES",
    "ce",
    "ce_targeted",
    "cw",
    "cw_targeted",
    "dlr",
    "dlr_targeted",
    "margin",
    "get_loss",
    "is_targeted",
    "success",
]

LossFn = Callable[..., Tensor]
_TINY = 1e-12


def _true_logit(logits: Tensor, y: Tensor) -> Tensor:
    return logits.gather(1, y.view(-1, 1)).squeeze(1)


def _best_other(logits: Tensor, y: Tensor) -> Tensor:
    """Largest logit among the classes other than `y` (fills y with -inf rather than sorting: cheaper)."""
    return logits.scatter(1, y.view(-1, 1), float("-inf")).amax(1)


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """z_y - max_{j != y} z_j: positive iff the prediction is `y`."""
    return _true_logit(logits, y) - _best_other(logits, y)


def ce(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Cross-entropy of the true label (maximise to leave class `y`)."""
    return F.cross_entropy(logits, y, reduction="none")


def ce_targeted(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Negative cross-entropy of the target class (maximise to reach `target`)."""
    if target is None:
        raise ValueError("ce-targeted needs a target tensor")
    return -F.cross_entropy(logits, target, reduction="none")


def cw(logits: Tensor, y: Tensor, target: Tensor | None = None, *, kappa: float = float("inf")) -> Tensor:
    """Carlini-Wagner margin max_{j != y} z_j - z_y, capped at `kappa` (no gain beyond the confidence wanted)."""
    loss = -margin(logits, y)
    return loss if kappa == float("inf") else loss.clamp(max=kappa)


def cw_targeted(logits: Tensor, y: Tensor, target: Tensor | None = None, *, kappa: float = float("inf")) -> Tensor:
    """Targeted CW margin z_t - max_{j != t} z_j, capped at `kappa`."""
    if target is None:
        raise ValueError("cw-targeted needs a target tensor")
    loss = margin(logits, target)
    return loss if kappa == float("inf") else loss.clamp(max=kappa)


def dlr(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Difference of logits ratio (Croce & Hein 2020): the CW margin scaled by z_pi1 - z_pi3.

    Scale invariant, so a defence cannot hide behind huge or tiny logits.
    """
    top = logits.topk(3, dim=1).values
    return -margin(logits, y) / (top[:, 0] - top[:, 2] + _TINY)


def dlr_targeted(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Targeted DLR: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2); needs at least 4 classes."""
    if target is None:
        raise ValueError("dlr-targeted needs a target tensor")
    if logits.shape[1] < 4:
        raise ValueError(f"dlr-targeted needs at least 4 classes, got {logits.shape[1]}")
    top = logits.topk(4, dim=1).values
    num = _true_logit(logits, y) - _true_logit(logits, target)
    return -num / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _TINY)


LOSSES: dict[str, LossFn] = {
    "ce": ce,
    "ce-targeted": ce_targeted,
    "cw": cw,
    "cw-targeted": cw_targeted,
    "dlr": dlr,
    "dlr-targeted": dlr_targeted,
}


def get_loss(name: str | LossFn, *, targeted: bool = False, **settings: float) -> LossFn:
    """Loss by name ("ce", "cw", "dlr", or their "-targeted" forms); `targeted=True` picks the targeted form.

    Extra settings (e.g. ``kappa`` for the CW losses) are bound to the function. A callable is returned as is.
    """
    if callable(name):
        return name
    key = name.lower().replace("_", "-")
    if targeted and not key.endswith("-targeted"):
        key += "-targeted"
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: expected one of {sorted(LOSSES)}")
    fn = LOSSES[key]
    return partial(fn, **settings) if settings else fn


def is_targeted(name: str) -> bool:
    """Whether a loss name is a targeted form."""
    return name.lower().replace("_", "-").endswith("-targeted")


def success(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Per-sample attack success: prediction left `y` (untargeted) or reached `target` (targeted)."""
    pred = logits.argmax(1)
    return pred == target if target is not None else pred != y
