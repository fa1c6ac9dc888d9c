"""Archive finished runs' results.json into docs/results/ and regenerate docs/results.md from the archive.

    .venv/bin/python scripts/update_results.py runs/mnist-sgn-quick runs/other-run
    .venv/bin/python scripts/update_results.py            # only regenerate the table
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gradguard.report.results_table import archive_results, write_results_table

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT / "docs" / "results"
CLAIMS = ROOT / "docs" / "claims.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="*", help="finished gradguard run directories to archive")
    args = parser.parse_args()
    for run_dir in args.run_dirs:
        print("archived", archive_results(run_dir, ARCHIVE))
    extra = CLAIMS.read_text(encoding="utf-8") if CLAIMS.exists() else ""
    print("wrote", write_results_table(ARCHIVE, ROOT / "docs" / "results.md", extra))


if __name__ == "__main__":
    main()
