"""Counting passes through the network: the currency of the time-to-robustness log.

A forward hook on the *plain* network adds the number of samples each forward sees, split by whether autograd was
recording (a forward that will be backpropagated: a forward+backward pass) or not (a no-grad forward, e.g. an
attack's bookkeeping of its best point). Dividing by the batch size gives passes per batch, so PGD-AT with 10 steps
costs 11 forward+backward passes per batch, Fast-AT 2, whatever the recipe does internally (EOT replicas included).
Validation is counted separately, so it never inflates the training budget.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["PassCounter"]


class PassCounter:
    def __init__(self, model: nn.Module) -> None:
        self.samples = 0  # every forward
        self.grad_samples = 0  # forwards recorded by autograd
        self._handle = model.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() > 0:
            n = int(args[0].shape[0])
            self.samples += n
            if torch.is_grad_enabled():
                self.grad_samples += n

    def snapshot(self) -> tuple[int, int]:
        return self.samples, self.grad_samples

    def since(self, snap: tuple[int, int], batch_size: int) -> tuple[float, float]:
        """(forward passes, forward+backward passes) since `snap`, in units of `batch_size`."""
        b = max(1, batch_size)
        return (self.samples - snap[0]) / b, (self.grad_samples - snap[1]) / b

    def remove(self) -> None:
        self._handle.remove()
