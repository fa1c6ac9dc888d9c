"""Model state that every caller of a model must restore: train/eval mode and parameter `requires_grad` flags.

A leaf module (torch only). Attacks, training, GradDiv and evaluation all put a model in eval mode and hand it back
exactly as they found it; they import `eval_mode` from here, so none of them has to import another's package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from torch import Tensor, nn

__all__ = ["Model", "eval_mode"]

#: What attacks and gradient estimators accept: a module, or any function from a batch to logits.
Model = nn.Module | Callable[[Tensor], Tensor]
M = TypeVar("M", bound=Model)


@contextmanager
def eval_mode(model: M, *, freeze: bool = True) -> Iterator[M]:
    """Put every submodule in eval mode and (with `freeze`) stop parameter gradients; restore both on exit.

    Flags are restored per module and per parameter, so a model that was deliberately half in train mode comes
    back exactly as it was. Plain callables pass through untouched.
    """
    if not isinstance(model, nn.Module):
        yield model
        return
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        if freeze:
            for p, _ in flags:
                p.requires_grad_(False)
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)
