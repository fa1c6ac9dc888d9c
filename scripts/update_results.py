"""Archive finished runs' results.json into docs/results/ and regenerate docs/results.md from the archive.

    .venv/bin/python scripts/update_results.py runs/mnist-sgn-quick runs/other-run
    .venv/bin/python scripts/update_results.py            # only regenerate the table

The verdicts on the papers' claims have one home, docs/claims.md; results.md links to it instead of copying it,
so the two can never disagree.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from gradguard.report.results_table import archive_results, write_results_table

ROOT = Path(__file__).resolve().parents[1]
CLAIMS_LINK = ("The verdicts on the papers' claims, with links to the experiment records behind them, are in "
               "[docs/claims.md](claims.md).")


def regenerate(root: Path, run_dirs: Iterable[str | Path] = ()) -> Path:
    """Archive `run_dirs` under root/docs/results/ and rewrite root/docs/results.md from that archive alone."""
    archive = root / "docs" / "results"
    for run_dir in run_dirs:
        print("archived", archive_results(run_dir, archive))
    return write_results_table(archive, root / "docs" / "results.md", CLAIMS_LINK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="*", help="finished gradguard run directories to archive")
    args = parser.parse_args()
    print("wrote", regenerate(ROOT, args.run_dirs))


if __name__ == "__main__":
    main()
