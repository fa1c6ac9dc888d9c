"""Evaluating a network that purifies its input with its own gradient (SGN's active inference): real or masking?

A test-time step that follows the input gradient makes the network's gradient a second-order, possibly shattered
quantity: attacks that differentiate through it may fail for that reason alone. So the suite gets two attacks that
go around the purifier, placed after the direct white-box attacks and before Square:

- ``bpda-apgd-ce``: APGD-CE with the purifier replaced by the identity on the backward pass (Athalye et al. 2018),
- ``transfer-apgd-ce``: APGD-CE crafted on the plain backbone (no purifier), scored on the active network,

and the ``purifier_bypass`` flag says whether they, or the gradient-free Square, broke points that the direct
attacks could not. In the chained protocol every point they break is one the direct attacks missed, so their share
is the gain that gradient masking explains; the worst case over all attacks is the honest robust accuracy.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gradguard.evaluation.predict import eval_mode, model_device
from gradguard.evaluation.protocol import evaluate
from gradguard.evaluation.result import EvalResult, Flag
from gradguard.evaluation.suites import build_suite

__all__ = ["BYPASS_ATTACKS", "bypass_attacks", "bypass_flag", "evaluate_with_bypass", "purifier_of"]

BYPASS_ATTACKS = ("bpda-apgd-ce", "transfer-apgd-ce")
_THRESHOLD = 0.002  # the gradient-free check's threshold (AutoAttack's 0.2 points)


def purifier_of(model: nn.Module) -> tuple[type[nn.Module], nn.Module] | None:
    """(purifier class, plain backbone) of an active SGN, None for any other network."""
    from gradguard.models.sgn_active import ActiveSelfGradientNetwork, SelfGradientPurifier

    if isinstance(model, ActiveSelfGradientNetwork):
        return SelfGradientPurifier, model.backbone
    return None


def bypass_attacks(model: nn.Module, suite: str, *, norm: str = "linf", quick: bool = False,
                   num_classes: int = 10) -> dict[str, Any]:
    """Suite `suite` with the two bypass attacks inserted before its gradient-free Square (factories of eps)."""
    from gradguard.attacks import APGD, BPDA, Transfer

    found = purifier_of(model)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no self-gradient purifier to bypass")
    purifier, backbone = found
    base = build_suite(suite, norm=norm, quick=quick, num_classes=num_classes)
    steps = 20 if quick else 100

    def apgd(eps: float) -> APGD:
        return APGD(eps=eps, norm=norm, steps=steps, restarts=1, loss="ce")

    extra: dict[str, Any] = {
        "bpda-apgd-ce": lambda eps: BPDA(attack=apgd(eps), modules=purifier),
        "transfer-apgd-ce": lambda eps: Transfer(attack=apgd(eps), surrogate=backbone),
    }
    direct = {n: s for n, s in base.items() if s.kind != "gradient-free"}
    free = {n: s for n, s in base.items() if s.kind == "gradient-free"}
    return {**direct, **extra, **free}


def bypass_flag(result: EvalResult, direct: list[str]) -> Flag:
    """Did the attacks after the direct white-box ones (bypass attacks, Square) break points those missed?"""
    after = [n for n in result.attacks if n not in direct]
    extra = torch.zeros(len(result.eps), dtype=torch.long)
    by_attack: dict[str, list[int]] = {}
    for name in after:
        rec = result.attacks[name]
        broke = (rec.success & rec.attacked & result.clean_correct).sum(1)
        by_attack[name] = [int(v) for v in broke]
        extra += broke
    share = [float(v) / max(result.n, 1) for v in extra.tolist()]
    worst = max(share) if share else 0.0
    triggered = worst > _THRESHOLD
    who = ", ".join(f"{name} {max(counts, default=0)}" for name, counts in by_attack.items())
    if triggered:
        msg = (f"attacks that do not differentiate through the purifier broke {100 * worst:.2f}% of the points the "
               f"direct white-box attacks missed ({who}): that much of the direct number is gradient masking (the "
               f"worst case counts them)")
    else:
        msg = (f"attacks that do not differentiate through the purifier broke at most {100 * worst:.2f}% more "
               f"points ({who}): the robust accuracy is not explained by masked gradients through the purifier")
    return Flag("purifier_bypass", triggered, msg, {"share": share, "n_extra": by_attack, "threshold": _THRESHOLD})


def evaluate_with_bypass(model: nn.Module, x: Tensor, y: Tensor, suite: str = "standard", eps: Any = None, *,
                         norm: str = "linf", quick: bool = False, **kwargs: Any) -> EvalResult:
    """`evaluate` with `bypass_attacks` in the chained protocol, plus the ``purifier_bypass`` flag.

    The result's suite reads ``"<suite>+bypass"``; every other keyword goes to `evaluate`."""
    if kwargs.get("mode", "chained") != "chained":
        raise ValueError("evaluate_with_bypass measures what the bypass attacks add: it needs mode='chained'")
    if purifier_of(model) is None:
        raise ValueError(f"{type(model).__name__} has no self-gradient purifier to bypass")
    with torch.no_grad(), eval_mode(model):  # a probe, not a training forward: BatchNorm statistics stay put
        num_classes = int(model(x[:1].to(model_device(model))).shape[1])
    attacks = bypass_attacks(model, suite, norm=norm, quick=quick, num_classes=num_classes)
    result = evaluate(model, x, y, attacks, eps, norm=norm, quick=quick, **kwargs)
    direct = [n for n in attacks if n not in BYPASS_ATTACKS and result.attacks[n].kind != "gradient-free"]
    result.suite = f"{suite.lower()}+bypass"
    result.meta["quick"] = quick
    result.flags.append(bypass_flag(result, direct))
    return result
