"""Benchmarks write their own experiment records: one generated block per study in docs/records/.

A record (docs/records/<date>-<slug>.md) is prose written by a person around tables that a benchmark regenerates.
`write_block` keeps that split: it replaces only the text between ``<!-- generated: NAME -->`` and
``<!-- end generated: NAME -->`` and stamps it with the date, command, commit and machine that produced it, so
re-running a study's summary refreshes its numbers without anyone copying a table by hand. A record that does not
exist yet is created with a header to fill in and a line in the records index.
"""

from __future__ import annotations

import platform
import re
import shlex
import sys
import time
from pathlib import Path

from gradguard.atomic import atomic_write_text
from gradguard.provenance import git_commit

__all__ = ["RECORDS", "provenance_line", "record_path", "write_block"]

RECORDS = Path(__file__).resolve().parents[1] / "docs" / "records"


def record_path(slug: str, date: str | None = None, records: Path = RECORDS) -> Path:
    """The record for `slug`: the newest existing ``*-<slug>.md``, else a new one dated `date` (default today, UTC)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", slug):
        raise ValueError(f"record slug {slug!r}: lower-case letters, digits and dashes only")
    existing = sorted(records.glob(f"????-??-??-{slug}.md"))
    if existing and date is None:
        return existing[-1]
    return records / f"{date or time.strftime('%Y-%m-%d', time.gmtime())}-{slug}.md"


def provenance_line(command: list[str] | None = None) -> str:
    """When, by what command, from which commit and on what machine a generated block was made."""
    cmd = command if command is not None else [Path(sys.argv[0]).name, *sys.argv[1:]]
    git = git_commit(Path(__file__).resolve().parent)
    commit = git.get("commit", "unknown")[:7] + (" (with uncommitted changes)" if git.get("dirty") else "")
    machine = f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()}"
    try:
        import torch

        machine += f", torch {torch.__version__}"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"_Generated {stamp} by `{shlex.join(cmd)}` at commit `{commit}` on {machine}._"


def _cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 0


def write_block(slug: str, name: str, body: str, *, title: str, summary: str, command: list[str] | None = None,
                records: Path = RECORDS) -> Path:
    """Put `body` (Markdown) in the generated block `name` of the record `slug`; returns the record's path.

    A new record gets a header (`title`, today's date, a line to fill in for the question) and a row in the records
    index (README.md, with `summary`); an existing one keeps every line outside the block.
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        raise ValueError(f"block name {name!r}: lower-case letters, digits, dashes and underscores only")
    path = record_path(slug, records=records)
    start, end = f"<!-- generated: {name} -->", f"<!-- end generated: {name} -->"
    block = f"{start}\n{provenance_line(command)}\n\n{body.strip()}\n{end}"
    if path.exists():
        text = path.read_text()
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
        text = pattern.sub(lambda _m: block, text, count=1) if pattern.search(text) else f"{text.rstrip()}\n\n{block}\n"
    else:
        date = path.name[:10]
        text = (f"# {title} ({date})\n\n- **Question**: (to fill in: what this study decides)\n"
                f"- **Command**: see the generated block below.\n\n{block}\n")
        _index(records, path, summary)
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    return path


def _index(records: Path, path: Path, summary: str) -> None:
    """Add the new record to the index table in records/README.md, kept in name order."""
    index = records / "README.md"
    if not index.exists():
        return
    lines = index.read_text().splitlines()
    row = f"| [{path.stem}]({path.name}) | {summary} |"
    rows = [i for i, line in enumerate(lines) if line.startswith("| [")]
    if not rows:
        lines += ["", "| record | study |", "| --- | --- |", row]
    else:
        table = sorted([lines[i] for i in rows] + [row])
        lines[rows[0]:rows[-1] + 1] = table
    atomic_write_text(index, "\n".join(lines) + "\n")
