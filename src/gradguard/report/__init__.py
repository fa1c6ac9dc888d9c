"""Reports: Markdown, a self-contained HTML page and PNG plots, for one run or several side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gradguard.report.content import comparison_document, run_document
from gradguard.report.records import RESULTS_SCHEMA, RunRecord, load_run

__all__ = ["write_run_report", "write_comparison", "load_run", "RunRecord", "RESULTS_SCHEMA"]


def write_run_report(run_dir: str | Path) -> Path:
    """Write report.md, report.html and plots into `run_dir`; returns the HTML path."""
    record = load_run(run_dir)
    _, page = run_document(record, Path(run_dir)).write(Path(run_dir))
    return page


def write_comparison(run_dirs: Sequence[str | Path], out_dir: str | Path) -> Path:
    """Compare finished runs side by side: one table, overlaid plots; returns the HTML path."""
    if not run_dirs:
        raise ValueError("give at least one run directory")
    records = [load_run(d) for d in run_dirs]
    out = Path(out_dir)
    _, page = comparison_document(records, out).write(out)
    return page
