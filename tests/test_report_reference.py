"""Archived baseline curves are overlaid only on a comparable run, and say where they were measured."""

from __future__ import annotations

from gradguard.report.reference import matching_curves

REFERENCE = {
    "dataset": "mnist", "model": "strided-cnn", "eps": 0.3, "norm": "linf", "val_attack": "apgd-ce",
    "val_attack_steps": 25, "val_n": 500, "seed": 0,
    "curves": [
        {"key": "pgd40", "label": "PGD-AT-40", "done": True,
         "points": [{"fb_passes": 10.0, "wall_s": 1.0, "val_robust_acc": 0.1},
                    {"fb_passes": 20.0, "wall_s": 2.0, "val_robust_acc": 0.5}],
         "started": [{"utc": "2026-12-02 08:28 UTC", "git": {"commit": "2d52de5aaaa"},
                      "environment": {"machine": "x86_64", "processor_count": 2}}]},
        {"key": "fast_at", "label": "Fast-AT", "done": False, "points": [], "started": []},
    ],
}
RESULTS = {"dataset": {"name": "mnist"}, "model": {"name": "strided-cnn"}}
VAL = [{"kind": "val", "val_eps": 0.3, "val_attack": "apgd-ce", "val_attack_steps": 25, "fb_passes": 5.0}]


def test_comparable_run_gets_the_curves_with_their_machine_and_date() -> None:
    (curve,) = matching_curves(RESULTS, VAL, REFERENCE)  # the empty Fast-AT curve is left out
    assert curve.label == "PGD-AT-40" and curve.fb_passes == [10.0, 20.0] and curve.robust == [0.1, 0.5]
    assert curve.where == "x86_64 CPU, 2 cores, 2026-12-02 08:28 UTC, commit 2d52de5"


def test_other_networks_eps_or_validation_attacks_get_none() -> None:
    assert matching_curves({**RESULTS, "model": {"name": "smallcnn"}}, VAL, REFERENCE) == []
    assert matching_curves(RESULTS, [{**VAL[0], "val_eps": 0.1}], REFERENCE) == []
    assert matching_curves(RESULTS, [{**VAL[0], "val_attack": "pgd"}], REFERENCE) == []
    assert matching_curves(RESULTS, [{**VAL[0], "val_attack_steps": 100}], REFERENCE) == []
    assert matching_curves(RESULTS, [], REFERENCE) == []
