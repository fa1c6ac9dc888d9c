"""One meaning per norm: every accepted spelling of a norm runs exactly what the canonical spelling runs.

`Square(norm="Linf")` once compared the raw string with "linf" and silently ran the L2 attack; these tests run every
attack under every accepted spelling and demand bit-identical output to the canonical one, same seed.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from gradguard.attacks import APGD, APGDT, BPDA, CWL2, FGSM, PGD, Attack, CWLinf, Square, Transfer
from gradguard.evaluation.suites import build_suite
from gradguard.threat import normalize_norm, threat_model

SPELLINGS = {
    "linf": ["linf", "Linf", "LINF", "inf", "INF", "L-inf", "l_inf", "L inf", float("inf")],
    "l2": ["l2", "L2", "2", "L-2", "l_2", 2, 2.0],
}
CASES = [(canon, s) for canon, spellings in SPELLINGS.items() for s in spellings[1:]]


class Round(nn.Module):
    """A non-differentiable step for BPDA to bypass."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x * 8) / 8


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        Round(), nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)
    ).eval()


def batch() -> tuple[Tensor, Tensor]:
    """Inputs labelled by the net itself, so that every attack has work to do."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(6, 1, 6, 6, generator=g)
    with torch.no_grad():
        return x, small_net()(x).argmax(1)


def eps_for(canon: str) -> float:
    return 0.1 if canon == "linf" else 1.0


ATTACKS: dict[str, Callable[[object, float], Attack]] = {
    "fgsm": lambda norm, eps: FGSM(eps=eps, norm=norm),
    "pgd": lambda norm, eps: PGD(eps=eps, norm=norm, steps=5, alpha=eps / 4),
    "apgd-ce": lambda norm, eps: APGD(eps=eps, norm=norm, steps=6, loss="ce"),
    "apgd-dlr": lambda norm, eps: APGD(eps=eps, norm=norm, steps=6, loss="dlr"),
    "apgd-t": lambda norm, eps: APGDT(eps=eps, norm=norm, steps=6, n_target_classes=2),
    "square": lambda norm, eps: Square(eps=eps, norm=norm, n_queries=30),
    "transfer": lambda norm, eps: Transfer(attack=PGD(eps=eps, norm=norm, steps=4), surrogate=small_net()),
    "bpda": lambda norm, eps: BPDA(attack=PGD(eps=eps, norm=norm, steps=4), modules=Round),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize(("canon", "spelling"), CASES, ids=[f"{c}-{s!r}" for c, s in CASES])
def test_every_spelling_runs_the_canonical_attack(name: str, canon: str, spelling: object) -> None:
    model, (x, y) = small_net(), batch()
    eps = eps_for(canon)
    want = ATTACKS[name](canon, eps)(model, x, y)
    atk = ATTACKS[name](spelling, eps)
    assert atk.norm == canon
    assert torch.equal(atk(model, x, y), want)


@pytest.mark.parametrize("spelling", SPELLINGS["linf"])
def test_cw_linf_under_every_spelling(spelling: object) -> None:
    model, (x, y) = small_net(), batch()
    want = CWLinf(eps=0.1, norm="linf", steps=5)(model, x, y)
    assert torch.equal(CWLinf(eps=0.1, norm=spelling, steps=5)(model, x, y), want)


@pytest.mark.parametrize("spelling", SPELLINGS["l2"])
def test_cw_l2_under_every_spelling(spelling: object) -> None:
    model, (x, y) = small_net(), batch()
    want = CWL2(steps=5, binary_steps=2)(model, x, y)
    assert torch.equal(CWL2(norm=spelling, steps=5, binary_steps=2)(model, x, y), want)


def test_square_with_a_capitalised_linf_stays_an_linf_attack() -> None:
    """The reported bug: "Linf" ran the L2 proposals (mass moved between windows, not +-eps stripes)."""
    model, (x, y) = small_net(), batch()
    x_adv = Square(eps=0.1, norm="Linf", n_queries=30)(model, x, y)
    step = (x_adv - x).abs()
    moved = step > 1e-6
    # L-inf Square only ever puts pixels at the faces of the ball (or the box): every changed pixel moved by eps
    # unless clamped to 0 or 1. The L2 attack spreads small, unequal changes.
    at_face = (step - 0.1).abs() < 1e-5
    clamped = (x_adv == 0) | (x_adv == 1)
    assert bool(moved.any())
    assert bool((at_face | clamped)[moved].all())


def test_assigning_a_spelling_later_is_normalised_too() -> None:
    atk = PGD(eps=0.1, norm="l2")
    atk.norm = "Linf"  # type: ignore[assignment]
    assert atk.norm == "linf"
    assert atk.threat.norm == "linf"


def test_threat_model_and_suites_normalise() -> None:
    for canon, spellings in SPELLINGS.items():
        for s in spellings:
            assert normalize_norm(s) == canon
            assert threat_model(s, 0.5).norm == canon  # type: ignore[arg-type]
    suite = build_suite("standard", norm="Linf", quick=True)
    assert {spec.kwargs["norm"] for spec in suite.values()} == {"linf"}


@pytest.mark.parametrize("bad", ["l1", "l-infinity", "", "L3", "infty", None, 1, True])
def test_unknown_spellings_raise_a_clear_error(bad: object) -> None:
    with pytest.raises(ValueError, match="unknown norm"):
        normalize_norm(bad)
    with pytest.raises(ValueError, match="unknown norm"):
        PGD(eps=0.1, norm=bad)  # type: ignore[arg-type]
