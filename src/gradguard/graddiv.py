"""GradDiv: regularizers that scatter the loss-gradient directions of a randomized network, and the statistics
that measure how scattered they are.

Attacks on randomized networks follow a proxy gradient, typically EOT's average of k single-draw gradients; the
proxy is only as good as the gradients of the sample models agree. For each input we take the input gradients
g_1..g_n of n independent draws and their unit directions u_i = g_i / |g_i|, and penalize their concentration:

- ``mrl``:   mean resultant length R = |mean_i u_i| (the default);
- ``cos``:   mean pairwise cosine over i != j, related to R by R^2 = 1/n + (n-1)/n * cos;
- ``kappa``: the von Mises-Fisher concentration estimate R (d - R^2) / (1 - R^2) in dimension d;
- ``det``:   -logdet(U U^T + ridge I), U the (n, d) matrix of directions (large when the u_i are near-parallel);
- ``eot``:   our extension beyond the paper: the share of the raw gradients' energy that survives EOT averaging
  (`eot_energy_share`), aimed at the mean gradient that EOT follows rather than at the spread of directions.

Every regularizer maps directions of shape (B, n, d) to one value per input, shape (B,); `graddiv_penalty` takes raw
gradients (any trailing shape), normalizes them safely and averages over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradguard.draws import forward_replicas
from gradguard.module_state import eval_mode

__all__ = [
    "REGULARIZERS",
    "RAW_REGULARIZERS",
    "eot_energy_share",
    "unit_directions",
    "mean_resultant_length",
    "mean_pairwise_cosine",
    "kappa_estimate",
    "neg_logdet",
    "graddiv_penalty",
    "draw_gradients",
    "GradientStatistics",
    "gradient_statistics",
    "TransferMatrix",
    "transfer_matrix",
]

#: eps inside norms: keeps zero gradients (dead ReLU inputs) finite instead of NaN.
EPS = 1e-8
#: R is clamped below 1 - R_MAX_GAP in `kappa`, where R -> 1 would divide by zero.
R_MAX_GAP = 1e-4


def _safe_norm(t: Tensor, dim: int = -1, keepdim: bool = False) -> Tensor:
    """sqrt(|t|^2 + EPS^2): equal to |t| up to EPS, with a finite gradient at t = 0."""
    return (t.pow(2).sum(dim=dim, keepdim=keepdim) + EPS**2).sqrt()


def unit_directions(grads: Tensor) -> Tensor:
    """(B, n, ...) raw gradients -> (B, n, d) unit directions; a zero gradient maps to ~0, not NaN."""
    if grads.dim() < 3:
        raise ValueError(f"expected gradients shaped (B, n, ...), got {tuple(grads.shape)}")
    flat = grads.flatten(2)
    return flat / _safe_norm(flat, keepdim=True)


def _check_dirs(u: Tensor, min_draws: int = 1) -> None:
    if u.dim() != 3:
        raise ValueError(f"expected unit directions shaped (B, n, d), got {tuple(u.shape)}")
    if u.shape[1] < min_draws:
        raise ValueError(f"need at least {min_draws} draws per input, got n={u.shape[1]}")


def mean_resultant_length(u: Tensor) -> Tensor:
    """R = |mean_i u_i| per input, in [0, 1]: 1 when all draws agree, ~1/sqrt(n) for random directions."""
    _check_dirs(u)
    return _safe_norm(u.mean(dim=1))


def mean_pairwise_cosine(u: Tensor) -> Tensor:
    """Mean of u_i . u_j over ordered pairs i != j, computed as (|sum u|^2 - sum |u_i|^2) / (n (n - 1))."""
    _check_dirs(u, min_draws=2)
    n = u.shape[1]
    total = u.sum(dim=1).pow(2).sum(-1)
    self_terms = u.pow(2).sum(dim=(1, 2))
    return (total - self_terms) / (n * (n - 1))


def kappa_estimate(u: Tensor) -> Tensor:
    """vMF concentration estimate R (d - R^2) / (1 - R^2) (Banerjee et al. 2005), R clamped below 1."""
    _check_dirs(u)
    d = u.shape[2]
    r = mean_resultant_length(u).clamp(max=1.0 - R_MAX_GAP)
    r2 = r * r
    return r * (d - r2) / (1.0 - r2)


def neg_logdet(u: Tensor, ridge: float = 1e-3) -> Tensor:
    """-logdet(U U^T + ridge I) per input: the Gram volume of the directions; larger when they are collinear."""
    _check_dirs(u)
    n = u.shape[1]
    gram = u @ u.transpose(1, 2)
    eye = torch.eye(n, dtype=u.dtype, device=u.device)
    return -torch.linalg.slogdet(gram + ridge * eye).logabsdet


def eot_energy_share(grads: Tensor) -> Tensor:
    """Share of the per-draw gradient energy that survives EOT's averaging, per input (B, n, ...) -> (B,).

    gradguard's extension beyond the GradDiv paper, aimed at what EOT exploits: EOT follows the mean of the *raw*
    gradients, so draws with large gradients weigh more than their directions alone say. The value is
    sum_{i != j} g_i . g_j / ((n - 1) sum_i |g_i|^2): 1 when all draws agree, about 0 when their mean vanishes,
    at least -1/(n - 1). Its numerator leaves out the i = j terms, so unlike |mean g|^2 it has no 1/n floor: with
    equal norms it is the mean pairwise cosine, an unbiased estimate of |E u|^2, whatever n.
    """
    if grads.dim() < 3:
        raise ValueError(f"expected gradients shaped (B, n, ...), got {tuple(grads.shape)}")
    g = grads.flatten(2)
    n = g.shape[1]
    if n < 2:
        raise ValueError(f"need at least 2 draws per input, got n={n}")
    energy = g.pow(2).sum(dim=(1, 2))
    cross = g.sum(dim=1).pow(2).sum(-1) - energy
    return cross / ((n - 1) * (energy + EPS**2))


REGULARIZERS: dict[str, Callable[[Tensor], Tensor]] = {
    "mrl": mean_resultant_length,
    "cos": mean_pairwise_cosine,
    "kappa": kappa_estimate,
    "det": neg_logdet,
}
#: Regularizers of the raw gradients rather than their unit directions (our extension: `eot_energy_share`).
RAW_REGULARIZERS: dict[str, Callable[[Tensor], Tensor]] = {"eot": eot_energy_share}


def graddiv_penalty(name: str, grads: Tensor, *, reduction: str = "mean", ridge: float = 1e-3) -> Tensor:
    """The GradDiv term `name` of raw per-draw gradients shaped (B, n, ...): batch mean (or per input with
    reduction="none")."""
    if name in RAW_REGULARIZERS:
        values = RAW_REGULARIZERS[name](grads)
    elif name in REGULARIZERS:
        u = unit_directions(grads)
        values = neg_logdet(u, ridge) if name == "det" else REGULARIZERS[name](u)
    else:
        raise ValueError(f"unknown GradDiv regularizer {name!r}: "
                         f"expected one of {sorted(REGULARIZERS) + sorted(RAW_REGULARIZERS)}")
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def draw_gradients(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    n_draws: int,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    create_graph: bool = False,
    retain_graph: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Input gradients of `n_draws` sample models per input, in ONE batched forward pass when the model draws per
    input (else one call per draw, `gradguard.draws.forward_replicas`).

    Each input is replicated n times, and every copy sees its own, independent sample model. Returns
    ``(grads (B, n, *x.shape[1:]), logits (B, n, C), loss (B, n))``; the logits and per-draw loss are those of the
    same forward pass(es), so a recipe reuses them for its base loss. With
    ``create_graph=True`` the gradients stay differentiable w.r.t. the parameters (double backprop);
    ``retain_graph=True`` keeps the forward graph for a later backward of the returned loss.

    Per-sample gradients come from the gradient of the summed loss, which is exact only when samples do not
    interact: BatchNorm in training mode couples them (use models without BatchNorm, or eval mode).
    """
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    loss_fn = loss_fn or (lambda logits, target: F.cross_entropy(logits, target, reduction="none"))
    b = x.shape[0]
    x_rep = x.detach().repeat_interleave(n_draws, dim=0).requires_grad_(True)
    y_rep = y.repeat_interleave(n_draws, dim=0)
    with torch.enable_grad():
        logits = forward_replicas(model, x_rep, n_draws)
        loss = loss_fn(logits, y_rep)
        (grad,) = torch.autograd.grad(
            loss.sum(), x_rep, create_graph=create_graph, retain_graph=create_graph or retain_graph
        )
    return (
        grad.view(b, n_draws, *x.shape[1:]),
        logits.view(b, n_draws, -1),
        loss.view(b, n_draws),
    )


