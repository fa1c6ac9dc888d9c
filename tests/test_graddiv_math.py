"""GradDiv regularizers against hand computations on small vectors (pure tensor functions, no models)."""

from __future__ import annotations

import math

import pytest
import torch

from gradguard.graddiv import (
    REGULARIZERS,
    eot_energy_share,
    graddiv_penalty,
    kappa_estimate,
    mean_pairwise_cosine,
    mean_resultant_length,
    neg_logdet,
    unit_directions,
)


def _u(*rows: tuple[float, ...]) -> torch.Tensor:
    """One input (B=1) with the given unit directions as draws."""
    return torch.tensor([rows], dtype=torch.float64)


def test_orthogonal_pair_by_hand() -> None:
    u = _u((1.0, 0.0), (0.0, 1.0))
    r = math.sqrt(0.5)  # |(0.5, 0.5)|
    assert mean_resultant_length(u).item() == pytest.approx(r, abs=1e-9)
    assert mean_pairwise_cosine(u).item() == pytest.approx(0.0, abs=1e-12)
    assert kappa_estimate(u).item() == pytest.approx(r * (2 - 0.5) / (1 - 0.5), abs=1e-9)
    ridge = 1e-3
    assert neg_logdet(u, ridge).item() == pytest.approx(-2 * math.log(1 + ridge), abs=1e-12)


def test_three_draws_by_hand() -> None:
    u = _u((1.0, 0.0), (1.0, 0.0), (0.0, 1.0))
    # ordered pairs: (1,2),(2,1) -> 1; the four pairs with draw 3 -> 0; mean 2/6
    assert mean_pairwise_cosine(u).item() == pytest.approx(1 / 3, abs=1e-12)
    assert mean_resultant_length(u).item() == pytest.approx(math.sqrt(5) / 3, abs=1e-9)  # |(2/3, 1/3)|
    # Gram [[1,1,0],[1,1,0],[0,0,1]] + r I: det = ((1+r)^2 - 1)(1+r)
    r = 0.01
    assert neg_logdet(u, r).item() == pytest.approx(-math.log(((1 + r) ** 2 - 1) * (1 + r)), abs=1e-9)


def test_det_of_angled_pair_by_hand() -> None:
    u = _u((1.0, 0.0, 0.0), (0.6, 0.8, 0.0))
    r = 1e-3
    assert neg_logdet(u, r).item() == pytest.approx(-math.log((1 + r) ** 2 - 0.36), abs=1e-9)
    assert mean_pairwise_cosine(u).item() == pytest.approx(0.6, abs=1e-12)
    big_r = math.sqrt(1.6**2 + 0.8**2) / 2
    assert kappa_estimate(u).item() == pytest.approx(big_r * (3 - big_r**2) / (1 - big_r**2), abs=1e-9)


def test_cos_and_mrl_relation_on_random_directions() -> None:
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 7):
        grads = torch.randn(5, n, 11, generator=g, dtype=torch.float64)
        u = unit_directions(grads)
        r = mean_resultant_length(u)
        c = mean_pairwise_cosine(u)
        torch.testing.assert_close(r**2, 1 / n + (n - 1) / n * c, atol=1e-9, rtol=0)


def test_penalty_ignores_gradient_scale_and_shape() -> None:
    g = torch.Generator().manual_seed(1)
    grads = torch.randn(4, 3, 2, 5, 5, generator=g, dtype=torch.float64)
    scales = torch.rand(4, 3, 1, 1, 1, generator=g, dtype=torch.float64) * 10 + 0.1
    for name in REGULARIZERS:
        a = graddiv_penalty(name, grads, reduction="none")
        b = graddiv_penalty(name, grads * scales, reduction="none")
        assert a.shape == (4,)
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-7)
        assert graddiv_penalty(name, grads).item() == pytest.approx(a.mean().item())


def test_concentration_orders_parallel_above_scattered() -> None:
    parallel = torch.tensor([[[1.0, 2.0, 0.0]] * 4])
    scattered = torch.tensor([[[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]]])
    for name in REGULARIZERS:
        assert graddiv_penalty(name, parallel).item() > graddiv_penalty(name, scattered).item(), name
    assert graddiv_penalty("mrl", parallel).item() == pytest.approx(1.0, abs=1e-6)
    assert graddiv_penalty("mrl", scattered).item() == pytest.approx(0.0, abs=1e-6)
    assert graddiv_penalty("cos", scattered).item() == pytest.approx(-1 / 3, abs=1e-6)


def test_zero_and_parallel_gradients_stay_finite_with_finite_grads() -> None:
    grads = torch.zeros(2, 3, 4)
    grads[1] = torch.tensor([1.0, 0, 0, 0])  # identical draws: R = 1, kappa's pole
    grads.requires_grad_(True)
    for name in REGULARIZERS:
        value = graddiv_penalty(name, grads)
        (dg,) = torch.autograd.grad(value, grads)
        assert torch.isfinite(value), name
        assert torch.isfinite(dg).all(), name


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="unknown GradDiv regularizer 'nope'"):
        graddiv_penalty("nope", torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="at least 2 draws"):
        mean_pairwise_cosine(unit_directions(torch.randn(2, 1, 4)))
    with pytest.raises(ValueError, match=r"\(B, n, \.\.\.\)"):
        unit_directions(torch.randn(3, 4))


def test_eot_energy_share_by_hand_and_against_brute_force() -> None:
    same = torch.tensor([[[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]], dtype=torch.float64)
    assert eot_energy_share(same).item() == pytest.approx(1.0, abs=1e-12)
    opposite = torch.tensor([[[3.0, 0.0], [-3.0, 0.0]]], dtype=torch.float64)
    assert eot_energy_share(opposite).item() == pytest.approx(-1.0, abs=1e-12)  # the mean vanishes
    # a big draw weighs more: (2,0) and (0,1): cross terms 0; (4,0),(1,0): 2*4 / (1 * 17)
    assert eot_energy_share(torch.tensor([[[4.0, 0.0], [1.0, 0.0]]])).item() == pytest.approx(8 / 17, rel=1e-6)
    g = torch.randn(3, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    brute = torch.stack([
        sum(g[b, i] @ g[b, j] for i in range(5) for j in range(5) if i != j) / (4 * g[b].pow(2).sum())
        for b in range(3)])
    torch.testing.assert_close(eot_energy_share(g), brute)
    u = unit_directions(g)  # equal norms: the mean pairwise cosine, an unbiased |E u|^2 (no 1/n floor)
    torch.testing.assert_close(eot_energy_share(u), mean_pairwise_cosine(u))
    assert graddiv_penalty("eot", g).item() == pytest.approx(brute.mean().item(), rel=1e-9)
    z = torch.zeros(2, 4, 3, requires_grad=True)
    graddiv_penalty("eot", z).backward()
    assert torch.isfinite(z.grad).all()
    with pytest.raises(ValueError, match="unknown GradDiv regularizer"):
        graddiv_penalty("nope", g)
