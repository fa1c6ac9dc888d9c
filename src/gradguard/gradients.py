"""Input-gradient estimators: plain, EOT over batched replicas, and BPDA.

EOT (expectation over transformation) averages the loss gradient over `k` random draws of a randomized model. When
the model draws independently per input of a batch, it is computed in ONE batched pass over the input replicated
`k` times (``repeat_interleave``: rows ``i*k .. i*k+k-1`` are the draws of sample ``i``), chunked to bound memory.
When the model draws once per forward call (`gradguard.draws.draw_mode` finds out, once per model), replicas would
share one draw, so the k draws are k forward calls instead, each over a chunk of the batch. Because the replicas
are built inside the autograd graph, the gradient with respect to the original input is the *sum* of the per-draw
gradients; dividing by `k` gives their mean exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import overload

import torch
from torch import Tensor, nn

from gradguard.draws import draws_per_pass
from gradguard.losses import LossFn, get_loss
from gradguard.module_state import Model

__all__ = ["input_gradient", "forward_scores", "bpda", "BPDAWrapper", "Model"]

#: Default cap on rows (samples x draws) per forward pass when `chunk_size` is None. A CPU gains nothing from big
#: passes (measurements in docs/attacks.md, Speed), so they stay at <= 128 rows; a GPU wants large passes, bounded
#: only to keep memory in check.
AUTO_CHUNK_ROWS = {"cpu": 128, "cuda": 8192}


def _rows_per_chunk(n: int, eot: int, chunk_size: int | None, device: torch.device) -> int:
    """Number of *samples* per chunk so that a chunk feeds at most `chunk_size` rows (samples x draws).

    `chunk_size` None: never split the caller's own batch for k = 1 (the caller chose it), and cap EOT passes at
    `AUTO_CHUNK_ROWS` rows (or the batch, if larger); 0 or negative: one pass, whatever its size.
    """
    if chunk_size is None:
        if eot == 1:
            return n
        chunk_size = max(n, AUTO_CHUNK_ROWS.get(device.type, 8192))
    if chunk_size <= 0:
        return n
    return max(1, int(chunk_size) // eot)


@overload
def _repeat(t: Tensor, d: int) -> Tensor: ...
@overload
def _repeat(t: None, d: int) -> None: ...
def _repeat(t: Tensor | None, d: int) -> Tensor | None:
    return t if t is None or d == 1 else t.repeat_interleave(d, dim=0)


def input_gradient(
    model: Model,
    x: Tensor,
    y: Tensor,
    loss_fn: str | LossFn,
    *,
    eot: int = 1,
    chunk_size: int | None = None,
    create_graph: bool = False,
    target: Tensor | None = None,
    return_scores: bool = False,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
    """Gradient of the per-sample loss with respect to the input, averaged over `eot` draws of the model.

    Returns ``(grad, per_sample_loss)`` (and, with ``return_scores``, the per-sample scores whose argmax is the
    prediction: logits when ``eot == 1``, the draw-averaged softmax otherwise). `chunk_size` bounds the number of
    rows in one forward pass (None: automatic, see `AUTO_CHUNK_ROWS`; 0: no bound). The draws are replicas in one
    pass when the model draws per input, else one forward call per draw (`gradguard.draws`). With
    ``create_graph=True`` the gradient stays differentiable (for double backpropagation in training); otherwise
    everything returned is detached.
    """
    fn = get_loss(loss_fn)
    k = int(eot)
    if k < 1:
        raise ValueError(f"eot must be >= 1, got {eot}")
    n = x.shape[0]
    d = draws_per_pass(model, x, k)
    per_chunk = _rows_per_chunk(n, d, chunk_size, x.device)
    use_x = create_graph and x.requires_grad
    grads: list[Tensor] = []
    losses: list[Tensor] = []
    scores: list[Tensor] = []
    for start in range(0, n, per_chunk):
        stop = min(n, start + per_chunk)
        xs = x[start:stop] if use_x else x[start:stop].detach().requires_grad_(True)
        ys, ts = _repeat(y[start:stop], d), _repeat(None if target is None else target[start:stop], d)
        g_sum: Tensor | float = 0.0
        loss_sum: Tensor | float = 0.0
        prob_sum: Tensor | float = 0.0
        for _ in range(k // d):  # one pass of k replicas, or k passes of one draw each
            with torch.enable_grad():
                logits = model(_repeat(xs, d))
                loss = fn(logits, ys, ts)
                (g,) = torch.autograd.grad(loss.sum(), xs, create_graph=create_graph)
            g_sum = g_sum + g
            loss_sum = loss_sum + loss.view(stop - start, d).sum(1)
            if return_scores and k > 1:
                prob_sum = prob_sum + logits.detach().softmax(1).view(stop - start, d, -1).sum(1)
        loss = loss_sum / k if k > 1 else loss_sum  # type: ignore[assignment]
        grads.append(g_sum / k if k > 1 else g_sum)  # type: ignore[arg-type]
        losses.append(loss if create_graph else loss.detach())
        if return_scores:
            scores.append(logits.detach() if k == 1 else prob_sum / k)  # type: ignore[arg-type]
    if len(grads) == 1:
        out = (grads[0], losses[0])
        return (*out, scores[0]) if return_scores else out
    out = (torch.cat(grads), torch.cat(losses))
    return (*out, torch.cat(scores)) if return_scores else out


@torch.no_grad()
def forward_scores(
    model: Model,
    x: Tensor,
    *,
    eot: int = 1,
    chunk_size: int | None = None,
    y: Tensor | None = None,
    loss_fn: str | LossFn | None = None,
    target: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Forward-only version of `input_gradient`: ``(scores, per_sample_loss or None)``, draws as it takes them."""
    fn = None if loss_fn is None else get_loss(loss_fn)
    k = int(eot)
    n = x.shape[0]
    d = draws_per_pass(model, x, k)
    per_chunk = _rows_per_chunk(n, d, chunk_size, x.device)
    scores: list[Tensor] = []
    losses: list[Tensor] = []
    for start in range(0, n, per_chunk):
        stop = min(n, start + per_chunk)
        xr = _repeat(x[start:stop], d)
        with_loss = fn is not None and y is not None
        ys = _repeat(y[start:stop], d) if with_loss else None  # type: ignore[index]
        ts = _repeat(None if target is None else target[start:stop], d)
        prob_sum: Tensor | float = 0.0
        loss_sum: Tensor | float = 0.0
        for _ in range(k // d):
            logits = model(xr)
            if k > 1:
                prob_sum = prob_sum + logits.softmax(1).view(stop - start, d, -1).sum(1)
            if with_loss:
                loss_sum = loss_sum + fn(logits, ys, ts).view(stop - start, d).sum(1)  # type: ignore[misc]
        scores.append(logits.detach() if k == 1 else prob_sum / k)  # type: ignore[arg-type]
        if with_loss:
            losses.append(loss_sum / k)  # type: ignore[arg-type]
    s = scores[0] if len(scores) == 1 else torch.cat(scores)
    loss = None if not losses else (losses[0] if len(losses) == 1 else torch.cat(losses))
    return s, loss


def bpda(
    fn: Callable[[Tensor], Tensor], approx: Callable[[Tensor], Tensor] | None = None
) -> Callable[[Tensor], Tensor]:
    """Backward Pass Differentiable Approximation (Athalye et al. 2018) of a non-differentiable `fn`.

    The forward pass computes ``fn(x)`` exactly; the backward pass goes through `approx` (identity by default),
    the straight-through trick ``a(x) + (fn(x) - a(x)).detach()``.
    """

    def wrapped(x: Tensor) -> Tensor:
        with torch.no_grad():
            out = fn(x)
        a = x if approx is None else approx(x)
        return a + (out - a).detach()

    return wrapped


class BPDAWrapper(nn.Module):
    """A module whose forward is `module` and whose backward is `approx` (identity when None)."""

    def __init__(
        self, module: Model, approx: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        super().__init__()
        self.inner = module
        self.approx = approx

    def forward(self, x: Tensor) -> Tensor:
        return bpda(self.inner, self.approx)(x)
