"""Memory layout of a model's weights on CPU: when channels-last pays, and a context that holds it for a while.

Attacks use it to pick and hold the layout for the duration of a call. A leaf module (torch only), so that
importing the attacks loads neither the model zoo nor the data package.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from gradguard.module_state import Model

__all__ = ["wants_channels_last", "channels_last_layout"]


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


@contextmanager
def channels_last_layout(model: Model, enabled: bool = True) -> Iterator[Model]:
    """Hold the model's 4-D parameters in channels-last layout for the duration; restore the caller's tensors.

    On CPU, oneDNN convolutions and max-pooling in this layout skip a reorder on every call: the zoo's small MNIST
    CNNs gain, a BatchNorm ResNet neither gains nor loses (docs/attacks.md, "Channels-last on CPU"). Activations
    come out channels-last too, so a model that flattens them with `.view` fails in this layout; `Attack` then
    reruns in the model's own layout.
    Only each parameter's ``.data`` is swapped, and swapped back on exit, so the parameter objects (and whatever
    holds them: optimizers, hooks) are untouched and the values are bit-identical afterwards.
    """
    if not enabled or not isinstance(model, nn.Module):
        yield model
        return
    saved: list[tuple[nn.Parameter, Tensor]] = []
    try:
        for p in model.parameters():
            if isinstance(p, nn.parameter.UninitializedParameter) or p.dim() != 4:
                continue
            # `.to` gives the canonical channels-last strides, also to a one-input-channel weight (the first conv
            # on grey images), which `contiguous(memory_format=...)` would leave NCHW since it already counts as
            # channels-last: its output would then stay NCHW and every later layer would pay a reorder.
            cl = p.data.to(memory_format=torch.channels_last)
            if cl is p.data:
                continue
            saved.append((p, p.data))
            p.data = cl
        yield model
    finally:
        for p, data in saved:
            p.data = data
