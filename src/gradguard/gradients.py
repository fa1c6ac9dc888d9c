"""Input-gradient estimators: plain, EOT over batched replicas, and BPDA.

EOT (expectation over transformation) averages the loss gradient over `k` random draws of a randomized model. It is
computed in ONE batched pass over the input replicated `k` times (``repeat_interleave``: rows ``i*k .. i*k+k-1``
are the draws of sample ``i``), chunked to bound memory, never as a Python loop of `k` passes. Because the replicas
are built inside the autograd graph, the gradient with respect to the original input is the *sum* of the per-draw
gradients; dividing by `k` gives their mean exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

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


def _scores(logits: Tensor, n: int, eot: int) -> Tensor:
    """Per-sample scores whose argmax is the k-draw prediction: logits for k=1, mean softmax otherwise."""
    if eot == 1:
        return logits.detach()
    return logits.detach().softmax(1).view(n, eot, -1).mean(1)


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
    rows (samples x draws) in one forward pass (None: automatic, see `AUTO_CHUNK_ROWS`; 0: no bound). With
    ``create_graph=True`` the gradient stays differentiable (for double backpropagation in training); otherwise
    everything returned is detached.
    """
    fn = get_loss(loss_fn)
    k = int(eot)
    if k < 1:
        raise ValueError(f"eot must be >= 1, got {eot}")
    n = x.shape[0]
    per_chunk = _rows_per_chunk(n, k, chunk_size, x.device)
    use_x = create_graph and x.requires_grad
    grads: list[Tensor] = []
    losses: list[Tensor] = []
    scores: list[Tensor] = []
    for start in range(0, n, per_chunk):
        stop = min(n, start + per_chunk)
        xs = x[start:stop] if use_x else x[start:stop].detach().requires_grad_(True)
        ys = y[start:stop]
        ts = None if target is None else target[start:stop]
        with torch.enable_grad():
            xr = xs if k == 1 else xs.repeat_interleave(k, dim=0)
            if k > 1:
                ys = ys.repeat_interleave(k)
                ts = None if ts is None else ts.repeat_interleave(k)
            logits = model(xr)
            loss = fn(logits, ys, ts)
            (g,) = torch.autograd.grad(loss.sum(), xs, create_graph=create_graph)
        if k > 1:
            g = g / k
            loss = loss.view(stop - start, k).mean(1)
        if not create_graph:
            loss = loss.detach()
        grads.append(g)
        losses.append(loss)
        if return_scores:
            scores.append(_scores(logits, stop - start, k))
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
    """Forward-only version of `input_gradient`: ``(scores, per_sample_loss or None)``, batched over draws."""
    fn = None if loss_fn is None else get_loss(loss_fn)
    k = int(eot)
    n = x.shape[0]
    per_chunk = _rows_per_chunk(n, k, chunk_size, x.device)
    scores: list[Tensor] = []
    losses: list[Tensor] = []
    for start in range(0, n, per_chunk):
        stop = min(n, start + per_chunk)
        xr = x[start:stop] if k == 1 else x[start:stop].repeat_interleave(k, dim=0)
        logits = model(xr)
        scores.append(_scores(logits, stop - start, k))
        if fn is not None and y is not None:
            ys = y[start:stop] if k == 1 else y[start:stop].repeat_interleave(k)
            ts = None if target is None else target[start:stop]
            if ts is not None and k > 1:
                ts = ts.repeat_interleave(k)
            losses.append(fn(logits, ys, ts).view(stop - start, k).mean(1))
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