# ---------------------------------------------------------------------------------------------------------------
# Directional statistics over a data set


@dataclass
class GradientStatistics:
    """How concentrated a randomized model's input-gradient directions are, averaged over a data set."""

    n_inputs: int
    n_draws: int
    dim: int
    mean_resultant_length: float
    kappa: float
    mean_pairwise_cosine: float
    #: R of isotropic random directions in this dimension, ~ 1/sqrt(n): the floor GradDiv can approach.
    mrl_isotropic: float
    #: k -> mean cosine between the EOT gradient over k draws and a fresh, independent single-draw gradient.
    eot_cosine: dict[int, float] = field(default_factory=dict)
    n_fresh: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["eot_cosine"] = {str(k): v for k, v in self.eot_cosine.items()}
        return d


def _isotropic_mrl(n: int, d: int) -> float:
    """E|mean of n uniform unit vectors in R^d| ~ sqrt(1/n) (exact second moment: E R^2 = 1/n)."""
    return math.sqrt(1.0 / n)


def gradient_statistics(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    n_draws: int = 10,
    ks: Sequence[int] = (1, 5, 10, 20, 50),
    *,
    n_fresh: int = 4,
    batch_size: int = 50,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> GradientStatistics:
    """Mean resultant length, kappa and mean pairwise cosine of `n_draws` gradient directions per input, and the
    cosine between the EOT proxy gradient over k draws and fresh single-draw gradients, for each k in `ks`.

    Runs in eval mode (randomness stays active in a randomized model) and restores the model's mode and flags.
    EOT averages raw gradients (as the attack does); each of its k draws is independent of the `n_fresh` fresh
    draws it is compared with, so the curve shows how well a k-draw attack predicts the next sample model.
    """
    ks = sorted({int(k) for k in ks})
    if ks and ks[0] < 1:
        raise ValueError(f"ks must be >= 1, got {ks}")
    k_max = ks[-1] if ks else 0
    sums = {"mrl": 0.0, "kappa": 0.0, "cos": 0.0}
    eot_sums = dict.fromkeys(ks, 0.0)
    count = 0
    dim = x[0].numel()
    with eval_mode(model):
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            g, _, _ = draw_gradients(model, xb, yb, n_draws, loss_fn=loss_fn)
            u = unit_directions(g)
            sums["mrl"] += mean_resultant_length(u).sum().item()
            sums["kappa"] += kappa_estimate(u).sum().item()
            sums["cos"] += mean_pairwise_cosine(u).sum().item() if n_draws >= 2 else float("nan")
            if ks:
                ge, _, _ = draw_gradients(model, xb, yb, k_max + n_fresh, loss_fn=loss_fn)
                ge = ge.flatten(2)
                fresh = unit_directions(ge[:, k_max:])  # (B, n_fresh, d)
                for k in ks:
                    eot = ge[:, :k].mean(dim=1, keepdim=True)
                    eot_u = eot / _safe_norm(eot, keepdim=True)
                    eot_sums[k] += (fresh * eot_u).sum(-1).mean(1).sum().item()
            count += xb.shape[0]
    return GradientStatistics(
        n_inputs=count,
        n_draws=n_draws,
        dim=dim,
        mean_resultant_length=sums["mrl"] / count,
        kappa=sums["kappa"] / count,
        mean_pairwise_cosine=sums["cos"] / count,
        mrl_isotropic=_isotropic_mrl(n_draws, dim),
        eot_cosine={k: eot_sums[k] / count for k in ks},
        n_fresh=n_fresh if ks else 0,
    )


# ---------------------------------------------------------------------------------------------------------------
# Transferability among sample models


@dataclass
class TransferMatrix:
    """success[i, j]: fraction of adversarial examples crafted on frozen draw i that fool frozen draw j, among the
    inputs draw j classifies correctly when clean. The diagonal is white-box success on a fixed sample model."""

    seeds: list[int]
    success: Tensor
    n_inputs: int

    @property
    def mean_off_diagonal(self) -> float:
        s = self.success.shape[0]
        if s < 2:
            return float("nan")
        mask = ~torch.eye(s, dtype=torch.bool)
        return self.success[mask].mean().item()

    @property
    def mean_diagonal(self) -> float:
        return self.success.diagonal().mean().item()

    def to_dict(self) -> dict[str, Any]:
        return {
            "seeds": self.seeds,
            "success": self.success.tolist(),
            "n_inputs": self.n_inputs,
            "mean_off_diagonal": self.mean_off_diagonal,
            "mean_diagonal": self.mean_diagonal,
        }


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)])


