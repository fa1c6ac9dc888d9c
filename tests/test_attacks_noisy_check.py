"""With EOT the 'already fooled?' check is a noisy estimate: attacks must not skip points on its word alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradguard.attacks import APGD, PGD, Square


class FlipsOnFirstCall(nn.Module):
    """A 2-class linear model whose very first forward pass answers wrongly, like one unlucky noisy draw."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        s = x.flatten(1).mean(1, keepdim=True) - 0.5
        logits = torch.cat([-s, s], dim=1)
        return -logits if self.calls == 1 else logits


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
