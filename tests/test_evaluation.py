"""Evaluation protocol: m-draw prediction, worst-case aggregation, chained vs independent runs, JSON, mode."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from _evaluation_toys import Noisy, Oracle, Quadrant, WhiteBoxOracle, quadrant_data
from gradguard.draws import draw_mode
from gradguard.evaluation import AttackRecord, EvalResult, evaluate, predict, predict_labels
from gradguard.evaluation.result import decode_bits, encode_bits


class CoinFlip(nn.Module):
    """Each forward draws, per input, class 1 with probability p (else class 0), as a near one-hot softmax."""

    def __init__(self, p: float = 0.7, seed: int = 0) -> None:
        super().__init__()
        self.p = p
        self.gen = torch.Generator().manual_seed(seed)
        self.calls = 0
        self.rows = 0
        self.saw_training: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        self.saw_training.append(self.training)
        b = (torch.rand(x.shape[0], generator=self.gen) < self.p).float()
        return torch.stack([torch.zeros_like(b), 60.0 * b - 30.0], dim=1)


class Counting(Quadrant):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x)


def test_predict_averages_m_draws_in_batched_passes() -> None:
    model = CoinFlip(p=0.7)
    x = torch.zeros(10, 3)
    assert draw_mode(model, x) == "per-sample"  # the probe (one call), cached for this model object
    model.calls = model.rows = 0
    probs = predict(model, x, m=400, batch_size=1000, randomized=True)
    assert probs.shape == (10, 2)
    assert torch.allclose(probs.sum(1), torch.ones(10))
    # 400 Bernoulli(0.7) draws per input: the mean is 0.7 within ~4.5 standard errors (0.023 each).
    assert (probs[:, 1] - 0.7).abs().max() < 0.11
    assert probs[:, 1].std() > 0  # draws are independent per input, not shared across the batch
    # 10 inputs x 400 draws in chunks of at most 1000 rows: 2 inputs (800 rows) per pass -> 5 passes.
    assert model.calls == 5 and model.rows == 4000
    one = predict(CoinFlip(p=0.7), x, m=1, randomized=True)
    assert set(one[:, 1].round().tolist()) <= {0.0, 1.0}


def test_predict_forwards_deterministic_model_once_and_restores_mode() -> None:
    model = Counting().train()
    x, y = quadrant_data(20)
    probs = predict(model, x, m=50, batch_size=256)
    # One probe of two passes (randomness check) plus one pass: never 50 passes for a deterministic model.
    assert model.calls == 3
    assert torch.allclose(probs, torch.softmax(model(x), 1))
    assert model.training
    assert (predict_labels(model, x, m=5) == y).all()


def test_predict_detects_randomness_and_runs_in_eval_mode() -> None:
    model = CoinFlip(p=0.5).train()
    probs = predict(model, torch.zeros(4, 3), m=200)
    assert model.training and not any(model.saw_training)
    assert ((probs[:, 1] > 0.3) & (probs[:, 1] < 0.7)).all()  # averaged, so not a one-hot single draw


def _record(name: str, success: list[list[int]], attacked: list[list[int]], kind: str = "white-box") -> AttackRecord:
    e = len(success)
    return AttackRecord(name, kind, [{}] * e, torch.tensor(success, dtype=torch.bool),
                        torch.tensor(attacked, dtype=torch.bool), [0.0] * e, [0] * e, [0] * e)


def test_worst_case_aggregation_on_hand_made_success_tensors() -> None:
    clean = torch.tensor([1, 1, 1, 1, 0], dtype=torch.bool)
    # independent run: both attacks attacked all clean-correct points at both eps
    a = _record("a", [[0, 1, 0, 0, 1], [1, 1, 0, 0, 1]], [[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]])
    b = _record("b", [[0, 0, 1, 0, 1], [0, 1, 1, 0, 1]], [[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]])
    worst = ~clean.expand(2, -1) | (a.success & a.attacked) | (b.success & b.attacked)
    res = EvalResult([0.1, 0.2], "linf", 1, 1, 0, "independent", "custom", False, clean, clean, worst, {"a": a, "b": b})
    assert res.clean_accuracy == pytest.approx(0.8)
    assert res.robust_accuracy == pytest.approx([0.4, 0.2])  # union: {1,2,4} broken, then {0,1,2,4}
    assert a.robust_accuracy(clean) == pytest.approx([0.6, 0.4])
    assert b.robust_accuracy(clean) == pytest.approx([0.6, 0.4])
    assert res.cumulative_accuracy() == {"a": pytest.approx([0.6, 0.4]), "b": pytest.approx([0.4, 0.2])}
    # chained run: b attacked only what a left robust, so its own accuracy on the full set is unknown
    b2 = _record("b", [[0, 0, 1, 0, 1], [0, 0, 1, 0, 1]], [[1, 0, 1, 1, 0], [0, 0, 1, 1, 0]])
    assert b2.robust_accuracy(clean) == [None, None]
    d = b2.to_dict(clean)
    assert d["n_attacked"] == [3, 2] and d["n_broken"] == [1, 1]


def test_bits_round_trip() -> None:
    t = torch.tensor([[1, 0, 1], [0, 0, 1]], dtype=torch.bool)
    assert encode_bits(t) == ["101", "001"]
    assert torch.equal(decode_bits(encode_bits(t)), t)


def test_chained_attacks_only_points_still_robust_and_records_both_views() -> None:
    x, y = quadrant_data(16)
    model = Quadrant()
    first = WhiteBoxOracle(0.4, only=x[:5])  # breaks samples 0..4 only
    second = WhiteBoxOracle(0.4, only=x[3:9])  # breaks 3..8
    chained = evaluate(model, x, y, {"first": first, "second": second}, eps=[0.4], run_checks=False)
    assert [len(t) for t in first.seen] == [16]
    assert sum(len(t) for t in second.seen) == 11  # never sees the five points already broken
    assert chained.robust_accuracy == pytest.approx([7 / 16])
    assert chained.attacks["second"].robust_accuracy(chained.clean_correct) == [None]
    assert chained.cumulative_accuracy()["first"] == pytest.approx([11 / 16])

    first, second = WhiteBoxOracle(0.4, only=x[:5]), WhiteBoxOracle(0.4, only=x[3:9])
    indep = evaluate(model, x, y, {"first": first, "second": second}, eps=[0.4], mode="independent",
                     run_checks=False)
    assert sum(len(t) for t in second.seen) == 16
    assert indep.robust_accuracy == pytest.approx([7 / 16])
    assert indep.attacks["second"].robust_accuracy(indep.clean_correct) == pytest.approx([10 / 16])
    assert torch.equal(indep.success, chained.success)


def test_quick_marks_only_the_named_suites_it_shrinks() -> None:
    """`quick` has no effect on a dict of attacks, so such a result must not be labelled quick."""
    x, y = quadrant_data(12)
    res = evaluate(Quadrant(), x, y, {"oracle": lambda eps: Oracle(eps)}, eps=[0.1], quick=True, run_checks=False)
    assert res.suite_label == "custom" and "suite=custom " in res.summary()
    d = res.to_dict()
    d["meta"] = None  # a hand-made or foreign record without metadata still loads
    assert EvalResult.from_dict(d).suite_label == "custom"


def test_factories_get_each_eps_and_instances_must_match() -> None:
    x, y = quadrant_data(12)
    res = evaluate(Quadrant(), x, y, {"oracle": lambda eps: Oracle(eps)}, eps=[0.1, 0.2, 0.3], run_checks=False)
    assert res.robust_accuracy == pytest.approx([1.0, 1.0, 0.0])
    assert [s["eps"] for s in res.attacks["oracle"].settings] == [0.1, 0.2, 0.3]
    with pytest.raises(ValueError, match="factory"):
        evaluate(Quadrant(), x, y, {"oracle": Oracle(0.1)}, eps=[0.1, 0.2], run_checks=False)


def test_attack_leaving_the_ball_is_an_error() -> None:
    x, y = quadrant_data(8)

    def cheat(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return (xb + 0.2).clamp(0, 1)

    cheat.eps = 0.1  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="outside the linf ball"):
        evaluate(Quadrant(), x, y, {"cheat": cheat}, eps=[0.1], run_checks=False)


def test_attack_without_its_own_counts_is_counted_by_forward_hook() -> None:
    """A plain callable has no last_grad_evals: its passes through the model (and only those) are counted."""
    x, y = quadrant_data(8)

    def probe(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            model(xb.clone().requires_grad_(True))
            model(xb.clone().requires_grad_(True))
        with torch.no_grad():
            model(xb)
        return xb

    probe.eps = 0.1  # type: ignore[attr-defined]
    res = evaluate(Quadrant(), x, y, {"probe": probe}, eps=[0.1], run_checks=False)
    assert res.attacks["probe"].grad_evals == [16] and res.attacks["probe"].queries == [8]


def test_robust_accuracy_non_increasing_in_eps_with_pgd() -> None:
    from gradguard.attacks import PGD

    x, y = quadrant_data(32)
    eps = [0.0, 0.1, 0.2, 0.25, 0.3, 0.4]
    res = evaluate(Quadrant(), x, y, {"pgd": lambda eps: PGD(eps=eps, steps=10)}, eps=eps, run_checks=False)
    acc = res.robust_accuracy
    assert all(b <= a for a, b in zip(acc, acc[1:], strict=False))
    assert acc[0] == 1.0 and acc[-1] == 0.0  # the margin is 0.5 in quadrant means: gone before eps = 0.3
    flag = {f.name: f for f in res.flags}["non_monotonic_eps"]
    assert not flag.triggered
    assert res.attacks["pgd"].grad_evals[1] > 0


def test_randomized_protocol_reports_single_and_m_draw_accuracy() -> None:
    x, y = quadrant_data(48)
    model = Noisy(sigma=0.9)
    res = evaluate(model, x, y, {"oracle": lambda eps: Oracle(eps)}, eps=[0.1], m=32, k=1, run_checks=False)
    assert res.randomized and res.m == 32
    # One draw with heavy noise errs often; averaging 32 draws recovers nearly every label.
    assert res.clean_accuracy > res.clean_accuracy_single + 0.1
    assert "32-draw" in res.summary() and "single draw" in res.summary()


def test_json_round_trip_and_atomic_save(tmp_path) -> None:
    x, y = quadrant_data(12)
    res = evaluate(Quadrant(), x, y, {"oracle": lambda eps: Oracle(eps)}, eps=[0.1, 0.3])
    path = res.save(tmp_path / "sub" / "result.json")
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]  # no temporary file left behind
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 1 and raw["robust_accuracy"] == pytest.approx([1.0, 0.0])
    assert {f["name"] for f in raw["flags"]} >= {"randomness_without_eot", "zero_gradients", "non_monotonic_eps"}
    back = EvalResult.load(path)
    assert back.to_dict() == res.to_dict()
    assert torch.equal(back.success, res.success)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**raw, "schema_version": 99}))
    with pytest.raises(ValueError, match="schema_version"):
        EvalResult.load(bad)


def test_evaluate_restores_mode_and_flags_and_leaves_batchnorm_stats() -> None:
    x, y = quadrant_data(16)
    model = nn.Sequential(nn.BatchNorm2d(1), Quadrant()).train()
    model[1].linear.bias.requires_grad_(False)
    stats = model[0].running_mean.clone()
    evaluate(model, x, y, {"oracle": lambda eps: Oracle(eps)}, eps=[0.2])
    assert model.training and model[0].training and model[1].training
    assert model[1].linear.weight.requires_grad and not model[1].linear.bias.requires_grad
    assert model[1].linear.weight.grad is None
    assert torch.equal(model[0].running_mean, stats)


def test_summary_lists_numbers_and_every_flag() -> None:
    x, y = quadrant_data(12)
    res = evaluate(Quadrant(), x, y, {"oracle": lambda eps: Oracle(eps)}, eps=[0.1, 0.3])
    text = res.summary()
    assert "clean accuracy: 100.00%" in text
    assert "0.3" in text and "0.00%" in text
    for flag in res.flags:
        assert flag.name in text
    assert not math.isnan(res.meta["wall_s"])


def test_zoo_randomized_model_is_reproducible_and_leaves_global_rng_alone() -> None:
    from gradguard.attacks import PGD
    from gradguard.models import build_model, random_layers, randomize

    torch.manual_seed(123)  # test-only: a known global state to compare against afterwards
    model = randomize(build_model("madry-cnn", "digits"), "noise")
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8)
    state = torch.get_rng_state()
    runs = [evaluate(model, x, y, {"pgd": lambda eps: PGD(eps=eps, steps=3, eot=2)}, eps=[0.1], m=4, seed=5,
                     check_n=8) for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), state)
    assert runs[0].randomized and runs[0].k == 2
    assert runs[0].to_dict()["success"] == runs[1].to_dict()["success"]
    assert runs[0].flags[0].values == runs[1].flags[0].values
    assert all(layer.generator is None for layer in random_layers(model))  # the caller's setting is given back
