"""Reading a run directory back: the runner's results.json, the training log and the config, in one object."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradguard.runlog import read_metrics

__all__ = ["RunRecord", "load_run", "RESULTS_SCHEMA", "ran_quick"]

RESULTS_SCHEMA = "gradguard.results/1"


@dataclass
class RunRecord:
    run_dir: Path
    results: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    config_text: str = ""

    @property
    def name(self) -> str:
        return str(self.results.get("name") or self.run_dir.name)

    @property
    def evaluation(self) -> dict[str, Any]:
        return self.results.get("evaluation") or {}

    @property
    def training(self) -> dict[str, Any]:
        return self.results.get("training") or {}

    def records(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.metrics if r.get("kind") == kind]

    def cumulative_attacks(self) -> set[str]:
        """The attacks whose column in `attack_accuracy` is cumulative (chained: each ran only on the points all
        earlier attacks left robust, so its number is the accuracy after it and all before it)."""
        out = set()
        for name, rec in self.evaluation.get("attacks", {}).items():
            own = rec.get("robust_accuracy") or []
            if not (own and all(v is not None for v in own)):
                out.add(name)
        return out

    def attack_accuracy(self) -> dict[str, list[float | None]]:
        """Per attack: its own robust accuracy per eps when measured on every point, else the cumulative one."""
        out = {}
        for name, rec in self.evaluation.get("attacks", {}).items():
            own = rec.get("robust_accuracy") or []
            out[name] = own if own and all(v is not None for v in own) else rec.get("cumulative_robust_accuracy", own)
        return out


def load_run(run_dir: str | Path) -> RunRecord:
    """Load what `gradguard run` wrote; a clear error when the directory holds no finished run."""
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no results.json; is {run_dir} a finished 'gradguard run' directory? "
            f"(resume an unfinished one with 'gradguard run CONFIG --resume {run_dir}')"
        )
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if results.get("schema") != RESULTS_SCHEMA:
        raise ValueError(f"{path}: schema {results.get('schema')!r} is not {RESULTS_SCHEMA!r}")
    config = run_dir / "config.toml"
    return RunRecord(
        run_dir=run_dir,
        results=results,
        metrics=read_metrics(run_dir / "metrics.jsonl", missing_ok=True),
        config_text=config.read_text(encoding="utf-8") if config.exists() else "",
    )


def ran_quick(evaluation: dict[str, Any]) -> bool:
    """Whether an evaluation record (`EvalResult.to_dict()`) ran a suite in its quick setting, which overstates
    robust accuracy: reports and the results table mark it (`EvalResult.suite_label` does the same for objects)."""
    return bool((evaluation.get("meta") or {}).get("quick"))
