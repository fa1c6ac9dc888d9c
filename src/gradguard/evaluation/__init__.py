"""Honest robustness evaluation: the m-draw protocol, attack suites, worst-case aggregation, masking checks.

    from gradguard.evaluation import evaluate
    result = evaluate(model, x, y, attacks="standard", eps=[0.1, 0.2, 0.3], quick=True)
    print(result.summary()); result.save("results.json")

One module per job: `predict` (m-draw predictions), `suites` (named ensembles), `protocol` (`evaluate`),
`checks` (gradient-masking flags), `result` (`EvalResult` and its JSON schema).
"""

from gradguard.evaluation.checks import FLAG_NAMES
from gradguard.evaluation.predict import detect_randomness, eval_mode, predict, predict_labels
from gradguard.evaluation.protocol import MODES, evaluate
from gradguard.evaluation.result import SCHEMA_VERSION, AttackRecord, EvalResult, Flag
from gradguard.evaluation.suites import SUITES, AttackSpec, attack_settings, build_suite, list_suites

__all__ = [
    "FLAG_NAMES",
    "MODES",
    "SCHEMA_VERSION",
    "SUITES",
    "AttackRecord",
    "AttackSpec",
    "EvalResult",
    "Flag",
    "attack_settings",
    "build_suite",
    "detect_randomness",
    "eval_mode",
    "evaluate",
    "list_suites",
    "predict",
    "predict_labels",
]