def transfer_matrix(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    s: int,
    attack_factory: Callable[[int], Callable[[nn.Module, Tensor, Tensor], Tensor]],
    *,
    seed: int = 0,
    batch_size: int = 500,
) -> TransferMatrix:
    """Freeze `s` draws of the randomized `model` (seeds seed..seed+s-1), craft an attack on each with
    `attack_factory(i)` (e.g. ``lambda i: PGD(eps=0.3, steps=40, seed=i)``) and evaluate it on every draw.

    Low off-diagonal success with a high diagonal means the sample models are individually breakable but their
    adversarial examples do not carry over: the transferability GradDiv aims to reduce.
    """
    from gradguard.models import freeze

    if s < 1:
        raise ValueError(f"s must be >= 1, got {s}")
    seeds = [seed + i for i in range(s)]
    was_training = model.training
    model.eval()
    try:
        frozen = [freeze(model, sd) for sd in seeds]
        for f in frozen:
            f.eval()
        clean_ok = [(_predict(f, x, batch_size) == y) for f in frozen]
        success = torch.zeros(s, s)
        for i, fi in enumerate(frozen):
            x_adv = attack_factory(i)(fi, x, y).detach()
            for j, fj in enumerate(frozen):
                fooled = _predict(fj, x_adv, batch_size) != y
                ok = clean_ok[j]
                success[i, j] = (fooled & ok).sum().float() / ok.sum().clamp_min(1).float()
    finally:
        model.train(was_training)
    return TransferMatrix(seeds=seeds, success=success, n_inputs=int(x.shape[0]))
