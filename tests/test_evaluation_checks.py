"""Masking checks: each flag fires on a model built to trigger it and stays off on a plain model."""

from __future__ import annotations

import pytest
import torch

from _evaluation_toys import Noisy, Oracle, Quadrant, Shattered, quadrant_data
from gradguard.attacks import PGD
from gradguard.evaluation import FLAG_NAMES, EvalResult, evaluate
from gradguard.evaluation.checks import count_bad_gradients, gradient_free_flag, monotonic_flag, zero_gradient_flag


def _flags(res: EvalResult) -> dict[str, bool]:
    return {f.name: f.triggered for f in res.flags}


def _pgd(eps: float, eot: int = 1) -> PGD:
    return PGD(eps=eps, steps=10, eot=eot)


def _ensemble(eot: int = 1) -> dict[str, object]:
    return {"pgd": lambda eps: _pgd(eps, eot), "oracle": lambda eps: Oracle(eps)}  # Oracle is gradient-free


def test_plain_model_raises_no_flag() -> None:
    x, y = quadrant_data(32)
    res = evaluate(Quadrant(), x, y, _ensemble(), eps=[0.1, 0.3, 0.4])
    assert set(_flags(res)) == set(FLAG_NAMES)
    assert not any(_flags(res).values()), res.summary()
    assert res.robust_accuracy == pytest.approx([1.0, 0.0, 0.0])


def test_shattered_gradients_trigger_zero_gradient_gradient_free_and_large_eps_flags() -> None:
    x, y = quadrant_data(32)
    res = evaluate(Shattered(), x, y, _ensemble(), eps=[0.1, 0.4])
    flags = {f.name: f for f in res.flags}
    assert flags["zero_gradients"].triggered and flags["zero_gradients"].values["zero"] == 32
    # PGD sees zero gradients and fails; the gradient-free oracle breaks every point at eps 0.4.
    assert flags["gradient_free_stronger"].triggered
    assert flags["gradient_free_stronger"].values["share"] == pytest.approx([0.0, 1.0])
    assert flags["large_eps_not_zero"].triggered and flags["large_eps_not_zero"].values["accuracy"] > 0.9
    assert not flags["randomness_without_eot"].triggered
    assert "WARN] zero_gradients" in res.summary()


def test_noisy_model_without_eot_triggers_randomness_flag_and_eot_clears_it() -> None:
    x, y = quadrant_data(16)
    no_eot = evaluate(Noisy(sigma=0.05), x, y, _ensemble(eot=1), eps=[0.1], m=4)
    assert no_eot.randomized and no_eot.k == 1
    assert _flags(no_eot)["randomness_without_eot"]
    with_eot = evaluate(Noisy(sigma=0.05), x, y, _ensemble(eot=4), eps=[0.1], m=4)
    assert with_eot.k == 4 and not _flags(with_eot)["randomness_without_eot"]


def test_broken_attack_triggers_monotonicity_flag() -> None:
    x, y = quadrant_data(16)
    broken = {"oracle": lambda eps: Oracle(eps, max_eps=0.35)}  # gives up above eps 0.35
    res = evaluate(Quadrant(), x, y, broken, eps=[0.4, 0.3], run_checks=False)
    flag = {f.name: f for f in res.flags}["non_monotonic_eps"]
    assert flag.triggered and flag.values["rises"][0]["eps"] == [0.3, 0.4]


def test_flag_functions_on_hand_made_numbers() -> None:
    assert not monotonic_flag([0.1, 0.2], [0.5, 0.5], {}).triggered
    assert monotonic_flag([0.1, 0.2], [0.5, 0.6], {}).triggered
    assert monotonic_flag([0.1, 0.2], [0.5, 0.4], {"a": [0.5, 0.7], "b": [None, 0.9]}).triggered
    assert not monotonic_flag([0.1, 0.2], [0.5, 0.4], {"b": [None, 0.9]}).triggered
    assert zero_gradient_flag(0, 1, 100).triggered  # any non-finite gradient fires
    assert not zero_gradient_flag(1, 0, 100).triggered and zero_gradient_flag(2, 0, 100).triggered
    clean = torch.ones(4, dtype=torch.bool)
    tried = torch.ones(1, 4, dtype=torch.bool)
    succ = {"w": torch.tensor([[1, 0, 0, 0]]).bool(), "s": torch.tensor([[1, 1, 0, 0]]).bool()}
    kinds = {"w": "white-box", "s": "gradient-free"}
    flag = gradient_free_flag(succ, {"w": tried, "s": tried}, kinds, clean)
    assert flag.triggered and flag.values["n_extra"] == [1]
    # A point the white-box attack never tried (chained, Square placed first) is not counted against it.
    flag = gradient_free_flag(succ, {"w": torch.tensor([[1, 0, 1, 1]]).bool(), "s": tried}, kinds, clean)
    assert not flag.triggered


def test_gradient_count_leaves_parameter_grads_alone() -> None:
    x, y = quadrant_data(8)
    model = Quadrant()
    assert count_bad_gradients(model, x, y) == (0, 0, 8)
    assert model.linear.weight.grad is None
    nan_model = Quadrant()
    with torch.no_grad():
        nan_model.linear.weight[0, 0] = float("nan")
    assert count_bad_gradients(nan_model, x, y)[1] == 8


def test_standard_suite_square_beats_white_box_on_shattered_model() -> None:
    x, y = quadrant_data(16)
    res = evaluate(Shattered(), x, y, "standard", eps=[0.4], quick=True)
    assert list(res.attacks) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert res.attacks["square"].kind == "gradient-free"
    flags = _flags(res)
    assert flags["gradient_free_stronger"] and flags["zero_gradients"] and flags["large_eps_not_zero"]
    assert res.attacks["apgd-ce"].robust_accuracy(res.clean_correct) == [1.0]
    assert res.robust_accuracy[0] < 0.5
