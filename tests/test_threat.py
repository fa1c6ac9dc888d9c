"""Threat models: projections land in ball and box, random starts are inside, steps go the steepest way."""

from __future__ import annotations

import pytest
import torch

from gradguard.threat import L2Ball, LinfBall, threat_model


def _cases(n_cases: int = 25):
    """Random (x, x_adv, eps) triples of varied shapes and scales, from a fixed local generator."""
    g = torch.Generator().manual_seed(1234)
    shapes = [(4, 1, 8, 8), (3, 3, 5, 5), (6, 10), (2, 2, 4, 4)]
    for i in range(n_cases):
        shape = shapes[i % len(shapes)]
        x = torch.rand(shape, generator=g)
        scale = [0.01, 0.3, 3.0, 30.0][i % 4]
        x_adv = x + scale * torch.randn(shape, generator=g)
        eps = float(torch.rand((), generator=g)) * 0.9 + 0.01
        yield x, x_adv, eps


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_lands_in_ball_and_box(norm: str) -> None:
    for x, x_adv, eps in _cases():
        tm = threat_model(norm, eps if norm == "linf" else eps * 5)
        p = tm.project(x_adv, x)
        assert tm.contains(p, x, tol=1e-5).all()
        assert (p >= 0).all() and (p <= 1).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_is_identity_inside(norm: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 6, 6, generator=g) * 0.5 + 0.25
    tm = threat_model(norm, 0.1)
    inside = x + 0.01 * (2 * torch.rand(x.shape, generator=g) - 1) / (1 if norm == "linf" else 10)
    assert tm.contains(inside, x).all()
    torch.testing.assert_close(tm.project(inside, x), inside)


def test_linf_projection_is_the_nearest_point() -> None:
    # For linf + box the feasible set is a box, so coordinate-wise clamping is the exact Euclidean projection.
    g = torch.Generator().manual_seed(5)
    x = torch.rand(3, 7, generator=g)
    x_adv = x + torch.randn(3, 7, generator=g)
    tm = LinfBall(0.2)
    p = tm.project(x_adv, x)
    lo, hi = (x - 0.2).clamp(0, 1), (x + 0.2).clamp(0, 1)
    torch.testing.assert_close(p, torch.min(torch.max(x_adv, lo), hi))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_init_inside(norm: str) -> None:
    for x, _, eps in _cases(12):
        tm = threat_model(norm, eps)
        g = torch.Generator().manual_seed(7)
        start = tm.random_init(x, g)
        assert tm.contains(start, x, tol=1e-5).all()
        assert not torch.equal(start, x)


def test_random_init_uses_only_the_given_generator() -> None:
    x = torch.rand(4, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    a = L2Ball(0.5).random_init(x, torch.Generator().manual_seed(3))
    b = L2Ball(0.5).random_init(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())


def test_steps_are_steepest_ascent() -> None:
    grad = torch.tensor([[3.0, -4.0, 0.0]])
    x = torch.zeros(1, 3)
    torch.testing.assert_close(LinfBall(0.1).step(x, grad, 0.5), torch.tensor([[0.5, -0.5, 0.0]]))
    torch.testing.assert_close(L2Ball(1.0).step(x, grad, 0.5), torch.tensor([[0.3, -0.4, 0.0]]))


def test_distance_and_bad_arguments() -> None:
    x = torch.zeros(2, 4)
    d = torch.tensor([[0.1, -0.3, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(LinfBall(0.3).distance(x + d, x), torch.tensor([0.3, 0.0]))
    torch.testing.assert_close(L2Ball(1.0).distance(x + d, x), torch.tensor([0.1**2 + 0.3**2, 0.0]).sqrt())
    with pytest.raises(ValueError, match="unknown norm"):
        threat_model("l1", 0.1)
    with pytest.raises(ValueError, match="eps"):
        threat_model("linf", 2.0)
    assert isinstance(threat_model("Linf", 0.1), LinfBall) and isinstance(threat_model("L2", 1.0), L2Ball)
