"""JSON files of runs and reports, written atomically (`gradguard.atomic.atomic_write_text`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gradguard.atomic import atomic_write_text


def write_json_atomic(path: Path, data: Any) -> Path:
    """Indented JSON (non-JSON values as their str), written atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
