"""Archived time-to-robustness curves of the baselines, overlaid on a run's own curve in its report.

The SGN convergence study (benchmarks/sgn_study.py) archives the curves of PGD-AT and Fast-AT on MNIST with the
main job's network and validation attack (`reference_curves.json` beside this file, written by
``python benchmarks/sgn_study.py summary --install``). A report overlays them only when the run is comparable:
same dataset, model, norm, eps and validation attack. They were measured on another machine, on a named date, so
their wall-time axis is that machine's; passes compare across machines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["ReferenceCurve", "load_reference", "matching_curves"]

REFERENCE_FILE = "reference_curves.json"


@dataclass(frozen=True)
class ReferenceCurve:
    label: str
    fb_passes: list[float]
    wall_s: list[float]
    robust: list[float]
    where: str  # "<machine>, <date>, commit <sha>"


def load_reference(path: Path | None = None) -> dict[str, Any] | None:
    """The archived curves (None when none are installed)."""
    if path is None:
        ref = resources.files("gradguard.report").joinpath(REFERENCE_FILE)
        if not ref.is_file():
            return None
        text = ref.read_text(encoding="utf-8")
    elif path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        return None
    return json.loads(text)


def _where(curve: dict[str, Any]) -> str:
    starts = curve.get("started") or [{}]
    first = starts[0]
    env = first.get("environment") or {}
    machine = f"{env.get('machine', 'unknown')} CPU, {env.get('processor_count', '?')} cores"
    sha = (first.get("git") or {}).get("commit", "")[:7]
    return f"{machine}, {first.get('utc', 'unknown date')}" + (f", commit {sha}" if sha else "")


def matching_curves(results: dict[str, Any], val_records: list[dict[str, Any]],
                    reference: dict[str, Any] | None = None) -> list[ReferenceCurve]:
    """The archived curves comparable with this run (empty when none are, or none are installed)."""
    reference = reference if reference is not None else load_reference()
    if not reference or not val_records:
        return []
    last = val_records[-1]
    same = (
        (results.get("dataset") or {}).get("name") == reference.get("dataset")
        and (results.get("model") or {}).get("name") == reference.get("model")
        and abs(float(last.get("val_eps", -1)) - float(reference.get("eps", -2))) < 1e-9
        and last.get("val_attack") == reference.get("val_attack")
        and last.get("val_attack_steps") == reference.get("val_attack_steps")
    )
    if not same:
        return []
    return [ReferenceCurve(label=c["label"], fb_passes=[p["fb_passes"] for p in c["points"]],
                           wall_s=[p["wall_s"] for p in c["points"]],
                           robust=[p["val_robust_acc"] for p in c["points"]], where=_where(c))
            for c in reference.get("curves", []) if c.get("points")]
