"""Memory layout on CPU: when channels-last pays, how an attack feeds it, and which errors it causes.

Attacks run a conv net on channels-last *inputs*: oneDNN convolutions pick the layout from the input, so every
activation downstream flows channels-last while the caller's parameters are never touched (their storage, strides
and identity stay as the caller left them). A leaf module (torch only), so that importing the attacks loads neither
the model zoo nor the data package.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradguard.module_state import Model

__all__ = ["wants_channels_last", "channels_last_input", "is_layout_error"]

#: The message `Tensor.view` raises on activations whose strides it cannot reinterpret (e.g. a channels-last feature
#: map flattened with `.view(n, -1)`): the one error that the channels-last layout itself causes.
_LAYOUT_ERROR = "view size is not compatible with input tensor's size and stride"


def wants_channels_last(model: Model, x: Tensor) -> bool:
    """The automatic choice: a conv net attacked on CPU with image batches.

    A conv net is one with a 4-D parameter, so layers that call `F.conv2d` themselves (the PNI and Bayesian
    weight-noise layers) count too: their attack passes gain as well (docs/attacks.md, "Channels-last on CPU").
    """
    return (
        isinstance(model, nn.Module)
        and x.dim() == 4
        and x.device.type == "cpu"
        and any(
            p.dim() == 4 for p in model.parameters() if not isinstance(p, nn.parameter.UninitializedParameter)
        )
    )


def channels_last_input(model: Model, enabled: bool = True) -> Model:
    """`model` itself, or (when `enabled`) a function that hands it its 4-D inputs in channels-last layout.

    On CPU, oneDNN convolutions and max-pooling in this layout skip a reorder on every call: the zoo's small MNIST
    CNNs gain, a BatchNorm ResNet neither gains nor loses (docs/attacks.md, "Channels-last on CPU"). Activations
    come out channels-last too, so a model that flattens them with `.view` fails in this layout; `Attack` then
    reruns in the model's own layout. `.to` gives the canonical channels-last strides also to one-channel (grey)
    images, which `contiguous(memory_format=...)` would leave NCHW; gradients flow back to the caller's layout, and
    the caller's parameters are never touched.
    """
    if not enabled:
        return model

    def run(x: Tensor) -> Tensor:
        return model(x.to(memory_format=torch.channels_last) if x.dim() == 4 else x)

    return run


def is_layout_error(err: BaseException) -> bool:
    """Whether `err` is the one the channels-last layout causes (a `.view` of channels-last activations)."""
    return isinstance(err, RuntimeError) and _LAYOUT_ERROR in str(err)
