"""FAB and FAB-T: the box-constrained projection against a generic solver, closed-form distances on linear models,
the attack contract, and a cross-check against torchattacks 3.5.1's FAB on the trained digits net."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize
from torch import Tensor, nn

from gradguard.attacks import FAB, FABT
from gradguard.attacks.fab import project_to_hyperplane
from test_attacks import Quirky, analytic_distance, fooled, inputs, linear_model
from test_attacks_trained import _train, robust_acc

SHAPE = (1, 6, 6)


@pytest.fixture(autouse=True)
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _dist(x_adv: Tensor, x: Tensor, norm: str) -> Tensor:
    d = (x_adv - x).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


# ------------------------------------------------------------------------------------------- the projection
def _reference_projection(t: np.ndarray, w: np.ndarray, b: float, norm: str) -> np.ndarray:
    """min ||d|| s.t. <w, t + d> = b, 0 <= t + d <= 1, by a generic solver (LP for L-inf, SLSQP for L2)."""
    n = t.size
    if norm == "linf":  # variables (d, s): minimise s with -s <= d_i <= s
        c = np.r_[np.zeros(n), 1.0]
        a_ub = np.block([[np.eye(n), -np.ones((n, 1))], [-np.eye(n), -np.ones((n, 1))]])
        res = linprog(c, A_ub=a_ub, b_ub=np.zeros(2 * n), A_eq=np.r_[w, 0.0][None], b_eq=[b - w @ t],
                      bounds=[(-ti, 1 - ti) for ti in t] + [(0, None)], method="highs")
        return res.x[:n]
    res = minimize(lambda d: d @ d, np.zeros(n), jac=lambda d: 2 * d, method="SLSQP",
                   constraints=[{"type": "eq", "fun": lambda d: w @ (t + d) - b, "jac": lambda d: w}],
                   bounds=[(-ti, 1 - ti) for ti in t], options={"ftol": 1e-12, "maxiter": 500})
    return res.x


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_matches_a_generic_solver_with_the_box_active(norm: str) -> None:
    """Planes through a random point of the box, far enough from `t` that many coordinates hit a face."""
    g = torch.Generator().manual_seed(0)
    n, d = 12, 10
    t = torch.rand(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = (w * torch.rand(n, d, generator=g, dtype=torch.float64)).sum(1)
    ours = project_to_hyperplane(t, w, b, norm)
    clipped = 0
    for i in range(n):
        ref = _reference_projection(t[i].numpy(), w[i].numpy(), float(b[i]), norm)
        size = np.abs(ref).max() if norm == "linf" else np.linalg.norm(ref)
        ours_size = float(ours[i].abs().max() if norm == "linf" else ours[i].norm())
        assert ours_size == pytest.approx(size, rel=1e-5, abs=1e-8), i
        clipped += int(((t[i] + ours[i] < 1e-9) | (t[i] + ours[i] > 1 - 1e-9)).sum())
    assert torch.allclose((w * (t + ours)).sum(1), b, atol=1e-8)  # on the plane
    assert (t + ours >= -1e-12).all() and (t + ours <= 1 + 1e-12).all()  # in the box
    assert clipped > 0, "the box never bound: the test would not tell a box-aware projection from a plain one"


def test_projection_out_of_reach_goes_to_the_nearest_corner() -> None:
    t = torch.full((1, 4), 0.5)
    w = torch.ones(1, 4)
    d = project_to_hyperplane(t, w, torch.tensor([100.0]), "l2")
    assert torch.allclose(t + d, torch.ones(1, 4))


# ------------------------------------------------------------------------------------ closed form, linear
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_one_step_lands_eta_times_the_analytic_distance(norm: str) -> None:
    """On a linear classifier the linearisation is exact: the first step reaches the boundary times eta."""
    model = linear_model(5, seed=3)
    x, y = inputs(model)
    attack = FAB(norm=norm, steps=1)
    x_adv = attack(model, x, y)
    n = x.shape[0]  # one gradient per class, one forward for the clean check and one after the step
    assert (attack.last_grad_evals, attack.last_forward_evals) == (5 * n, 2 * n)
    ratio = _dist(x_adv, x, norm) / analytic_distance(model, x, y, norm)
    assert fooled(model, x_adv, y).all()
    assert torch.allclose(ratio, torch.full_like(ratio, 1.05), atol=1e-4), ratio


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_t_finds_the_analytic_distance(norm: str) -> None:
    """FAB-T over every target converges to within 1% of the closed form; the final search to 0.01%."""
    model = linear_model(5, seed=3)
    x, y = inputs(model)
    exact = analytic_distance(model, x, y, norm)
    ratio = _dist(FABT(norm=norm, n_target_classes=4)(model, x, y), x, norm) / exact
    assert (ratio >= 1 - 1e-5).all() and (ratio <= 1.01).all(), ratio
    for eps in (None, 1.0):  # with a large eps every point is done after one target: the search must still run
        searched = FABT(eps=eps, norm=norm, n_target_classes=4, final_search=20)(model, x, y)
        assert fooled(model, searched, y).all()
        ratio = _dist(searched, x, norm) / exact
        assert (ratio >= 1 - 1e-5).all() and (ratio <= 1.0001).all(), (eps, ratio)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_with_eps_breaks_exactly_the_points_inside_the_ball(norm: str) -> None:
    model = linear_model(5, seed=3)
    x, y = inputs(model, n=16)
    exact = analytic_distance(model, x, y, norm)
    eps = float(exact.median())
    attack = FABT(eps=eps, norm=norm, n_target_classes=4)
    x_adv = attack(model, x, y)
    assert bool((_dist(x_adv, x, norm) <= eps + 1e-6).all()) and (x_adv >= 0).all() and (x_adv <= 1).all()
    clear = (exact < eps / 1.02) | (exact > eps * 1.02)
    assert torch.equal(fooled(model, x_adv, y)[clear], (exact < eps)[clear])


def test_user_targeted_fab_reaches_the_target() -> None:
    model = linear_model(5, seed=3)
    x, y = inputs(model)
    target = (y + 2) % 5
    x_adv = FAB(norm="l2", targeted=True)(model, x, y, target=target)
    with torch.no_grad():
        assert torch.equal(model(x_adv).argmax(1), target)


# ------------------------------------------------------------------------------------------- the contract
ATTACKS = {
    "fab": lambda: FAB(eps=0.1, steps=3),
    "fab-l2-restarts": lambda: FAB(eps=0.5, norm="l2", steps=3, restarts=2),
    "fab-t": lambda: FABT(eps=0.1, steps=3, n_target_classes=2, restarts=2, final_search=3),
    "fab-t-eot": lambda: FABT(eps=0.1, steps=2, n_target_classes=2, eot=2),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_contract_mode_flags_rng_ball_and_box(name: str) -> None:
    model = Quirky().train()
    model.drop.eval()
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    x = torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(2))
    y = torch.arange(6) % 5
    rng = torch.get_rng_state()
    attack = ATTACKS[name]()
    adv = attack(model, x, y)
    assert torch.equal(rng, torch.get_rng_state()), "the attack used the global RNG"
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert attack.threat.contains(adv, x).all() and not adv.requires_grad
    assert torch.equal(adv, ATTACKS[name]()(model, x, y)), "same seed, same result"
    assert attack.last_grad_evals > 0 and attack.last_forward_evals > 0


@pytest.mark.parametrize(("spelling", "canonical"), [("Linf", "linf"), ("inf", "linf"), ("L2", "l2")])
def test_every_norm_spelling_runs_the_same_attack(spelling: str, canonical: str) -> None:
    model = linear_model(5, seed=3)
    x, y = inputs(model, n=4)
    ours = FABT(norm=spelling, steps=3, n_target_classes=2)
    assert ours.lp == canonical
    assert torch.equal(ours(model, x, y), FABT(norm=canonical, steps=3, n_target_classes=2)(model, x, y))


def test_fabt_refuses_a_target() -> None:
    model = linear_model(5)
    x, y = inputs(model, n=2)
    with pytest.raises(ValueError, match="picks its own targets"):
        FABT(eps=0.1)(model, x, y, target=y)


# --------------------------------------------------------------------------------- torchattacks cross-check
def _torchattacks():
    """The reference must be there in CI (CI=true): a missing reference fails instead of skipping."""
    if os.environ.get("CI", "").lower() == "true":
        import torchattacks

        return torchattacks
    return pytest.importorskip("torchattacks", minversion="3.5.1")


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, Tensor, Tensor]:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, x, y = _train()
        return model, x[:100], y[:100]
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.5)])
def test_fab_t_matches_torchattacks(trained, norm: str, eps: float) -> None:
    """Same network, eps, 3 targets, 50 steps: robust accuracy within 2 points (both are deterministic here: one
    restart, no random start), and the median minimal perturbation (one target, no eps) within 3%."""
    ta = _torchattacks()
    model, x, y = trained
    ta_norm = "Linf" if norm == "linf" else "L2"
    with torch.random.fork_rng():  # torchattacks reseeds the global RNG
        theirs = ta.FAB(model, norm=ta_norm, eps=eps, steps=50, multi_targeted=True, n_classes=4)(x, y)
        theirs_min = ta.FAB(model, norm=ta_norm, eps=1e3, steps=50, multi_targeted=True, n_classes=2)(x, y)
    ours = FABT(eps=eps, norm=norm, steps=50, n_target_classes=3)(model, x, y)
    assert abs(robust_acc(model, ours, y) - robust_acc(model, theirs, y)) <= 0.02
    ours_min = FABT(norm=norm, steps=50, n_target_classes=1)(model, x, y)
    ok_o, ok_t = fooled(model, ours_min, y), fooled(model, theirs_min, y)
    assert ok_o.float().mean() >= ok_t.float().mean() - 0.01
    med_o, med_t = _dist(ours_min, x, norm)[ok_o].median(), _dist(theirs_min, x, norm)[ok_t].median()
    assert float(med_o) == pytest.approx(float(med_t), rel=0.03), (med_o, med_t)
