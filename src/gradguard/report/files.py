"""JSON files of runs and reports: written atomically (`gradguard.checkpoint.atomic_write_text`), read tolerantly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gradguard.checkpoint import atomic_write_text


def write_json_atomic(path: Path, data: Any) -> Path:
    """Indented JSON (non-JSON values as their str), written atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a torn last line (a run killed mid-write) is skipped."""
    records = []
    if not Path(path).exists():
        return records
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
