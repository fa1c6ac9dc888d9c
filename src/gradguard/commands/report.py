"""`gradguard report`: rewrite one run's report, or compare several runs side by side."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "write the report of a run, or compare several runs side by side (Markdown, HTML, plots)"
EPILOG = """examples:
  gradguard report runs/mnist-sgn-quick                       # (re)write that run's report
  gradguard report runs/sgn runs/pgd-at runs/fast-at --out reports/sgn-vs-at

A comparison labels each run by its folder (two runs of one config stay apart; equal folder names take their
parent folders too). Columns marked * are cumulative: in a chained evaluation each attack ran only on the points
still robust, so its number is the accuracy after it and every attack before it.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished run directories")
    parser.add_argument("--out", help="comparison output folder (default: reports/compare-<names>)")


def run(args: argparse.Namespace) -> int:
    from gradguard.report import write_comparison, write_run_report

    try:
        if len(args.run_dirs) == 1 and not args.out:
            page = write_run_report(args.run_dirs[0])
        else:
            out = args.out or Path("reports") / ("compare-" + "-".join(Path(d).name for d in args.run_dirs))[:120]
            page = write_comparison(args.run_dirs, out)
    except (FileNotFoundError, ValueError) as err:
        print(f"gradguard report: {err}", file=sys.stderr)
        return 1
    print(page)
    return 0
