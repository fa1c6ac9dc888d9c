"""`gradguard train`: run one experiment config into a run directory (config copy, metrics, checkpoints, model)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gradguard.commands.run_arguments import add_run_folder_arguments

HELP = "train a model from a TOML experiment config (resumable; torchrun for multi-GPU)"
EPILOG = """examples:
  gradguard train configs/mnist-pgd-at.toml
  gradguard train configs/mnist-pgd-at.toml --set train.epochs=2 --set train.lr=0.05 --out runs/quick
  gradguard train --resume runs/quick            # continue after Ctrl-C, a crash or SIGKILL
  gradguard train configs/mnist-pgd-at.toml --if-exists new   # runs/<name> taken: a new folder beside it
  torchrun --nproc_per_node=4 -m gradguard train configs/cifar10-pgd-at.toml --out runs/c10

--set takes a dotted key and a TOML value (train.eps=0.1, train.milestones=[0.5,0.75], model.name=madry-cnn);
every key of the config can be overridden this way (schema: docs/training.md).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="experiment TOML (optional with --resume: the run's own copy)")
    add_run_folder_arguments(parser, resume_help="continue the run in RUN_DIR from its last checkpoint",
                             threads_default="the config's train.threads (1)")


def run(args: argparse.Namespace) -> int:
    from gradguard.config import ConfigError, load_config
    from gradguard.errors import EXIT_USER_ERROR
    from gradguard.rundir import choose_run_dir, interrupted_message
    from gradguard.training import train

    run_dir = Path(args.resume or args.out or "runs/<name>")
    try:
        if args.resume:
            run_dir = Path(args.resume)
            own = run_dir / "config.toml"
            if args.config and Path(args.config).resolve() != own.resolve():
                print(f"gradguard train: --resume uses {own}; the CONFIG argument is ignored", file=sys.stderr)
            if args.overrides:
                raise ConfigError("--set cannot be combined with --resume: a resumed run keeps its config")
            if run_dir.is_dir() and not own.exists():  # stopped before it wrote anything: nothing to continue
                raise ConfigError(f"{run_dir} has no config.toml: the run stopped before it started, so there is "
                                  f"nothing to resume; start it again with: gradguard train CONFIG --out {run_dir}")
            cfg = load_config(own)
        else:
            if not args.config:
                raise ConfigError("give a CONFIG file (or --resume RUN_DIR)")
            cfg = load_config(args.config, args.overrides)
            run_dir = Path(args.out) if args.out else Path("runs") / cfg.name
            if args.if_exists != "error":  # "error" is the trainer's own check
                wanted, run_dir = run_dir, choose_run_dir(run_dir, args.if_exists, command="gradguard train")
                if run_dir != wanted:
                    print(f"gradguard train: {wanted} already holds a run (kept); this run goes to {run_dir}",
                          file=sys.stderr)
        summary = train(cfg, run_dir, resume=bool(args.resume), threads=args.threads)
    except KeyboardInterrupt:
        print(interrupted_message("gradguard train", run_dir), file=sys.stderr)
        return 130
    except (ConfigError, FileExistsError, FileNotFoundError) as e:
        print(f"gradguard train: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    # a damaged checkpoint, a refused resume, a locked folder, a dataset problem (exit 1) or a NaN/inf (exit 3)
    # reach gradguard.cli.main, which prints every GradguardError on one line
    final = summary.get("final_val") or {}
    brief = {k: summary.get(k) for k in ("run_dir", "step", "epochs", "fb_passes", "wall_s")}
    brief.update({k: final.get(k) for k in ("val_clean_acc", "val_robust_acc")})
    print(json.dumps(brief))
    return 0
