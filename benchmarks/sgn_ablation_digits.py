"""SGN ablations and a small convergence comparison on the 8x8 digits set, over several seeds (docs/sgn.md).

Cheap enough for a shared 2-core CPU, so every variant runs on 3 seeds: the MNIST study can afford one seed only.
Each run trains a small CNN (Adam 1e-3, batch 64, eps 0.1 L-inf, no ramp-up) with a recipe from the registry, and
after every epoch measures PGD-20 accuracy on 397 held-out images and the wall time / forward+backward passes so far.

    python benchmarks/sgn_ablation_digits.py --out runs/sgn-digits.json            # runs everything
    python benchmarks/sgn_ablation_digits.py --table runs/sgn-digits.json          # prints the Markdown table
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradguard.attacks import PGD
from gradguard.threat import threat_model
from gradguard.training.recipe import StepContext
from gradguard.training.recipes import build_recipe

EPS = 0.1
EPOCHS = 10
# name -> (recipe, settings)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "standard": ("standard", {}),
    "pgd10": ("pgd_at", {"steps": 10}),
    "fast_at": ("fast_at", {}),
    "trades": ("trades", {"steps": 10}),
    "sgn": ("sgn", {}),
    "sgn_sign": ("sgn", {"response": "sign"}),
    "sgn_hidden": ("sgn", {"taps": ["input", "1", "3"]}),
    "sgn_noclean": ("sgn", {"clean_weight": 0.0}),
    "sgn_second_order": ("sgn", {"create_graph": "second_order"}),
    "sgn_alternating": ("sgn", {"adversary": "alternating"}),
    "sgn_rs": ("sgn", {"random_start": True, "step_scale": 1.25}),
}
SEEDS = (0, 1, 2)


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return x[perm[:1400]], y[perm[:1400]], x[perm[1400:]], y[perm[1400:]]


def cnn(seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10),
        )


def run(name: str, seed: int) -> dict[str, Any]:
    recipe_name, settings = VARIANTS[name]
    xtr, ytr, xte, yte = data()
    if recipe_name == "sgn":  # the documented ablations ran before refine_steps defaulted to 1: pin them at 0
        settings = {"refine_steps": 0, **settings}
    recipe = build_recipe(recipe_name, **settings)
    backbone = cnn(seed)
    model = recipe.wrap(backbone)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    seen = {"n": 0}
    backbone.register_forward_hook(lambda m, i, o: seen.__setitem__("n", seen["n"] + (o.shape[0] if o.requires_grad
                                                                                        else 0)))
    curve, wall, steps = [], 0.0, 0
    for epoch in range(EPOCHS):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(ytr), 64):
            xb, yb = xtr[perm[i:i + 64]], ytr[perm[i:i + 64]]
            ctx = StepContext(threat_model("linf", EPS), gen, steps, (epoch * 22 + i // 64) / (EPOCHS * 22))
            out = recipe.step(model, xb, yb, ctx)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            steps += 1
        wall += time.perf_counter() - t0
        plain = recipe.unwrap(model).eval()
        n_before = seen["n"]
        x_adv = PGD(eps=EPS, steps=20, seed=0)(plain, xte, yte)
        seen["n"] = n_before  # evaluation passes are not training passes
        with torch.no_grad():
            clean = float((plain(xte).argmax(1) == yte).float().mean())
            robust = float((plain(x_adv).argmax(1) == yte).float().mean())
        curve.append({"epoch": epoch + 1, "wall_s": wall, "fb_passes": seen["n"] / 64, "clean": clean,
                      "pgd20": robust})
    return {"variant": name, "seed": seed, "curve": curve}


def table(results: list[dict[str, Any]], threshold: float = 0.65) -> str:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault(r["variant"], []).append(r)
    lines = ["| variant | seeds | clean (mean) | PGD-20 final: per seed | mean | train wall s (mean) "
             f"| fb passes (batches) | first epoch with PGD-20 >= {threshold}: per seed |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
    for name in VARIANTS:
        rs = by.get(name, [])
        if not rs:
            continue
        finals = [r["curve"][-1] for r in rs]
        first = [next((c["epoch"] for c in r["curve"] if c["pgd20"] >= threshold), None) for r in rs]
        mean = sum(f["pgd20"] for f in finals) / len(finals)
        lines.append(
            f"| {name} | {len(rs)} | {sum(f['clean'] for f in finals) / len(finals):.3f} "
            f"| {' / '.join(format(f['pgd20'], '.3f') for f in finals)} | {mean:.3f} "
            f"| {sum(f['wall_s'] for f in finals) / len(finals):.1f} | {finals[0]['fb_passes']:.0f} "
            f"| {' / '.join('—' if e is None else str(e) for e in first)} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="write results JSON here (resumes: finished runs are kept)")
    p.add_argument("--table", type=Path, help="print the table of an existing results JSON")
    p.add_argument("--threshold", type=float, default=0.65, help="robust accuracy for time-to-robustness")
    p.add_argument("--only", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text()), args.threshold))
        return 0
    torch.set_num_threads(1)
    results = json.loads(args.out.read_text()) if args.out and args.out.exists() else []
    done = {(r["variant"], r["seed"]) for r in results}
    for seed in SEEDS:
        for name in args.only:
            if (name, seed) in done:
                continue
            r = run(name, seed)
            results.append(r)
            print(name, seed, r["curve"][-1], flush=True)
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results, args.threshold))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
