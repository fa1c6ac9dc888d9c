"""The `gradguard` command: one parser, one module per subcommand under `gradguard.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

from gradguard.errors import EXIT_USER_ERROR, UserError

# Subcommand name -> module in gradguard.commands. Each module defines
#   add_arguments(parser: argparse.ArgumentParser) -> None, HELP: str, EPILOG: str (examples), run(args) -> int
SUBCOMMANDS = {
    "data": "data",
    "train": "train",
    "eval": "evaluate",
    "run": "run",
    "report": "report",
    "bench": "bench",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradguard",
        description="Gradient-aware adversarial defences (SGN, GradDiv) and honest robustness evaluation.",
        epilog="Run 'gradguard COMMAND --help' for examples of each command.",
    )
    from gradguard import __version__

    parser.add_argument("--version", action="version", version=f"gradguard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(f"gradguard.commands.{module_name}")
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as err:  # one line, no traceback: the message names what is wrong (docs/training.md)
        print(f"gradguard {args.command}: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
