"""How a randomized model's draws are sampled: per input of a batch, or once per forward call.

EOT, m-draw predictions and the GradDiv penalty need k independent draws of the model per input. The fast way
replicates each input k times in one batch, which is right only when the model draws its noise independently for
every input of a batch (gradguard's randomized layers do by default). A model that draws once per forward call
(``randomize(..., per_sample=False)``, many third-party models that add ``torch.randn(1, ...)``) gives the k
replicas one shared sample, so "k draws" would be one. `draw_mode` tells the two apart, once per model object, and
`forward_replicas` takes the k draws as k forward calls when the replicas would share one.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["DrawMode", "draw_mode", "draws_per_pass", "forward_replicas", "forget_draw_mode"]

#: "per-sample": replicas in one batch get independent draws; "per-call": one draw per forward call, shared by
#: the batch; "deterministic": no randomness seen (replicas and repeated calls agree).
DrawMode = Literal["per-sample", "per-call", "deterministic"]

#: Outputs (logits, relative to their largest magnitude) closer than this count as equal. Logits, not softmax:
#: a saturated softmax hides noise that still moves the logits and the gradients.
ATOL = 1e-6

_CACHE: weakref.WeakKeyDictionary[object, DrawMode] = weakref.WeakKeyDictionary()


def _declares_per_call(model: object) -> bool:
    """A live (not frozen) layer that says it draws once per call, e.g. PNI/Bayes layers with per_sample=False.

    Checked before the probe because a model mixing per-sample and per-call layers would pass the probe (its
    replicas differ) while its per-call part is still shared by the replicas."""
    if not isinstance(model, nn.Module):
        return False
    return any(getattr(m, "per_sample", True) is False and not getattr(m, "frozen", False) for m in model.modules())


#: Replicas of one input in the probe's batch, and further calls that must all agree before a model counts as
#: deterministic: enough that low-entropy noise (a 0.7 coin flip per input or per call) cannot agree by chance
#: (0.7^15 < 0.5%, 0.7^32 < 1e-4). Only a deterministic model pays for all the calls, once, on batches of two.
PROBE_REPLICAS = 16
PROBE_CALLS = 32


@torch.no_grad()
def _probe(model: Callable[[Tensor], Tensor], x1: Tensor) -> DrawMode:
    """Identical replicas in one batch; if they all agree, further calls tell per-call noise from none.

    Runs in eval mode (the mode attacks and predictions use; also keeps BatchNorm statistics untouched) and
    leaves every random stream where it was: the global RNG (`fork_rng`) and each `torch.Generator` a submodule
    holds as `.generator` (gradguard's randomized layers, `set_generator`), so seeded draws replay exactly."""
    modes = [(m, m.training) for m in model.modules()] if isinstance(model, nn.Module) else []
    gens = {id(g): g for m, _ in modes if isinstance(g := getattr(m, "generator", None), torch.Generator)}
    states = [(g, g.get_state()) for g in gens.values()]
    devices = [x1.device] if x1.device.type == "cuda" else []
    try:
        if isinstance(model, nn.Module):
            model.eval()
        with torch.random.fork_rng(devices=devices):
            a = model(x1.expand(PROBE_REPLICAS, *x1.shape[1:]).contiguous()).float()
            tol = ATOL * max(1.0, a.abs().max().item())
            if (a - a[:1]).abs().max().item() > tol:
                return "per-sample"
            for _ in range(PROBE_CALLS):
                b = model(x1.expand(2, *x1.shape[1:]).contiguous()).float()
                if (b - a[:1]).abs().max().item() > tol:
                    return "per-call"
            return "deterministic"
    finally:
        for m, training in modes:
            m.training = training
        for g, state in states:
            g.set_state(state)


def draw_mode(model: Callable[[Tensor], Tensor], x: Tensor) -> DrawMode:
    """How `model` draws its randomness (see `DrawMode`), probed on the first input of `x` and cached per model
    object (a weak reference: the cache never keeps a model alive; objects that cannot be weakly referenced are
    probed on every call). After changing a model's randomness in place (freezing or unfreezing layers), call
    `forget_draw_mode`."""
    try:
        cached = _CACHE.get(model)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    mode: DrawMode = "per-call" if _declares_per_call(model) else _probe(model, x[:1].detach())
    with contextlib.suppress(TypeError):
        _CACHE[model] = mode
    return mode


def forget_draw_mode(model: object) -> None:
    """Drop the cached `draw_mode` of `model` (after its randomness was changed in place)."""
    with contextlib.suppress(TypeError):
        _CACHE.pop(model, None)


def draws_per_pass(model: Callable[[Tensor], Tensor], x: Tensor, k: int) -> int:
    """How many of the k draws one forward pass can take: k (replicas in one batch) or 1 (one call per draw)."""
    if k <= 1:
        return 1
    return 1 if draw_mode(model, x) == "per-call" else k


def forward_replicas(model: Callable[[Tensor], Tensor], x_rep: Tensor, k: int) -> Tensor:
    """Outputs of `model` on replicated inputs, rows in ``repeat_interleave`` order (rows i*k .. i*k+k-1 are the k
    draws of input i), each row its own draw: one batched pass when the model draws per input, else k calls,
    call j taking the j-th replica of every input. Gradients flow to `x_rep` row by row in both cases."""
    if k <= 1 or draws_per_pass(model, x_rep, k) == k:
        return model(x_rep)
    grouped = x_rep.view(-1, k, *x_rep.shape[1:])
    return torch.stack([model(grouped[:, j]) for j in range(k)], dim=1).flatten(0, 1)
