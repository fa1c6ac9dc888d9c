"""benchmarks/record.py: generated blocks in experiment records replace only themselves and carry provenance."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from record import record_path, write_block  # noqa: E402

INDEX = """# Experiment records

| record | study |
| --- | --- |
| [2026-11-21-a](2026-11-21-a.md) | first |
| [2026-12-02-z](2026-12-02-z.md) | last |
"""


def _records(tmp_path: Path) -> Path:
    (tmp_path / "README.md").write_text(INDEX)
    return tmp_path


def test_new_record_gets_header_block_and_index_row(tmp_path: Path) -> None:
    records = _records(tmp_path)
    path = write_block("my-study", "table", "| a |\n| --- |\n| 1 |", title="My study", summary="what it is",
                       command=["python", "benchmarks/my_study.py", "summary"], records=records)
    text = path.read_text()
    assert path.name.endswith("-my-study.md") and text.startswith("# My study (")
    assert "<!-- generated: table -->" in text and "<!-- end generated: table -->" in text
    assert "`python benchmarks/my_study.py summary`" in text and "| 1 |" in text
    index = (records / "README.md").read_text().splitlines()
    rows = [line for line in index if line.startswith("| [")]
    assert rows == sorted(rows) and any("my-study" in r and "what it is" in r for r in rows)


def test_rewrite_replaces_only_its_block(tmp_path: Path) -> None:
    records = _records(tmp_path)
    path = records / "2026-12-01-s.md"
    path.write_text("# S\n\nprose before\n\n<!-- generated: t -->\nold 1\n<!-- end generated: t -->\n\nprose after\n"
                    "<!-- generated: u -->\nkeep me\n<!-- end generated: u -->\n")
    assert write_block("s", "t", "new 2", title="S", summary="s", records=records) == path
    text = path.read_text()
    assert "old 1" not in text and "new 2" in text
    assert "prose before" in text and "prose after" in text and "keep me" in text
    assert text.count("<!-- generated: t -->") == 1
    assert (records / "README.md").read_text() == INDEX  # an existing record is not indexed again


def test_missing_block_is_appended(tmp_path: Path) -> None:
    records = _records(tmp_path)
    path = records / "2026-12-01-s.md"
    path.write_text("# S\n\nhand-written\n")
    write_block("s", "t", "body", title="S", summary="s", records=records)
    text = path.read_text()
    assert text.startswith("# S\n\nhand-written\n") and text.rstrip().endswith("<!-- end generated: t -->")


def test_newest_record_of_a_slug_is_the_one_written(tmp_path: Path) -> None:
    for name in ("2026-11-21-s.md", "2026-12-02-s.md"):
        (tmp_path / name).write_text("x\n")
    assert record_path("s", records=tmp_path).name == "2026-12-02-s.md"
    assert record_path("s", date="2026-12-24", records=tmp_path).name == "2026-12-24-s.md"


@pytest.mark.parametrize("slug", ["Bad", "../x", "a b", ""])
def test_bad_slugs_are_refused(tmp_path: Path, slug: str) -> None:
    with pytest.raises(ValueError, match="slug"):
        record_path(slug, records=tmp_path)
