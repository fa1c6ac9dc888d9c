"""Gradient-masking checks in the spirit of AutoAttack's `checks.py`, computed with every evaluation.

A robust-looking number can come from a model that hides its gradients rather than from a robust model. Each check
below measures one symptom and turns it into a `Flag` (name, triggered, one-line message, the numbers). Measuring
and flagging are split so that a distributed run can sum the counts of all ranks before deciding.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradguard.evaluation.predict import eval_mode, model_device, predict_labels
from gradguard.evaluation.result import Flag
from gradguard.threat import normalize_norm

__all__ = [
    "FLAG_NAMES",
    "randomness_flag",
    "gradient_free_flag",
    "count_bad_gradients",
    "zero_gradient_flag",
    "monotonic_flag",
    "large_eps",
    "large_eps_robust_count",
    "large_eps_flag",
]

FLAG_NAMES = (
    "randomness_without_eot",
    "gradient_free_stronger",
    "zero_gradients",
    "non_monotonic_eps",
    "large_eps_not_zero",
)


def randomness_flag(randomized: bool, max_diff: float, k: int, m: int, draws: str | None = None) -> Flag:
    """Outputs differ across two forward passes of the same input, yet gradient attacks used no EOT (k == 1).

    `draws` is how the model samples (`gradguard.draws.draw_mode`): for a model that draws once per forward call
    the k (and m) draws were k forward calls, and the message says so."""
    triggered = randomized and k <= 1
    if triggered:
        msg = (
            f"the model is randomized (outputs differ by up to {max_diff:.3g} across two passes) but attacks used "
            f"k={k} EOT draws: use the 'rand' suite or k >= 20"
        )
    elif randomized:
        msg = f"randomized model evaluated with EOT over k={k} draws and m={m}-draw predictions"
        if draws == "per-call":
            msg += " (the model draws once per forward call, so each draw was its own forward call)"
    else:
        msg = "deterministic model (two forward passes agree)"
    return Flag("randomness_without_eot", triggered, msg, {"randomized": randomized, "max_output_diff": max_diff,
                                                             "k": k, "m": m, "draws": draws})


def gradient_free_flag(
    success: dict[str, Tensor],
    attacked: dict[str, Tensor],
    kinds: dict[str, str],
    clean_correct: Tensor,
    *,
    threshold: float = 0.002,
) -> Flag:
    """A gradient-free attack breaks points that every white-box attack was run on and failed on.

    Triggers when, at some eps, such points exceed `threshold` of all points (AutoAttack's `check_square_sr`
    uses 0.2 points of accuracy). Shapes: (E, N) per attack.
    """
    free = [n for n, kind in kinds.items() if kind == "gradient-free"]
    white = [n for n, kind in kinds.items() if kind != "gradient-free"]
    if not free or not white:
        missing = "gradient-free" if not free else "white-box"
        return Flag("gradient_free_stronger", False, f"not applicable: no {missing} attack in the ensemble",
                    {"share": [], "threshold": threshold})
    n = clean_correct.numel()
    white_tried = torch.stack([attacked[w] for w in white]).all(0)
    white_failed = ~torch.stack([success[w] for w in white]).any(0)
    free_won = torch.stack([success[f] & attacked[f] for f in free]).any(0)
    extra = (free_won & white_tried & white_failed & clean_correct).sum(1)
    share = [float(v) / max(n, 1) for v in extra.tolist()]
    worst = max(share) if share else 0.0
    triggered = worst > threshold
    if triggered:
        msg = (f"{'/'.join(free)} broke {100 * worst:.2f}% of points on which every white-box attack failed: "
               f"gradients are likely masked; try more steps/restarts, EOT, BPDA or an adaptive attack")
    else:
        msg = f"gradient-free attacks broke at most {100 * worst:.2f}% of the points the white-box ones missed"
    return Flag("gradient_free_stronger", triggered, msg,
                {"share": share, "n_extra": [int(v) for v in extra.tolist()], "threshold": threshold})


def count_bad_gradients(
    model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 256
) -> tuple[int, int, int]:
    """Per-sample input gradients of the cross-entropy (one draw): counts of (all-zero, non-finite, checked).

    Gradients are taken with respect to the input only, so parameter `.grad` fields are left untouched.
    """
    device = model_device(model)
    zero = nonfinite = 0
    with eval_mode(model), torch.enable_grad():
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(device).clone().requires_grad_(True)
            yb = y[start : start + batch_size].to(device)
            loss = F.cross_entropy(model(xb).float(), yb, reduction="sum")
            (grad,) = torch.autograd.grad(loss, xb, allow_unused=True)
            if grad is None:  # the output does not depend on the input through autograd at all
                zero += len(xb)
                continue
            flat = grad.detach().flatten(1)
            bad = ~torch.isfinite(flat).all(1)
            nonfinite += int(bad.sum())
            zero += int(((flat == 0).all(1) & ~bad).sum())
    return zero, nonfinite, len(x)


def zero_gradient_flag(zero: int, nonfinite: int, checked: int, *, threshold: float = 0.01) -> Flag:
    """Zero or non-finite input gradients on more than `threshold` of the checked inputs (or any non-finite)."""
    share = (zero + nonfinite) / max(checked, 1)
    triggered = share > threshold or nonfinite > 0
    if triggered:
        msg = (f"{zero} of {checked} inputs have an all-zero input gradient and {nonfinite} a non-finite one: "
               f"gradient attacks cannot work there (shattered/obfuscated gradients?); consider BPDA")
    else:
        msg = f"input gradients are finite and non-zero on {checked - zero - nonfinite} of {checked} inputs"
    return Flag("zero_gradients", triggered, msg, {"zero": zero, "nonfinite": nonfinite, "checked": checked,
                                                     "share": share, "threshold": threshold})


def monotonic_flag(
    eps: list[float], worst: list[float], per_attack: dict[str, list[float | None]], *, tol: float = 0.0
) -> Flag:
    """Robust accuracy rises with eps somewhere (worst case, or any attack's own accuracy where it is known).

    A larger ball contains the smaller one, so a correct attack can only do better with more budget.
    """
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    rises: list[dict[str, Any]] = []
    curves: dict[str, list[float | None]] = {"worst-case": list(worst), **per_attack}
    for name, curve in curves.items():
        for a, b in zip(order, order[1:], strict=False):
            va, vb = curve[a], curve[b]
            if va is not None and vb is not None and vb > va + tol:
                rises.append({"curve": name, "eps": [eps[a], eps[b]], "accuracy": [va, vb]})
    triggered = bool(rises)
    if triggered:
        r = rises[0]
        msg = (f"{r['curve']} robust accuracy rises from {100 * r['accuracy'][0]:.2f}% at eps={r['eps'][0]:g} "
               f"to {100 * r['accuracy'][1]:.2f}% at eps={r['eps'][1]:g}: the attack is not converging (masking?)")
    elif len(eps) < 2:
        msg = "only one eps: monotonicity not testable"
    else:
        msg = "robust accuracy is non-increasing in eps"
    return Flag("non_monotonic_eps", triggered, msg, {"rises": rises, "tol": tol})


def large_eps(norm: str, shape: tuple[int, ...]) -> float:
    """An eps whose ball contains the uniform grey image from any input: no classifier can stay accurate."""
    if normalize_norm(norm) == "linf":
        return 0.5
    return 0.5 * math.sqrt(math.prod(shape))


def large_eps_robust_count(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    norm: str,
    eps: float,
    m: int,
    k: int,
    steps: int,
    seed: int,
    batch_size: int,
    randomized: bool,
) -> tuple[int, int]:
    """PGD at a huge eps on (x, y); returns (points still m-draw correct, points attacked)."""
    from gradguard.attacks import PGD

    if len(x) == 0:
        return 0, 0
    attack = PGD(eps=eps, norm=norm, steps=steps, alpha=2.5 * eps / steps, random_start=True, eot=k, seed=seed)
    robust = 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        device = model_device(model)
        x_adv = attack(model, xb.to(device), yb.to(device)).detach()
        pred = predict_labels(model, x_adv, m, batch_size, randomized=randomized)
        robust += int((pred == yb.cpu()).sum())
    return robust, len(x)


def large_eps_flag(robust: int, checked: int, eps: float, norm: str, *, threshold: float = 0.05) -> Flag:
    """PGD with an eps that reaches the grey image leaves more than `threshold` of the points correct."""
    acc = robust / checked if checked else float("nan")
    triggered = checked > 0 and acc > threshold
    if checked == 0:
        msg = "not run: no clean-correct points to attack"
    elif triggered:
        msg = (f"PGD at {norm} eps={eps:g} (a ball that reaches the grey image) leaves {100 * acc:.1f}% accuracy: "
               f"the attack is failing, not the model succeeding")
    else:
        msg = f"PGD at {norm} eps={eps:g} drives accuracy to {100 * acc:.1f}%"
    return Flag("large_eps_not_zero", triggered, msg, {"eps": eps, "norm": norm, "accuracy": acc,
                                                         "checked": checked, "threshold": threshold})
