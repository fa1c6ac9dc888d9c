"""Mean-field Gaussian (Bayesian) conv and linear layers as in Adv-BNN (Liu et al. 2019), and their KL term.

Each weight has a posterior N(mu, sigma^2) with sigma = exp(log_sigma); the prior is N(0, sigma_0^2). As in the
Adv-BNN code (`models/layers/conv2d.py` of xuanqing94/BayesianDefense) the KL of each element is
log(sigma_0) - log(sigma) + (sigma^2 + mu^2) / (2 sigma_0^2) - 1/2, summed over weights and biases, and
`init_s` is the initial sigma (stored as its log). Batch-norm layers stay deterministic (Adv-BNN also makes BN
affine parameters random; we keep the randomness in the weight layers, where the KL is defined).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gradguard.models.weight_noise import WeightNoiseLayer

__all__ = ["BayesLayer", "kl_divergence"]


class BayesLayer(WeightNoiseLayer):
    """Conv2d/linear with weights ~ N(weight, exp(weight_log_sigma)^2), sampled per input by default."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, sigma_0: float = 0.08, init_s: float = 0.08,
                 per_sample: bool = True) -> None:
        super().__init__(layer, per_sample)
        if sigma_0 <= 0 or init_s <= 0:
            raise ValueError(f"BayesLayer: sigma_0 and init_s must be > 0, got {sigma_0}, {init_s}")
        self.sigma_0 = float(sigma_0)
        self.init_s = float(init_s)
        log_s = math.log(init_s)
        self.weight_log_sigma = nn.Parameter(torch.full_like(self.weight, log_s))
        self.bias_log_sigma = None if self.bias is None else nn.Parameter(torch.full_like(self.bias, log_s))

    def weight_std(self) -> Tensor:
        return self.weight_log_sigma.exp()

    def bias_std(self) -> Tensor | None:
        return None if self.bias_log_sigma is None else self.bias_log_sigma.exp()

    def kl(self) -> Tensor:
        """KL(q || prior) of this layer's weights and bias, a differentiable 0-dim tensor."""
        total = _kl(self.weight, self.weight_log_sigma, self.sigma_0)
        if self.bias is not None and self.bias_log_sigma is not None:
            total = total + _kl(self.bias, self.bias_log_sigma, self.sigma_0)
        return total

    def extra_repr(self) -> str:
        return f"Bayes, sigma_0={self.sigma_0}, init_s={self.init_s}, {self._shape_repr()}"


def _kl(mu: Tensor, log_sigma: Tensor, sigma_0: float) -> Tensor:
    return (math.log(sigma_0) - log_sigma + (torch.exp(2 * log_sigma) + mu**2) / (2 * sigma_0**2) - 0.5).sum()


def kl_divergence(model: nn.Module) -> Tensor:
    """Sum of the KL terms of every Bayesian layer of `model` (the ELBO's complexity term).

    A 0-dim zero on the model's device when it has none, so recipes can always add it.
    """
    terms = [m.kl() for m in model.modules() if isinstance(m, BayesLayer)]
    if terms:
        return torch.stack(terms).sum()
    p = next(iter(model.parameters()), None)
    return torch.zeros((), device=None if p is None else p.device, dtype=None if p is None else p.dtype)
