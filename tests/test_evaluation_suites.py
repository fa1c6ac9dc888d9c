"""Suites: names, order, published defaults, quick settings, and the recorded per-attack settings."""

from __future__ import annotations

import pytest

from _evaluation_toys import Quadrant, quadrant_data
from gradguard.attacks import APGD, APGDT, FABT, Square
from gradguard.evaluation import build_suite, evaluate, list_suites


def test_standard_suite_is_autoattack_standard_and_quick_shrinks_it() -> None:
    full = build_suite("standard", norm="l2", num_classes=10)
    assert list(full) == ["apgd-ce", "apgd-t", "fab-t", "square"]  # AutoAttack's order
    ce, t, fab, sq = (full[name](0.5) for name in full)
    assert isinstance(ce, APGD) and ce.steps == 100 and ce.loss == "ce" and ce.norm == "l2" and ce.restarts == 1
    assert isinstance(t, APGDT) and t.n_target_classes == 9 and t.steps == 100
    assert isinstance(fab, FABT) and fab.n_target_classes == 9 and fab.steps == 100 and fab.restarts == 1
    assert (fab.alpha_max, fab.eta, fab.beta, fab.final_search, fab.lp) == (0.1, 1.05, 0.9, 0, "l2")
    assert isinstance(sq, Square) and sq.n_queries == 5000 and sq.p_init == 0.8
    assert full["square"].kind == "gradient-free" and full["fab-t"].kind == "white-box"
    quick = build_suite("standard", quick=True, num_classes=4)
    assert quick["apgd-ce"](0.3).steps == 20 and quick["apgd-t"](0.3).n_target_classes == 3
    assert quick["fab-t"](0.3).steps == 20 and quick["fab-t"](0.3).n_target_classes == 3
    assert quick["square"](0.3).n_queries == 500
    three = build_suite("standard", num_classes=3)
    assert "apgd-t" not in three  # targeted DLR needs 4 classes
    assert three["fab-t"](0.3).n_target_classes == 2  # FAB-T only needs a class to aim at


def test_rand_suite_uses_eot_20_unless_told() -> None:
    rand = build_suite("rand")
    assert list(rand) == ["apgd-ce", "apgd-dlr", "square"]  # Square last: the gradient-free masking check
    assert rand["square"].kind == "gradient-free"
    assert all(spec(0.1).eot == 20 for spec in rand.values())
    assert rand["apgd-dlr"](0.1).loss == "dlr"
    assert build_suite("rand", k=5)["apgd-ce"](0.1).eot == 5
    assert list_suites() == ["standard", "rand", "apgd"]
    with pytest.raises(ValueError, match="unknown suite"):
        build_suite("autoattack")


def test_suite_evaluation_records_settings_seeds_and_counts() -> None:
    x, y = quadrant_data(12)
    res = evaluate(Quadrant(), x, y, "rand", eps=[0.1, 0.3], quick=True, k=2, seed=7)
    assert res.suite == "rand" and res.k == 2 and res.seed == 7
    ce = res.attacks["apgd-ce"]
    assert [s["eps"] for s in ce.settings] == [0.1, 0.3]
    assert all(s["eot"] == 2 and s["steps"] == 20 and s["class"] == "APGD" for s in ce.settings)
    assert len({s["seed"] for s in ce.settings + res.attacks["apgd-dlr"].settings}) == 4  # one stream each
    assert ce.grad_evals[0] >= 12 * 20 * 2  # every clean point attacked for 20 steps x 2 draws at eps 0.1
    assert res.robust_accuracy == pytest.approx([1.0, 0.0])


def test_apgd_suite_is_the_standard_gradient_attacks_at_full_strength_with_a_short_square() -> None:
    """The main job's suite: APGD-CE and APGD-T exactly as in "standard", a 1000-query Square as the check."""
    apgd, standard = build_suite("apgd"), build_suite("standard")
    for name in ("apgd-ce", "apgd-t"):
        assert apgd[name] == standard[name]
    assert apgd["apgd-ce"](0.3).steps == 100 and apgd["apgd-t"](0.3).n_target_classes == 9
    assert apgd["square"](0.3).n_queries == 1000 and apgd["square"].kind == "gradient-free"
    assert build_suite("apgd", quick=True)["square"](0.3).n_queries == 200
