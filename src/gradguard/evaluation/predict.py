"""Predictions of possibly randomized models: the m-draw protocol.

A randomized defence judged by one forward pass looks more (or less) robust than it is; its prediction is the
softmax averaged over `m` independent draws. The draws are taken in one batched pass over replicated inputs when
the model draws independently per input of a batch, else as `m` forward calls (`gradguard.draws`), chunked so
that at most `batch_size` rows go through the network at once.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import cast

import torch
from torch import Tensor, nn

from gradguard.draws import draws_per_pass
from gradguard.module_state import eval_mode as _eval_mode

__all__ = ["eval_mode", "predict", "predict_labels", "detect_randomness", "model_device"]


def eval_mode(model: nn.Module) -> AbstractContextManager[nn.Module]:
    """Every submodule in eval mode, each one's own flag restored on exit (BatchNorm/dropout bugs).

    `gradguard.module_state.eval_mode` without freezing: parameters keep their `requires_grad`.
    """
    return _eval_mode(model, freeze=False)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for parameter-free models)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def _is_randomized_flag(model: nn.Module) -> bool | None:
    """Ask the model zoo whether `model` carries randomized layers; None when the zoo cannot tell."""
    from gradguard.models import is_randomized  # lazy: the zoo loads only when an evaluation needs it

    try:
        return bool(is_randomized(model))
    except Exception:  # a foreign model the zoo does not know
        return None


@torch.no_grad()
def detect_randomness(model: nn.Module, x: Tensor, *, atol: float = 1e-6) -> tuple[bool, float]:
    """Forward `x` twice in eval mode; randomness shows as outputs that differ (AutoAttack `check_randomized`).

    Returns (randomized, max absolute difference of the softmax outputs). Works on any model, whatever layers it
    uses, which is why the evaluator trusts it over a registry of known randomized layers.
    """
    device = model_device(model)
    with eval_mode(model):
        a = torch.softmax(model(x.to(device)).float(), dim=1)
        b = torch.softmax(model(x.to(device)).float(), dim=1)
    diff = (a - b).abs().max().item() if a.numel() else 0.0
    return bool(diff > atol or not torch.isfinite(a).all()), float(diff)


@torch.no_grad()
def predict(
    model: nn.Module,
    x: Tensor,
    m: int = 1,
    batch_size: int = 256,
    *,
    randomized: bool | None = None,
) -> Tensor:
    """Softmax probabilities (N, C) on the CPU, averaged over `m` draws for randomized models.

    Deterministic models are forwarded once whatever `m` is. `randomized=None` asks the model zoo and also probes
    the model with two forward passes of a few inputs. The model runs in eval mode; its mode is restored.
    """
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = model_device(model)
    if randomized is None:  # the zoo knows its own layers; a probe catches any other source of randomness
        randomized = bool(_is_randomized_flag(model)) or (
            detect_randomness(model, x[: min(8, len(x))])[0] if len(x) else False
        )
    draws = m if randomized else 1
    out: list[Tensor] = []
    with eval_mode(model):
        per_pass = draws_per_pass(model, x[:1].to(device), draws) if len(x) else 1
        per_chunk = max(1, batch_size // per_pass)
        for start in range(0, len(x), per_chunk):
            xc = x[start : start + per_chunk].to(device)
            b = xc.shape[0]
            if per_pass > 1:
                xc = xc.unsqueeze(0).expand(per_pass, *xc.shape).reshape(per_pass * b, *xc.shape[1:])
            probs = sum(torch.softmax(model(xc).float(), dim=1).view(per_pass, b, -1).sum(0)
                        for _ in range(draws // per_pass))
            out.append((cast(Tensor, probs) / draws).cpu())
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)


def predict_labels(
    model: nn.Module, x: Tensor, m: int = 1, batch_size: int = 256, *, randomized: bool | None = None
) -> Tensor:
    """Argmax of `predict`: the m-draw label of each input (int64, CPU)."""
    return predict(model, x, m, batch_size, randomized=randomized).argmax(1)
