"""Threat models: an Lp ball around the clean input, intersected with the [0, 1] image box.

One small class per ball (the MadryLab `attack_steps` seam): an attack asks the threat model to start, step and
project, and never needs to know which norm it is working in.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Literal

import torch
from torch import Tensor

__all__ = ["ThreatModel", "LinfBall", "L2Ball", "threat_model", "normalize_norm", "Norm", "NORMS"]

#: The canonical names of the norms; everything past `normalize_norm` compares against these only.
Norm = Literal["linf", "l2"]
NORMS: tuple[Norm, ...] = ("linf", "l2")
#: Every accepted spelling, after lower-casing and dropping "-", "_" and spaces ("L-inf", "l_2", "Linf", "INF" ...).
_SPELLINGS: dict[str, Norm] = {"linf": "linf", "inf": "linf", "l2": "l2", "2": "l2"}
_TINY = 1e-12


def normalize_norm(norm: object) -> Norm:
    """The canonical name ("linf" or "l2") of any accepted spelling of a norm, or a ValueError naming it.

    Called once where a norm enters (threat model, attack, evaluator, suite), so that no later comparison can
    meet "Linf" and silently take the other branch (`Square(norm="Linf")` once ran the L2 attack that way).
    Also takes the numbers `float("inf")` and `2`.
    """
    if isinstance(norm, (int, float)) and not isinstance(norm, bool):
        key = "inf" if norm == float("inf") else str(norm).removesuffix(".0")
    elif isinstance(norm, str):
        key = norm.lower().replace("-", "").replace("_", "").replace(" ", "")
    else:
        key = ""
    if key not in _SPELLINGS:
        raise ValueError(
            f"unknown norm {norm!r}: expected 'linf' (also 'Linf', 'inf', 'L-inf') or 'l2' (also 'L2', '2')"
        )
    return _SPELLINGS[key]


def _per_sample_norm(t: Tensor) -> Tensor:
    """L2 norm of each sample, shaped to broadcast against `t`."""
    return t.flatten(1).norm(dim=1).clamp_min(_TINY).view(-1, *([1] * (t.dim() - 1)))


class ThreatModel(ABC):
    """An epsilon-ball in some norm, always intersected with the [0, 1] box.

    `eps` is one radius for the batch, or a 1-D tensor of shape (N,): one radius per sample (row i of every batch
    the ball meets is sample i; `subset` follows a batch that drops rows).
    """

    norm: Norm

    def __init__(self, eps: float | Tensor) -> None:
        top = 1.0 if self.norm == "linf" else float("inf")
        if isinstance(eps, Tensor):
            if eps.dim() != 1 or not eps.is_floating_point():
                raise ValueError(f"per-sample eps must be a 1-D floating-point tensor of shape (N,), got "
                                 f"{eps.dtype} of shape {tuple(eps.shape)}")
            if not bool(((eps >= 0) & (eps <= top)).all()):
                raise ValueError(f"eps must be in [0, 1] for linf and >= 0 for l2, got {eps.min():g}..{eps.max():g}")
            self._eps: float | Tensor = eps.detach()
        else:
            if not 0.0 <= float(eps) <= top:
                raise ValueError(f"eps must be in [0, 1] for linf and >= 0 for l2, got {eps}")
            self._eps = float(eps)

    def __repr__(self) -> str:
        if isinstance(self._eps, Tensor):
            return f"{type(self).__name__}(eps=<per-sample, shape ({self._eps.shape[0]},)>)"
        return f"{type(self).__name__}(eps={self._eps:g})"

    @property
    def eps(self) -> float:
        """The radius shared by the batch; a per-sample ball has none (`radius`, `radii`)."""
        if isinstance(self._eps, Tensor):
            raise TypeError(f"{self!r} has one radius per sample: use radius(x) or radii(x)")
        return self._eps

    @property
    def per_sample(self) -> bool:
        return isinstance(self._eps, Tensor)

    def radius(self, x: Tensor) -> float | Tensor:
        """eps as it broadcasts against the batch `x`: the number, or the radii shaped (N, 1, ..., 1)."""
        if isinstance(self._eps, Tensor):
            return self.radii(x).view(-1, *([1] * (x.dim() - 1)))
        return self._eps

    def radii(self, x: Tensor) -> Tensor:
        """The radius of each row of `x`, shape (N,), on `x`'s device and dtype."""
        if isinstance(self._eps, Tensor):
            if self._eps.shape[0] != x.shape[0]:  # (N,) radii against one row would broadcast to N rows, silently
                raise ValueError(f"{self!r} meets a batch of {x.shape[0]} rows: use subset(rows) for part of a batch")
            return self._eps.to(device=x.device, dtype=x.dtype)
        return torch.full((x.shape[0],), self._eps, device=x.device, dtype=x.dtype)

    def subset(self, rows: Tensor) -> ThreatModel:
        """The ball for the batch ``x[rows]`` (indices or a boolean mask): itself when the radius is shared."""
        if not isinstance(self._eps, Tensor):
            return self
        ball = copy.copy(self)
        ball._eps = self._eps.to(rows.device)[rows]  # on the batch's device from here on
        return ball

    @abstractmethod
    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Nearest point (for linf exactly; for l2 the radial projection then the box clamp) in ball and box."""

    @abstractmethod
    def random_init(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A random point of the ball around `x`, clamped to the box."""

    @abstractmethod
    def step(self, x_adv: Tensor, grad: Tensor, alpha: float | Tensor) -> Tensor:
        """One steepest-ascent step of size `alpha` (a number or shaped to broadcast) in this norm (not projected)."""

    @abstractmethod
    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Per-sample distance in this norm, shape (N,)."""

    def contains(self, x_adv: Tensor, x: Tensor, tol: float = 1e-6) -> Tensor:
        """Per-sample boolean: inside the ball and the box (up to `tol`)."""
        in_box = (x_adv >= -tol).flatten(1).all(1) & (x_adv <= 1 + tol).flatten(1).all(1)
        eps = self.radii(x) if self.per_sample else self._eps
        return in_box & (self.distance(x_adv, x) <= eps + tol)


class LinfBall(ThreatModel):
    norm = "linf"

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        eps = self.radius(x)
        return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)

    def random_init(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + (2 * u - 1) * self.radius(x)).clamp_(0.0, 1.0)

    def step(self, x_adv: Tensor, grad: Tensor, alpha: float | Tensor) -> Tensor:
        return x_adv + alpha * grad.sign()

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return (x_adv - x).flatten(1).abs().amax(1)


class L2Ball(ThreatModel):
    norm = "l2"

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        delta = x_adv - x
        factor = (self.radius(x) / _per_sample_norm(delta)).clamp(max=1.0)
        return (x + delta * factor).clamp_(0.0, 1.0)

    def random_init(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        # Uniform in the ball: direction from a Gaussian, radius eps * U^(1/d).
        g = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        d = x[0].numel()
        r = torch.rand((x.shape[0],), generator=generator, device=x.device, dtype=x.dtype) ** (1.0 / d)
        delta = g / _per_sample_norm(g) * (self.radius(x) * r.view(-1, *([1] * (x.dim() - 1))))
        return (x + delta).clamp_(0.0, 1.0)

    def step(self, x_adv: Tensor, grad: Tensor, alpha: float | Tensor) -> Tensor:
        return x_adv + alpha * grad / _per_sample_norm(grad)

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return (x_adv - x).flatten(1).norm(dim=1)


def threat_model(norm: str = "linf", eps: float | Tensor | None = None) -> ThreatModel:
    """Build the ball of radius `eps` (a number, or a tensor of shape (N,): one per sample) for `norm` (any
    spelling `normalize_norm` accepts).

    Keywords read as the attacks do: ``threat_model(eps=0.3, norm="linf")``; the positional form is
    ``threat_model("linf", 0.3)`` (norm first), and a radius in the norm's place is an error rather than a swapped
    ball (the numbers `float("inf")` and `2` name norms).
    """
    if isinstance(norm, (int, float)) and not isinstance(norm, bool) and norm not in (2, float("inf")):
        raise TypeError(f"threat_model: norm must name a norm such as 'linf', got {norm!r}; positionally the norm "
                        f"comes first (threat_model('linf', 0.3)), or use keywords: threat_model(eps=0.3, norm='linf')")
    if eps is None:
        raise TypeError("threat_model: eps is required, e.g. threat_model(eps=0.3, norm='linf')")
    return LinfBall(eps) if normalize_norm(norm) == "linf" else L2Ball(eps)
