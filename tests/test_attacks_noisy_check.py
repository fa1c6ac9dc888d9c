"""With EOT the 'already fooled?' check is a noisy estimate: attacks must not skip points on its word alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradguard.attacks import APGD, APGDT, PGD, Square


class FlipsOnFirstCall(nn.Module):
    """A linear model (2 classes, or 4 for APGD-T) whose very first forward pass answers wrongly, like one unlucky
    noisy draw."""

    def __init__(self, n_classes: int = 2) -> None:
        super().__init__()
        self.calls = 0
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        s = x.flatten(1).mean(1, keepdim=True) - 0.5
        logits = torch.cat([-s, s, -2 * s, -3 * s][: self.n_classes], dim=1)
        if self.calls == 1:
            return logits[:, [1, 0, *range(2, self.n_classes)]]
        return logits


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.full((4, 1, 4, 4), 0.55)  # class 1, margin 0.05: an eps of 0.2 crosses it
    return x, torch.ones(4, dtype=torch.long)


@pytest.mark.parametrize("make", [
    lambda eot: PGD(eps=0.2, steps=5, eot=eot),
    lambda eot: APGD(eps=0.2, steps=5, eot=eot),
    lambda eot: Square(eps=0.2, n_queries=20, eot=eot),
])
def test_noisy_initial_check_does_not_exempt_points(make):
    x, y = _data()
    single = make(1)(FlipsOnFirstCall(), x, y)
    assert torch.equal(single, x)  # one deterministic draw: a fooled point needs no work (documented behaviour)
    x_adv = make(3)(FlipsOnFirstCall(), x, y)
    assert not (x_adv == x).flatten(1).all(1).any()  # with EOT every point is attacked, none is exempt


def test_apgdt_noisy_initial_check_does_not_keep_the_clean_point():
    x, y = _data()
    single = APGDT(eps=0.2, steps=5, n_target_classes=3)(FlipsOnFirstCall(4), x, y)
    assert torch.equal(single, x)
    x_adv = APGDT(eps=0.2, steps=5, n_target_classes=3, eot=3)(FlipsOnFirstCall(4), x, y)
    assert not (x_adv == x).flatten(1).all(1).any()


class AlwaysFooledLouderLater(nn.Module):
    """Predicts class 0 everywhere, more confidently on every call, with a wiggly dependence on the input: every
    point any run finds is a success, and a later run's points carry a higher loss for label 1."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        s = torch.sin(40 * x).flatten(1).mean(1, keepdim=True)
        return torch.cat([self.calls * (1.0 + 0.1 * s), torch.zeros_like(s)], dim=1)


def test_apgd_under_eot_keeps_the_strongest_success_across_restarts():
    """Under EOT every success is a noisy verdict, so a later restart's higher-loss success must replace an earlier
    one (PGD's rule without early stop), not be shut out by it."""
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.ones(4, dtype=torch.long)
    one = APGD(eps=0.2, steps=3, eot=2, restarts=1)(AlwaysFooledLouderLater(), x, y)
    two = APGD(eps=0.2, steps=3, eot=2, restarts=2)(AlwaysFooledLouderLater(), x, y)
    assert not (one == two).flatten(1).all(1).any()  # every point comes from the second, louder restart


class SucceedsThenLouderFailure(nn.Module):
    """2 classes, label 1. Until `switch` calls every draw is wrong by a small margin (a success of loss 0.5); after
    it, draws come in threes (the EOT replicas of one point): one wrong by 10, two right by 3. Their mean margin is
    higher (1.33) but the 3-draw averaged prediction is right: a louder failure."""

    def __init__(self, switch: int) -> None:
        super().__init__()
        self.calls, self.switch = 0, switch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        n = x.shape[0]
        if self.calls <= self.switch:
            margin = torch.full((n,), 0.5)
        else:
            margin = torch.tensor([10.0, -3.0, -3.0]).repeat(n // 3 + 1)[:n]
        return torch.stack([margin, torch.zeros(n)], dim=1) + 0 * x.flatten(1)[:, :1]


def test_square_under_eot_never_trades_a_success_for_a_louder_failure():
    x = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    y = torch.ones(4, dtype=torch.long)
    probe = SucceedsThenLouderFailure(switch=10**9)
    one = Square(eps=0.2, n_queries=5, eot=3)(probe, x, y)
    two = Square(eps=0.2, n_queries=5, eot=3, restarts=2)(SucceedsThenLouderFailure(switch=probe.calls), x, y)
    assert torch.equal(one, two)  # the second restart's points fail: the first restart's successes stand
