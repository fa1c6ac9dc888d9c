"""One convention across the API and the command line: argument names and order, and the default budget."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradguard.attacks import FGSM, Square
from gradguard.evaluation import evaluate
from gradguard.specs import default_eps
from gradguard.threat import L2Ball, LinfBall, threat_model


def test_threat_model_reads_like_an_attack():
    ball = threat_model(eps=0.3, norm="linf")
    assert isinstance(ball, LinfBall) and ball.eps == 0.3
    assert isinstance(threat_model(eps=0.1), LinfBall)  # norm defaults to linf, as in Attack
    assert isinstance(threat_model("l2", 1.0), L2Ball)  # the positional form still works


def test_threat_model_refuses_a_swapped_or_missing_argument():
    with pytest.raises(TypeError, match="norm comes first"):
        threat_model(0.3, "linf")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="eps is required"):
        threat_model("linf")


def test_square_budget_has_one_name():
    square = Square(eps=0.3, n_queries=50)
    with pytest.raises(AttributeError, match="n_queries"):
        square.steps  # noqa: B018
    assert "n_queries=50" in repr(square)


@pytest.mark.parametrize(("norm", "channels", "eps"), [("linf", 1, 0.3), ("linf", 3, 8 / 255), ("l2", 1, 2.0),
                                                       ("l2", 3, 0.5), ("Linf", 3, 8 / 255)])
def test_default_eps_per_norm_and_channels(norm, channels, eps):
    assert default_eps(norm, channels) == eps


def test_evaluate_defaults_to_the_command_lines_eps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    x, y = torch.rand(8, 3, 4, 4), torch.randint(0, 3, (8,))
    result = evaluate(model, x, y, attacks={"fgsm": lambda eps: FGSM(eps=eps)}, run_checks=False)
    assert result.eps == [pytest.approx(8 / 255)]
