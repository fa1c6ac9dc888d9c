"""`gradguard report`: not implemented yet (see the open issues)."""

from __future__ import annotations

import argparse

HELP = "(not implemented yet)"
EPILOG = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise SystemExit("gradguard: this command is not implemented yet")
