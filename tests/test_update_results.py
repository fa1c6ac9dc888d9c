"""scripts/update_results.py: results.md holds the archived runs and links to docs/claims.md, never a copy of it."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "update_results.py"


def _script():
    spec = importlib.util.spec_from_file_location("update_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_page_links_to_claims_instead_of_copying_them(tmp_path: Path) -> None:
    archived = sorted((REPO / "docs" / "results").glob("*.json"))[0]
    (tmp_path / "docs" / "results").mkdir(parents=True)
    shutil.copy(archived, tmp_path / "docs" / "results" / archived.name)
    (tmp_path / "docs" / "claims.md").write_text("# Claims\n\n| claim | status |\n| --- | --- |\n| MARKER | held |\n")

    text = _script().regenerate(tmp_path).read_text(encoding="utf-8")

    assert f"| {archived.stem} |" in text                 # the archived run's row
    assert "MARKER" not in text and "# Claims" not in text  # no copy of the claims page
    assert "[docs/claims.md](claims.md)" in text
