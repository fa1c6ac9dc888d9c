"""The input response of an SGN run, switched on at test time after the fact: a first look at the active-inference
reading without training again (the study's sgn_active run is the full one).

A finished `gradguard train` run of the sgn recipe with the 'input' tap keeps its response module only in its
training checkpoint (checkpoints/last.safetensors; the exported model is the plain backbone). This rebuilds the
SGN from the run's config.toml, loads that checkpoint, activates the input response at the training eps times each
`--scale`, and scores the plain backbone and each active network on the first `--n` test images with the same
suite, the active ones with the bypass attacks and the purifier_bypass flag (`gradguard.evaluation.bypass`).

    OMP_NUM_THREADS=1 python benchmarks/sgn_active_probe.py RUN_DIR --n 200 --scale 1.0 0.25 [--quick] [--out DIR]

With `--out`, each result is also saved there (plain.json, active-<scale>.json) in the evaluator's format.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from gradguard import data
from gradguard.checkpoint import load_checkpoint, network_from_info
from gradguard.config import load_config
from gradguard.evaluation import evaluate
from gradguard.evaluation.bypass import evaluate_with_bypass
from gradguard.models.sgn import SelfGradientNetwork
from gradguard.models.sgn_active import activate
from gradguard.training.recipes import build_recipe


def trained_sgn(run_dir: Path) -> tuple[SelfGradientNetwork, float, str]:
    """(the run's SelfGradientNetwork with its trained weights, the training eps, the training norm)."""
    cfg = load_config(run_dir / "config.toml")
    if cfg.train.recipe != "sgn":
        raise SystemExit(f"{run_dir} trained recipe {cfg.train.recipe!r}, not 'sgn'")
    recipe = build_recipe("sgn", **cfg.train.recipe_args)
    backbone = network_from_info({"model": cfg.model.name, "dataset": cfg.data.dataset, "model_args": cfg.model.args,
                                  "randomization": cfg.model.randomization,
                                  "randomization_args": cfg.model.randomization_args})
    sgn = recipe.wrap(backbone)
    if not isinstance(sgn, SelfGradientNetwork):
        raise SystemExit(f"{run_dir}: the sgn recipe did not wrap the backbone in a SelfGradientNetwork")
    tensors, _ = load_checkpoint(run_dir / "checkpoints" / "last.safetensors")
    sgn.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    return sgn.eval(), cfg.train.eps, cfg.train.norm


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--suite", default="apgd")
    ap.add_argument("--scale", type=float, nargs="+", default=[1.0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="save plain.json and active-<scale>.json here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sgn, eps, norm = trained_sgn(args.run_dir)
    test = data.load(str(load_config(args.run_dir / "config.toml").data.dataset), split="test")
    x, y = test.subset(range(min(args.n, len(test)))).tensors()
    plain = evaluate(sgn.backbone, x, y, args.suite, eps, norm=norm, quick=args.quick, threads=1)
    print(f"plain backbone: {plain.summary()}\n", flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        plain.save(args.out / "plain.json")
    for scale in args.scale:
        active = activate(sgn, eps=eps, norm=norm, scale=scale).eval()
        result = evaluate_with_bypass(active, x, y, args.suite, eps, norm=norm, quick=args.quick, threads=1)
        print(f"active, purify_scale {scale:g}: {result.summary()}\n", flush=True)
        if args.out:
            result.save(args.out / f"active-{scale:g}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
