"""`gradguard eval`: evaluate an exported model against an attack suite; print the table and flags, save JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gradguard.evaluation.suites import SUITES
from gradguard.threads import DEFAULT_THREADS, parse_threads

HELP = "evaluate an exported model against an attack suite (worst case, m-draw protocol, masking checks)"
EPILOG = """examples:
  gradguard eval --checkpoint runs/mnist-sgn-quick/model.safetensors --eps 0.1 0.2 0.3 --quick --n 200
  gradguard eval --checkpoint runs/mnist-sgn-quick --suite standard --eps 0.3 --out runs/mnist-sgn-quick/eval.json
  gradguard eval --checkpoint runs/cifar-rse --suite rand --eps 0.031 --m 10 --k 20 --dataset cifar10
  gradguard eval --checkpoint runs/mnist-at --norm l2 --eps 1 2 --mode independent   # per-attack numbers too
  torchrun --nproc_per_node 2 -m gradguard eval --checkpoint runs/cifar-at --eps 0.031   # test set sharded

Suites: 'standard' = APGD-CE, APGD-T (DLR), Square; 'rand' = APGD-CE and APGD-DLR with EOT over k=20 draws,
then Square on the same k draws (AutoAttack's defaults: 100 steps, 9 targets, 5000 queries; --quick: 20 steps,
3 targets, 500 queries, for smoke runs only: it overstates robust accuracy).
--eps defaults to 0.3 (MNIST-like) or 8/255 (CIFAR-10, STL-10) for linf, 2.0 or 0.5 for l2.
The n points are the first n of the test split. Exit status 3 with --strict when a masking check fires.
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="exported model: model.safetensors, its .json, or a run directory")
    parser.add_argument("--suite", default="standard", choices=list(SUITES), help="attack ensemble")
    parser.add_argument("--eps", type=float, nargs="+", default=None, help="one or more radii (see below)")
    parser.add_argument("--norm", default="linf", choices=["linf", "l2"], help="threat model (default linf)")
    parser.add_argument("--dataset", default=None, help="test data (default: the dataset the model was trained on)")
    parser.add_argument("--data-root", default=None, help="folder (or archive) to read the dataset from first")
    parser.add_argument("--n", type=int, default=1000, help="first n test points (0: all; default 1000)")
    parser.add_argument("--m", type=int, default=1, help="draws averaged per prediction (randomized models)")
    parser.add_argument("--k", type=int, default=None, help="EOT draws per gradient (default: 1 standard, 20 rand)")
    parser.add_argument("--mode", default="chained", choices=["chained", "independent"],
                        help="chained: each attack only on points still robust (cheap, default); independent: "
                             "every attack on every point (per-attack robust accuracy on the full set)")
    parser.add_argument("--quick", action="store_true", help="fewer steps and queries (CPU smoke runs)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--no-checks", action="store_true", help="skip the gradient and large-eps masking checks")
    parser.add_argument("--out", default=None, metavar="JSON", help="write the result here (atomic)")
    parser.add_argument("--strict", action="store_true", help="exit with status 3 when a masking check fires")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--threads", type=parse_threads, default=DEFAULT_THREADS, metavar="N",
                        help="torch CPU threads: N, 0 (leave as is) or auto (by load); default: %(default)s")


def _model_info(path: Path) -> dict[str, Any]:
    """The exported model's JSON record (zoo name, dataset, randomization...); {} when unreadable."""
    from gradguard.checkpoint import read_metadata

    file = path / "model.safetensors" if path.is_dir() else path.with_suffix(".safetensors")
    try:
        return read_metadata(file)
    except Exception:  # the loader below reports a broken file with a precise message
        return {}


def run(args: argparse.Namespace) -> int:
    from gradguard.training import distributed as ddp

    try:
        info = ddp.setup(args.device or "auto")  # joins a torchrun job when WORLD_SIZE > 1
    except RuntimeError as err:
        raise SystemExit(f"gradguard eval: {err}") from None
    try:
        return _evaluate(args, info.rank, str(info.device))
    finally:
        ddp.teardown(info)


def _evaluate(args: argparse.Namespace, rank: int, device: str) -> int:
    from gradguard import data
    from gradguard.checkpoint import CheckpointError, load_model
    from gradguard.evaluation import evaluate
    from gradguard.evaluation.bypass import evaluate_with_bypass, purifier_of
    from gradguard.specs import default_eps

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    sink = None if args.quiet or rank else log  # also drives the per-attack progress bars (lines off a terminal)
    say = sink or (lambda line: None)
    path = Path(args.checkpoint)
    if not path.exists():
        raise SystemExit(f"gradguard eval: checkpoint {path} does not exist")
    info = _model_info(path)
    try:
        model = load_model(path, device=device)
    except CheckpointError as err:
        raise SystemExit(f"gradguard eval: {err}") from None
    dataset = args.dataset or info.get("dataset")
    if not dataset:
        raise SystemExit(f"gradguard eval: {path} does not say which dataset it was trained on; pass --dataset")
    try:
        test = data.load(dataset, split="test", root=args.data_root)
    except (data.DatasetError, ValueError) as err:
        raise SystemExit(f"gradguard eval: {err}") from None
    if args.n < 0:
        raise SystemExit(f"gradguard eval: --n must be >= 0, got {args.n}")
    if args.n and args.n < len(test):
        test = test.subset(range(args.n))
    eps = args.eps
    if eps is None:
        eps = [default_eps(args.norm, test.spec.channels)]
    suite = args.suite + (" (quick: overstates robust accuracy)" if args.quick else "")
    say(f"evaluating {path} on {len(test)} {dataset} test points ({test.source}), suite {suite}, "
        f"{args.norm} eps {eps}, m={args.m}, k={args.k or 'suite default'}, {args.mode}, device {device}")
    x, y = test.tensors()
    # A network that purifies its input with its own gradient is scored with attacks that go around it too.
    run_eval = evaluate_with_bypass if purifier_of(model) is not None else evaluate
    if run_eval is evaluate_with_bypass:
        say("the model purifies its input with its own gradient: BPDA and transfer from its backbone are added")
    try:
        result = run_eval(
            model, x, y, args.suite, eps, norm=args.norm, m=args.m, k=args.k, batch_size=args.batch_size,
            seed=args.seed, mode=args.mode, quick=args.quick, run_checks=not args.no_checks, progress=sink,
            threads=args.threads,
        )
    except ValueError as err:
        raise SystemExit(f"gradguard eval: {err}") from None
    result.meta.update({
        "checkpoint": str(path), "dataset": test.spec.name, "data_source": test.source, "split": "test",
        "model_info": {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool, dict, list))},
        "cli_args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
    })
    if rank == 0:
        print(result.summary())
        if args.out:
            print(f"wrote {result.save(args.out)}")
    if args.strict and result.triggered_flags:
        return 3
    return 0
