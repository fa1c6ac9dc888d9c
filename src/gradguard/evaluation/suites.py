"""Attack suites: named, ordered ensembles with published-ish defaults, parametrized by norm, eps and EOT draws.

A suite maps attack names to `AttackSpec`s, factories that build one attack for one eps. Order matters: the
chained protocol runs them in order on the points still robust, so the cheap, strong attacks come first and the
gradient-free Square comes last (so that "Square broke what the white-box attacks missed" is measurable).

| suite    | attacks (full defaults)                                                       | quick (CPU) setting       |
| -------- | ----------------------------------------------------------------------------- | ------------------------- |
| standard | APGD-CE 100 steps; APGD-T (DLR), FAB-T: 100 steps x 9 targets; Square 5000 q. | 20 steps, 3 targ., 500 q. |
| rand     | APGD-CE and APGD-DLR 100 steps, EOT over k=20 draws; Square 5000 q.           | 20 steps, k=20, 500 q.    |
| apgd     | APGD-CE 100 steps; APGD-T (DLR) 100 steps x 9 targets; Square 1000 q.         | 20 steps, 3 targ., 200 q. |

"standard" is AutoAttack's "standard" version (Croce & Hein 2020): the same four attacks in the same order, one
restart each, Square with p_init=0.8. "rand" is AutoAttack's "rand" plus a final Square (each query's loss
averaged over the same k draws): a randomized model is where gradient masking is most likely, so the gradient-free
check must run there too. "apgd" is AutoAttack's two gradient attacks at full strength with a short Square as the
gradient-free check: the main job's suite, a fraction of the standard suite's cost on a CPU. docs/evaluation.md
lists every difference, and how to run AutoAttack's "plus".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradguard.threat import normalize_norm

__all__ = ["AttackSpec", "SUITES", "SUITE_DEFAULT_K", "build_suite", "list_suites", "attack_settings"]

SUITES = ("standard", "rand", "apgd")
SUITE_DEFAULT_K = {"standard": 1, "rand": 20, "apgd": 1}
SQUARE_QUERIES = {"standard": (5000, 500), "rand": (5000, 500), "apgd": (1000, 200)}  # (full, quick)


@dataclass(frozen=True)
class AttackSpec:
    """A factory for one attack of a suite: `spec(eps, seed=...)` -> an attack from `gradguard.attacks`."""

    cls: str  # class name in gradguard.attacks
    kwargs: dict[str, Any] = field(default_factory=dict)
    kind: str = "white-box"  # or "gradient-free"

    def __call__(self, eps: float, seed: int | None = None) -> Any:
        import gradguard.attacks as attacks

        extra = {} if seed is None else {"seed": seed}
        return getattr(attacks, self.cls)(eps=eps, **self.kwargs, **extra)


def list_suites() -> list[str]:
    return list(SUITES)


def build_suite(
    name: str,
    *,
    norm: str = "linf",
    k: int | None = None,
    quick: bool = False,
    num_classes: int = 10,
) -> dict[str, AttackSpec]:
    """The ordered attacks of suite `name` for `norm`, with EOT over `k` draws (None: the suite's default)."""
    key = name.lower()
    if key not in SUITES:
        raise ValueError(f"unknown suite {name!r}: expected one of {list(SUITES)} or a dict of attacks")
    norm = normalize_norm(norm)
    k = SUITE_DEFAULT_K[key] if k is None else int(k)
    if k < 1:
        raise ValueError(f"k (EOT draws) must be >= 1, got {k}")
    steps = 20 if quick else 100
    common = {"norm": norm, "steps": steps, "restarts": 1, "eot": k}
    if key in ("standard", "apgd"):
        targets = max(1, min(3 if quick else 9, num_classes - 1))
        suite = {
            "apgd-ce": AttackSpec("APGD", {**common, "loss": "ce"}),
            "apgd-t": AttackSpec("APGDT", {**common, "n_target_classes": targets}),
            "fab-t": AttackSpec("FABT", {**common, "n_target_classes": targets}),
        }
        if num_classes < 4:  # targeted DLR needs 4 classes; untargeted DLR needs 3
            suite.pop("apgd-t")
        if key == "apgd":  # AutoAttack's gradient attacks only (FAB-T is a minimum-norm attack, the costly third)
            suite.pop("fab-t")
    else:
        suite = {"apgd-ce": AttackSpec("APGD", {**common, "loss": "ce"})}
        if num_classes >= 3:
            suite["apgd-dlr"] = AttackSpec("APGD", {**common, "loss": "dlr"})
    queries = SQUARE_QUERIES[key][1 if quick else 0]
    suite["square"] = AttackSpec("Square", {"norm": norm, "eot": k, "n_queries": queries,
                                            "p_init": 0.8, "restarts": 1}, kind="gradient-free")
    return suite


_SIMPLE = (bool, int, float, str, type(None))


def attack_settings(attack: Any) -> dict[str, Any]:
    """The JSON-able hyperparameters of an attack instance, for the record (class name included)."""
    settings: dict[str, Any] = {"class": type(attack).__name__}
    getter = getattr(attack, "settings", None)
    source = getter() if callable(getter) else vars(attack) if hasattr(attack, "__dict__") else {}
    for key, value in source.items():
        if key.startswith(("_", "last_")) or key == "generator":  # private state and per-call counters
            continue
        if isinstance(value, _SIMPLE):
            settings[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, _SIMPLE) for v in value):
            settings[key] = list(value)
    return settings
