"""`gradguard run`: train, evaluate and report one experiment from a TOML config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gradguard.commands.run_arguments import add_run_folder_arguments

HELP = "train, evaluate and report one experiment from a TOML config, into one run directory"
EPILOG = """examples:
  gradguard run configs/mnist-sgn-quick.toml
  gradguard run configs/mnist-pgd-at.toml --set train.epochs=2 --set eval.eps=[0.1,0.2,0.3]
  gradguard run configs/mnist-sgn-quick.toml --out runs/try2
  gradguard run configs/mnist-sgn-quick.toml --if-exists new   # runs/mnist-sgn-quick taken: a new folder beside it
  gradguard run configs/mnist-sgn-quick.toml --resume runs/mnist-sgn-quick   # after Ctrl-C or a crash

The run directory holds config.toml, metrics.jsonl, checkpoints/, model.safetensors, evaluation.json,
results.json, report.md, report.html (self-contained) and the PNG plots.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment TOML file (see configs/)")
    add_run_folder_arguments(parser, resume_help="continue an interrupted run in RUN_DIR",
                             threads_default="the config's train.threads and eval.threads (1)")


def run(args: argparse.Namespace) -> int:
    from gradguard.config import ConfigError, load_config
    from gradguard.errors import EXIT_USER_ERROR
    from gradguard.rundir import choose_run_dir, interrupted_message
    from gradguard.runner import RunExistsError, run_experiment

    out = Path(args.resume or args.out or "runs/<name>")
    try:
        cfg = load_config(args.config, args.overrides)
        out = Path(args.resume or args.out or Path("runs") / cfg.name)
        if not args.resume:  # chosen here, so that Ctrl-C can name the folder
            wanted, out = out, choose_run_dir(out, args.if_exists, config=args.config)
            if out != wanted:
                print(f"gradguard run: {wanted} already holds a run (kept); this run goes to {out}", file=sys.stderr)
        out = run_experiment(cfg, run_dir=out, resume=bool(args.resume), threads=args.threads)
    except (ConfigError, RunExistsError, FileNotFoundError) as err:
        print(f"gradguard run: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(interrupted_message("gradguard run", out, args.config), file=sys.stderr)
        return 130
    print(out / "report.html")
    return 0
