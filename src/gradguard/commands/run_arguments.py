"""The arguments `gradguard train` and `gradguard run` share, declared once so their spelling and help agree."""

from __future__ import annotations

import argparse

from gradguard.rundir import IF_EXISTS
from gradguard.threads import parse_threads

__all__ = ["add_run_folder_arguments"]


def add_run_folder_arguments(parser: argparse.ArgumentParser, *, resume_help: str, threads_default: str) -> None:
    """--set, --out, --resume, --if-exists and --threads (the config argument differs per command)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable), e.g. --set train.epochs=2")
    parser.add_argument("--out", help="run directory (default: runs/<config name>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help=resume_help)
    parser.add_argument("--if-exists", choices=IF_EXISTS, default="error",
                        help="when the run folder already holds a run: error (default; says how to go on), new "
                             "(a new folder <dir>-<UTC date-time> beside it) or overwrite (replace it)")
    parser.add_argument("--threads", type=parse_threads, default=None, metavar="N",
                        help=f"torch CPU threads: N, 0 (leave as is) or auto (by load); default: {threads_default}")
