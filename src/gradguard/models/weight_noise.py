"""Layers with Gaussian noise on their *weights* (PNI, Bayesian), drawn per input with the local
reparameterization trick (Kingma, Salimans & Welling 2015).

For weights W ~ N(mu, s^2) elementwise, the pre-activation of a linear map is Gaussian with mean op(x, mu) and
variance op(x^2, s^2); sampling that per output element costs two ordinary layer calls for the whole batch, where
drawing a weight tensor per input would cost a grouped convolution with B times the weights. For fully connected
layers it is exact in distribution; for convolutions each output element has the exact marginal, but the
correlations a shared weight draw induces between spatial positions are dropped (the usual "variational dropout"
approximation). `per_sample=False` draws one real weight tensor per call, shared by the batch, and a frozen layer
uses one fixed weight draw: both are exact sample models.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradguard.models.random_layers import RandomLayer

__all__ = ["WeightNoiseLayer", "PNILayer"]

_VAR_FLOOR = 1e-12  # keeps sqrt differentiable where the variance is exactly zero (all-zero receptive fields)


class WeightNoiseLayer(RandomLayer):
    """A conv2d or linear layer with Gaussian weight noise; subclasses say what the noise std is.

    The mean weights keep the names `weight` and `bias` of the layer they replace, so a trained deterministic
    network converts with its weights as means.
    """

    def __init__(self, layer: nn.Conv2d | nn.Linear, per_sample: bool = True) -> None:
        super().__init__()
        if isinstance(layer, nn.Conv2d):
            if layer.padding_mode != "zeros" or isinstance(layer.padding, str) and layer.padding != "valid":
                raise ValueError(f"{type(self).__name__}: only zero-padded convolutions are supported, got {layer}")
            self.op_kind = "conv"
            self.conv_args: dict[str, Any] = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                                  groups=layer.groups)
            self.in_features, self.out_features = layer.in_channels, layer.out_channels
        elif isinstance(layer, nn.Linear):
            self.op_kind = "linear"
            self.conv_args = {}
            self.in_features, self.out_features = layer.in_features, layer.out_features
        else:
            raise TypeError(f"{type(self).__name__} wraps nn.Conv2d or nn.Linear, got {type(layer).__name__}")
        self.weight = nn.Parameter(layer.weight.detach().clone(), requires_grad=layer.weight.requires_grad)
        self.bias = (None if layer.bias is None
                     else nn.Parameter(layer.bias.detach().clone(), requires_grad=layer.bias.requires_grad))
        self.per_sample = bool(per_sample)

    # --- what subclasses define -------------------------------------------------------------------------
    def weight_std(self) -> Tensor:
        """Noise std of the weights: a scalar or a tensor shaped like `weight`."""
        raise NotImplementedError

    def bias_std(self) -> Tensor | None:
        """Noise std of the bias (scalar or shaped like `bias`), or None for a noiseless bias."""
        return None

    # --- the forward pass -------------------------------------------------------------------------------
    def _op(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        if self.op_kind == "conv":
            return F.conv2d(x, w, b, **self.conv_args)
        return F.linear(x, w, b)

    def forward(self, x: Tensor) -> Tensor:
        s_w, s_b = self.weight_std(), self.bias_std()
        if self.frozen or not self.per_sample:
            batch = None
            w = self.weight + s_w * self.draw("weight", tuple(self.weight.shape), self.weight, batch=batch)
            b: Tensor | None = self.bias
            if b is not None and s_b is not None:
                b = b + s_b * self.draw("bias", tuple(b.shape), b, batch=batch)
            return self._op(x, w, b)
        mean = self._op(x, self.weight, self.bias)
        var = self._variance(x, s_w, s_b)
        eps = self.draw("output", tuple(mean.shape[1:]), mean, batch=mean.shape[0])
        return mean + torch.sqrt(var + _VAR_FLOOR) * eps

    def _variance(self, x: Tensor, s_w: Tensor, s_b: Tensor | None) -> Tensor:
        groups = self.conv_args.get("groups", 1)
        if s_w.numel() == 1 and groups == 1:
            # one std for the layer: the variance is the same for every output unit, one 1-output op suffices
            ones = torch.ones((1, *self.weight.shape[1:]), device=x.device, dtype=x.dtype)
            var = self._op(x * x, ones, None) * s_w.reshape(()) ** 2
        else:
            var = self._op(x * x, (s_w**2).expand_as(self.weight), None)
        if s_b is not None and self.bias is not None:
            sb2 = (s_b**2).expand_as(self.bias)
            var = var + (sb2.view(1, -1, 1, 1) if self.op_kind == "conv" else sb2)
        return var

    def _shape_repr(self) -> str:
        args = "".join(f", {k}={v}" for k, v in self.conv_args.items())
        return (f"{self.op_kind}, {self.in_features}->{self.out_features}, weight={tuple(self.weight.shape)}{args}, "
                f"bias={self.bias is not None}, per_sample={self.per_sample}{self._extra()}")


class PNILayer(WeightNoiseLayer):
    """Parametric Noise Injection on weights (PNI-W, He, Rakin & Fan 2019), layer-wise scale.

    W_noisy = W + alpha * eta, eta ~ N(0, std(W)^2), with one learnable alpha per layer (initialised to 0.25 as
    in the paper's code) and std(W) taken without gradient, as the paper's code does (`weight.std().item()`), so
    training moves alpha and not the weight spread. Noise stays on at test time.
    """

    def __init__(self, layer: nn.Conv2d | nn.Linear, alpha: float = 0.25, per_sample: bool = True) -> None:
        super().__init__(layer, per_sample)
        self.alpha = nn.Parameter(torch.tensor(float(alpha), device=self.weight.device, dtype=self.weight.dtype))

    def weight_std(self) -> Tensor:
        return self.alpha.abs() * self.weight.detach().std()

    def extra_repr(self) -> str:
        return f"PNI-W, {self._shape_repr()}"
