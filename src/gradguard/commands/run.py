"""`gradguard run`: train, evaluate and report one experiment from a TOML config."""

from __future__ import annotations

import argparse
import sys

from gradguard.threads import parse_threads

HELP = "train, evaluate and report one experiment from a TOML config, into one run directory"
EPILOG = """examples:
  gradguard run configs/mnist-sgn-quick.toml
  gradguard run configs/mnist-pgd-at.toml --set train.epochs=2 --set eval.eps=[0.1,0.2,0.3]
  gradguard run configs/mnist-sgn-quick.toml --out runs/try2
  gradguard run configs/mnist-sgn-quick.toml --resume runs/mnist-sgn-quick   # after Ctrl-C or a crash

The run directory holds config.toml, metrics.jsonl, checkpoints/, model.safetensors, evaluation.json,
results.json, report.md, report.html (self-contained) and the PNG plots.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment TOML file (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.epochs=2 (repeatable)")
    parser.add_argument("--out", help="run directory (default: runs/<config name>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run in RUN_DIR")
    parser.add_argument("--threads", type=parse_threads, default=None, metavar="N",
                        help="torch CPU threads: N, 0 (leave as is) or auto (by load); "
                             "default: the config's train.threads and eval.threads (1)")


def run(args: argparse.Namespace) -> int:
    from gradguard.config import ConfigError
    from gradguard.runner import RunExistsError, run_experiment

    try:
        out = run_experiment(args.config, overrides=args.overrides, run_dir=args.resume or args.out,
                             resume=bool(args.resume), threads=args.threads)
    except (ConfigError, RunExistsError, FileNotFoundError) as err:
        print(f"gradguard run: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        target = args.resume or args.out or "runs/<name>"
        print(f"gradguard run: interrupted; continue with: gradguard run {args.config} --resume {target}",
              file=sys.stderr)
        return 130
    print(out / "report.html")
    return 0
