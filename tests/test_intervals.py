"""95% Wilson intervals on every accuracy, checked against independent computations, and the difference rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from gradguard.evaluation.result import AttackRecord, EvalResult
from gradguard.intervals import Z95, accuracy_interval, differs, wilson
from gradguard.report.content import comparison_document, run_document
from gradguard.report.records import RunRecord
from gradguard.report.results_table import results_document


def wilson_by_quadratic(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson bounds as the roots of (p_hat - p)^2 = z^2 p (1 - p) / n, solved with the quadratic formula."""
    p_hat = k / n
    a = 1 + z * z / n
    b = -(2 * p_hat + z * z / n)
    c = p_hat * p_hat
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def test_wilson_for_8_of_10_matches_the_closed_form_and_the_textbook_value() -> None:
    lo, hi = wilson(8, 10)
    assert (lo, hi) == pytest.approx(wilson_by_quadratic(8, 10), abs=1e-12)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)  # Newcombe (1998), Table I style value


@pytest.mark.parametrize(("k", "n"), [(0, 10), (10, 10), (1, 100), (50, 100), (93, 100), (117, 200), (999, 1000)])
def test_wilson_matches_an_independent_computation(k: int, n: int) -> None:
    assert wilson(k, n) == pytest.approx(wilson_by_quadratic(k, n), abs=1e-12)
    stats = pytest.importorskip("scipy.stats")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_wilson_edges_and_bad_counts() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0
    assert abs(Z95 - 1.959963984540054) < 1e-15
    with pytest.raises(ValueError):
        wilson(11, 10)
    assert accuracy_interval(None, 10) is None and accuracy_interval(0.8, 0) is None
    assert accuracy_interval(0.8, 10) == wilson(8, 10)


def test_differs_only_when_the_intervals_do_not_overlap() -> None:
    # 50/100: [0.404, 0.596]; 60/100: [0.502, 0.690] overlap; 75/100: [0.657, 0.825] does not.
    assert not differs(0.5, 0.6, 100)
    assert differs(0.5, 0.75, 100) and differs(0.75, 0.5, 100)
    assert not differs(0.5, 0.75, 10)  # the same gap on 10 images is noise
    assert differs(0.5, 0.6, 2000)
    assert not differs(0.5, 0.75, 100, 0)  # nothing known about the second


def _result() -> EvalResult:
    """8 of 10 clean-correct; the worst case (robust to both attacks) keeps 4 of 10."""
    clean = torch.tensor([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.bool)
    a_fooled = torch.tensor([[0, 0, 1, 0, 0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    b_fooled = torch.tensor([[0, 0, 0, 1, 1, 1, 0, 0, 1, 1]], dtype=torch.bool)
    every = torch.ones(1, 10, dtype=torch.bool)
    attacks = {name: AttackRecord(name, "white-box", [{}], s, every, [0.0], [0], [0])
               for name, s in (("a", a_fooled), ("b", b_fooled))}
    return EvalResult(eps=[0.3], norm="linf", m=1, k=1, seed=0, mode="independent", suite="custom",
                      randomized=False, clean_correct=clean, clean_correct_single=clean,
                      success=a_fooled | b_fooled,
                      attacks=attacks)


def test_eval_result_carries_intervals_in_json_and_summary(tmp_path: Path) -> None:
    res = _result()
    assert res.robust_accuracy == [0.4]
    assert res.clean_accuracy_ci == pytest.approx(wilson_by_quadratic(8, 10))
    assert res.robust_accuracy_ci[0] == pytest.approx(wilson_by_quadratic(4, 10))
    raw = json.loads(res.save(tmp_path / "r.json").read_text())
    assert raw["clean_accuracy_ci"] == pytest.approx(list(wilson_by_quadratic(8, 10)))
    assert raw["robust_accuracy_ci"][0] == pytest.approx(list(wilson_by_quadratic(4, 10)))
    assert raw["attacks"]["a"]["robust_accuracy_ci"][0] == pytest.approx(list(wilson_by_quadratic(7, 10)))
    assert raw["attacks"]["b"]["cumulative_robust_accuracy_ci"][0] == pytest.approx(list(wilson_by_quadratic(4, 10)))
    text = res.summary()
    assert "clean accuracy: 80.00% [49.0, 94.3]" in text and "40.00% [16.8, 68.7]" in text
    # a file written before intervals existed still loads, and gets them
    for key in ("clean_accuracy_ci", "clean_accuracy_single_ci", "robust_accuracy_ci"):
        raw.pop(key)
    for rec in raw["attacks"].values():
        rec.pop("robust_accuracy_ci"), rec.pop("cumulative_robust_accuracy_ci")
    assert EvalResult.from_dict(raw).robust_accuracy_ci == res.robust_accuracy_ci


def _record(name: str, robust: float, n: int) -> RunRecord:
    ev = {"n": n, "eps": [0.3], "norm": "linf", "suite": "standard", "mode": "chained", "seed": 0, "m": 1, "k": 1,
          "clean_accuracy": 0.8, "robust_accuracy": [robust], "flags": [],
          "attacks": {"apgd-ce": {"robust_accuracy": [robust], "cumulative_robust_accuracy": [robust]}}}
    results = {"name": name, "evaluation": ev, "training": {"recipe": {"name": "sgn"}}, "model": {"name": "m"},
               "dataset": {"name": "digits", "source": "sklearn"}, "command": "gradguard run x.toml",
               "machine": "cpu", "date": "2026-12-02"}
    return RunRecord(Path(name), results)


def test_reports_and_results_table_show_intervals_and_call_differences_by_them(tmp_path: Path) -> None:
    md = run_document(_record("a", 0.4, 10), tmp_path).to_markdown(tmp_path)
    assert "| 0.3 | 80.00 [49.0, 94.3] | 40.00 [16.8, 68.7] | 40.00 [16.8, 68.7] |" in md
    cmp = comparison_document([_record("base", 0.5, 100), _record("close", 0.6, 100), _record("far", 0.75, 100)],
                              tmp_path).to_markdown(tmp_path)
    assert "| close | sgn | 0.3 |" in cmp and "no difference at 95%" in cmp
    assert "| far | sgn | 0.3 |" in cmp and "| higher |" in cmp
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "a.json").write_text(json.dumps(_record("a", 0.4, 10).results))
    table = results_document(archive).to_markdown(tmp_path)
    assert "| 80.0 [49.0, 94.3] | 0.3: 40.0 [16.8, 68.7] |" in table
