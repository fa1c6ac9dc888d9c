"""Threat models: an Lp ball around the clean input, intersected with the [0, 1] image box.

One small class per ball (the MadryLab `attack_steps` seam): an attack asks the threat model to start, step and
project, and never needs to know which norm it is working in.
"""

from __future__ import annotations

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
    """An epsilon-ball in some norm, always intersected with the [0, 1] box."""

    norm: Norm

    def __init__(self, eps: float) -> None:
        if not 0.0 <= float(eps) <= (1.0 if self.norm == "linf" else float("inf")):
            raise ValueError(f"eps must be in [0, 1] for linf and >= 0 for l2, got {eps}")
        self.eps = float(eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps:g})"

    @abstractmethod
    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Nearest point (for linf exactly; for l2 the radial projection then the box clamp) in ball and box."""

    @abstractmethod
    def random_init(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A random point of the ball around `x`, clamped to the box."""

    @abstractmethod
    def step(self, x_adv: Tensor, grad: Tensor, alpha: float | Tensor) -> Tensor:
        """One steepest-ascent step of size `alpha` in this norm (not yet projected)."""

    @abstractmethod
    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Per-sample distance in this norm, shape (N,)."""

    def contains(self, x_adv: Tensor, x: Tensor, tol: float = 1e-6) -> Tensor:
        """Per-sample boolean: inside the ball and the box (up to `tol`)."""
        in_box = (x_adv >= -tol).flatten(1).all(1) & (x_adv <= 1 + tol).flatten(1).all(1)
        return in_box & (self.distance(x_adv, x) <= self.eps + tol)


class LinfBall(ThreatModel):
    norm = "linf"

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp_(0.0, 1.0)

    def random_init(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + (2 * u - 1) * self.eps).clamp_(0.0, 1.0)

    def step(self, x_adv: Tensor, grad: Tensor, alpha: float | Tensor) -> Tensor:
        return x_adv + alpha * grad.sign()

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return (x_adv - x).flatten(1).abs().amax(1)


class L2Ball(ThreatModel):
    norm = "l2"

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        delta = x_adv - x
        factor = (self.eps / _per_sample_norm(delta)).clamp(max=1.0)
        return (x + delta * factor).clamp_(0.0, 1.0)

    def random_init(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        # Uniform in the ball: direction from a Gaussian, radius eps * U^(1/d).
        g = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        d = x[0].numel()
        r = torch.rand((x.shape[0],), generator=generator, device=x.device, dtype=x.dtype) ** (1.0 / d)
        delta = g / _per_sample_norm(g) * (self.eps * r).view(-1, *([1] * (x.dim() - 1)))
        return (x + delta).clamp_(0.0, 1.0)

    def step(self, x_adv: Tensor, grad: Tensor, alpha: float | Tensor) -> Tensor:
        return x_adv + alpha * grad / _per_sample_norm(grad)

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return (x_adv - x).flatten(1).norm(dim=1)


def threat_model(norm: str = "linf", eps: float | None = None) -> ThreatModel:
    """Build the ball of radius `eps` for `norm` (any spelling `normalize_norm` accepts).

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
