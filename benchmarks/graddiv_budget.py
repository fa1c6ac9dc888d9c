"""GradDiv against the attacker's budget: EOT-PGD at k draws, the geometry behind it, and a verdict by a stated rule.

Noise-injection (RSE) LeNet-5 trained on all 60,000 MNIST images with the `graddiv` recipe, for lam in {0, 1, 4, 16}
(regularizer `mrl`) and n_draws in {4, 8}, plus the `eot` regularizer (gradguard's extension beyond the paper),
two seeds each. Every model is scored by EOT-PGD (50 steps) at k in {1, 5, 20, 100} with m in {1, 10} draw
predictions, and its geometry is measured: |E u| from 200 draws per input (u the unit input gradient of a draw),
beside the mean pairwise cosine c and the mean resultant length R of n_draws draws (so sqrt(c) ~ |E u| and the
1/sqrt(k) threshold can be checked).

    .venv/bin/python benchmarks/graddiv_budget.py --plan        # measure the machine, print the plan, run nothing
    .venv/bin/python benchmarks/graddiv_budget.py               # the study: 2 one-thread workers, then the summary
    .venv/bin/python benchmarks/graddiv_budget.py --toy --out runs/graddiv-budget-toy   # end to end in < 60 s
    .venv/bin/python benchmarks/graddiv_budget.py --summary-only

Resumable: each (config, seed) trains into OUT/runs/<job>/ (skipped when its model exists, resumed from its last
checkpoint) and every evaluation writes OUT/runs/<job>/eval/<name>.json (skipped when present). The sizing is fixed
in OUT/plan.json on the first start, so a resumed study keeps it. Weights never enter git (.gitignore).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from gradguard.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "graddiv_budget"
BUDGET_S = 2.5 * 3600


@dataclass(frozen=True)
class Size:
    """Everything that sets the study's cost."""

    dataset: str = "mnist"
    model: str = "lenet5"
    train_subset: int = 0  # 0: all training images (val_size is 0, so all 60,000)
    epochs: float = 2.0
    batch_size: int = 64
    eps: float = 0.1
    steps: int = 50  # EOT-PGD steps
    ks: tuple[int, ...] = (1, 5, 20, 100)
    ms: tuple[int, ...] = (1, 10)
    n_eval: int = 500  # first test images, for every k but the largest
    n_eval_kmax: int = 500  # test images for the largest k (the costly one)
    n_geom: int = 100  # test images for the geometry
    geom_draws: int = 200
    transfer_draws: int = 5  # frozen draws of the transfer matrix (on n_eval_kmax images)
    lams: tuple[float, ...] = (0.0, 1.0, 4.0, 16.0)
    draws: tuple[int, ...] = (4, 8)
    #: (regularizer, lam, n_draws) of our extension beyond the paper, beside the paper's `mrl` grid
    extension: tuple[tuple[str, float, int], ...] = (("eot", 4.0, 8), ("eot", 16.0, 8))
    seeds: tuple[int, ...] = (0, 1)


FULL = Size()
TOY = Size(dataset="digits", model="madry-cnn", train_subset=128, epochs=1, eps=0.1, steps=2, ks=(1, 5, 20, 100),
           n_eval=8, n_eval_kmax=4, n_geom=4, geom_draws=20, transfer_draws=2, lams=(0.0, 4.0), draws=(2,),
           extension=(("eot", 4.0, 2),))
#: (epochs, images at the largest k) in order of preference; the first that fits the budget is taken.
SIZINGS = [(3, 500), (2, 500), (2, 250), (1.5, 250), (1, 500), (1, 250), (1, 100), (0.5, 100)]


@dataclass(frozen=True)
class Config:
    regularizer: str
    lam: float
    n_draws: int

    @property
    def name(self) -> str:
        return f"{self.regularizer}-lam{self.lam:g}-n{self.n_draws}"


def configs(size: Size) -> list[Config]:
    grid = [Config("mrl", lam, n) for n in size.draws for lam in size.lams]
    return grid + [Config(r, lam, n) for r, lam, n in size.extension]


def jobs(size: Size) -> list[tuple[Config, int]]:
    return [(c, s) for c in configs(size) for s in size.seeds]


def job_dir(out: Path, cfg: Config, seed: int) -> Path:
    return out / "runs" / f"{cfg.name}-s{seed}"


# --------------------------------------------------------------------------------------------------- training


def train_config(size: Size, cfg: Config, seed: int) -> Any:
    from gradguard.config import parse_config

    data = {
        "name": f"graddiv-budget-{cfg.name}", "seed": seed,
        "data": {"dataset": size.dataset, "val_size": 0, "train_subset": size.train_subset},
        "model": {"name": size.model, "randomization": "noise"},
        "train": {"recipe": "graddiv", "epochs": size.epochs, "batch_size": size.batch_size, "optimizer": "adam",
                  "lr": 1e-3, "weight_decay": 0.0, "schedule": "constant", "norm": "linf", "eps": size.eps,
                  "threads": 1, "progress": False, "tensorboard": False, "log_every": 50, "checkpoint_every": 200,
                  "recipe_args": {"regularizer": cfg.regularizer, "lam": cfg.lam, "n_draws": cfg.n_draws}},
    }
    return parse_config(data, source=f"graddiv_budget {cfg.name} seed {seed}")


def train_job(out: Path, size: Size, cfg: Config, seed: int) -> None:
    from gradguard.training import train

    run = job_dir(out, cfg, seed)
    if (run / "model.safetensors").exists():
        return
    resume = (run / "checkpoints" / "last.safetensors").exists()
    if run.exists() and not resume:
        shutil.rmtree(run)  # killed before its first checkpoint: nothing to keep
    print(f"[budget] training {run.name}", flush=True)
    train(train_config(size, cfg, seed), run, resume=resume)


# ------------------------------------------------------------------------------------------------- evaluation


def _test_set(size: Size, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from gradguard import data

    test = data.load(size.dataset, "test")
    return test.subset(torch.arange(n)).tensors()


def _seeded(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    from gradguard.models import set_generator

    return set_generator(model, torch.Generator().manual_seed(seed))


def _accuracy(correct: torch.Tensor) -> dict[str, float]:
    n = correct.numel()
    p = correct.float().mean().item()
    return {"acc": p, "se": math.sqrt(max(p * (1 - p), 0.0) / n), "n": n}


def eval_attack(model: torch.nn.Module, size: Size, k: int, seed: int) -> dict[str, Any]:
    """EOT-PGD over k draws; robust accuracy of m-draw predictions of the adversarial points, for each m."""
    from gradguard.attacks import PGD
    from gradguard.evaluation import predict_labels

    n = size.n_eval_kmax if k == max(size.ks) else size.n_eval
    x, y = _test_set(size, n)
    _seeded(model, 10_000 * seed + k)
    t0 = time.perf_counter()
    x_adv = PGD(eps=size.eps, steps=size.steps, eot=k, seed=k)(model, x, y)
    wall = time.perf_counter() - t0
    robust = {str(m): _accuracy(predict_labels(model, x_adv, m, randomized=True) == y) for m in size.ms}
    return {"k": k, "eps": size.eps, "steps": size.steps, "robust": robust, "attack_wall_s": wall}


def eval_clean(model: torch.nn.Module, size: Size, seed: int) -> dict[str, Any]:
    from gradguard.evaluation import predict_labels

    x, y = _test_set(size, size.n_eval)
    _seeded(model, 10_000 * seed)
    return {"clean": {str(m): _accuracy(predict_labels(model, x, m, randomized=True) == y) for m in size.ms}}


def eval_geometry(model: torch.nn.Module, size: Size, n_draws: int, seed: int) -> dict[str, Any]:
    """|E u| from `geom_draws` draws per input (unbiased: E u_i . u_j = |E u|^2 for i != j), beside the mean
    pairwise cosine and R of the first n_draws draws (what training saw) and the EOT energy share."""
    from gradguard.graddiv import (
        draw_gradients,
        eot_energy_share,
        mean_pairwise_cosine,
        mean_resultant_length,
        unit_directions,
    )

    x, y = _test_set(size, size.n_geom)
    _seeded(model, 10_000 * seed + 7)
    c_all, r_n, c_n, share = [], [], [], []
    for start in range(0, len(x), 5):
        g, _, _ = draw_gradients(model, x[start:start + 5], y[start:start + 5], size.geom_draws)
        u = unit_directions(g)
        c_all.append(mean_pairwise_cosine(u))
        r_n.append(mean_resultant_length(u[:, :n_draws]))
        c_n.append(mean_pairwise_cosine(u[:, :n_draws]))
        share.append(eot_energy_share(g))
    c = torch.cat(c_all)
    return {
        "n_inputs": len(x), "draws": size.geom_draws, "n_draws": n_draws,
        "mean_u_norm": c.clamp_min(0).sqrt().mean().item(),  # |E u| per input, averaged
        "cos_all": c.mean().item(),
        "cos_n": torch.cat(c_n).mean().item(),
        "mrl_n": torch.cat(r_n).mean().item(),
        "eot_energy_share": torch.cat(share).mean().item(),
        "inv_sqrt_k": {str(k): 1 / math.sqrt(k) for k in size.ks},
    }


def eval_transfer(model: torch.nn.Module, size: Size, seed: int) -> dict[str, Any]:
    """The transfer matrix between `transfer_draws` frozen draws on the first `n_eval_kmax` test images: its
    diagonal is white-box success on one fixed sample model (per-draw robustness), its mean off-diagonal the
    transferability among sample models (PGD with the study's eps and steps, no EOT: each draw is deterministic)."""
    from gradguard.attacks import PGD
    from gradguard.graddiv import transfer_matrix

    x, y = _test_set(size, size.n_eval_kmax)
    attack = lambda i: PGD(eps=size.eps, steps=size.steps, seed=100 + i)  # noqa: E731
    return transfer_matrix(model, x, y, size.transfer_draws, attack, seed=1000 * seed).to_dict()


def eval_job(out: Path, size: Size, cfg: Config, seed: int) -> None:
    run = job_dir(out, cfg, seed)
    todo: dict[str, Any] = {"clean": lambda m: eval_clean(m, size, seed),
                            "geometry": lambda m: eval_geometry(m, size, cfg.n_draws, seed)}
    todo.update({f"eot-k{k}": (lambda m, k=k: eval_attack(m, size, k, seed)) for k in size.ks})
    todo["transfer"] = lambda m: eval_transfer(m, size, seed)
    write_evaluations(run, todo, {"job": run.name, "config": asdict(cfg), "seed": seed}, tag="budget")


def write_evaluations(run: Path, todo: dict[str, Any], head: dict[str, Any], *, tag: str) -> None:
    """Each evaluation `name -> fn(model)` into run/eval/<name>.json (with `head` and its wall time), skipping the
    ones present, so that a stopped study resumes; the model is loaded only when something is left to do."""
    from gradguard.checkpoint import load_model

    model = None
    for name, fn in todo.items():
        path = run / "eval" / f"{name}.json"
        if path.exists():
            continue
        model = model or load_model(run)
        print(f"[{tag}] {run.name}: {name}", flush=True)
        t0 = time.perf_counter()
        record = {**head, **fn(model), "wall_s": time.perf_counter() - t0}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=1))


# ------------------------------------------------------------------------------------- cost and sizing


def calibrate(size: Size) -> dict[str, float]:
    """Measured on this machine, one thread: training images/s per n_draws (GradDiv penalty on) and seconds per
    forward+backward row of an EOT gradient."""
    from gradguard.gradients import input_gradient
    from gradguard.models import build_model, randomize
    from gradguard.threat import threat_model
    from gradguard.training.recipe import StepContext
    from gradguard.training.recipes import build_recipe

    torch.set_num_threads(1)
    x, y = _test_set(size, size.batch_size)
    model = randomize(build_model(size.model, size.dataset), "noise")
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    rates: dict[str, float] = {}
    for n in sorted({c.n_draws for c in configs(size)}):
        recipe = build_recipe("graddiv", lam=1.0, n_draws=n)
        ctx = StepContext(threat_model("linf", size.eps), torch.Generator().manual_seed(0), 0, 0.0, len(x))
        times = []
        for _ in range(4):
            t0 = time.perf_counter()
            out = recipe.step(model, x, y, ctx)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        rates[f"train_img_per_s_n{n}"] = len(x) / min(times[1:])
    model.eval()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        input_gradient(model, x, y, "ce", eot=5)
        times.append(time.perf_counter() - t0)
    rates["eot_s_per_row"] = min(times[1:]) / (len(x) * 5)
    return rates


def job_cost(size: Size, cfg: Config, rates: dict[str, float], n_train: int) -> float:
    """Estimated seconds of one (config, seed): training, the attacks, predictions, the geometry and the transfer
    matrix."""
    train_s = size.epochs * n_train / rates[f"train_img_per_s_n{cfg.n_draws}"]
    k_max = max(size.ks)
    rows = size.steps * sum(k * (size.n_eval_kmax if k == k_max else size.n_eval) for k in size.ks)
    rows += size.n_geom * size.geom_draws + sum(size.ms) * size.n_eval * (len(size.ks) + 1) / 3  # fwd ~ 1/3 f+b
    rows += size.transfer_draws * size.n_eval_kmax * (size.steps + size.transfer_draws / 3)  # the transfer matrix
    return train_s + rows * rates["eot_s_per_row"]


def assign(size: Size, rates: dict[str, float], n_train: int, workers: int) -> tuple[list[list[str]], float]:
    """Longest job first onto the least loaded worker; returns the job names per worker and the longest load."""
    costs = sorted(((job_cost(size, c, rates, n_train), f"{c.name}-s{s}") for c, s in jobs(size)), reverse=True)
    loads = [0.0] * workers
    share: list[list[str]] = [[] for _ in range(workers)]
    for cost, name in costs:
        i = loads.index(min(loads))
        loads[i] += cost
        share[i].append(name)
    return share, max(loads)


def fit(size: Size, rates: dict[str, float], n_train: int, workers: int, budget_s: float) -> Size:
    """The first (epochs, images at the largest k) of `SIZINGS` whose estimate fits the budget (else the last)."""
    for epochs, n_kmax in SIZINGS:
        trial = replace(size, epochs=epochs, n_eval_kmax=min(n_kmax, size.n_eval))
        if assign(trial, rates, n_train, workers)[1] <= budget_s:
            return trial
    return replace(size, epochs=SIZINGS[-1][0], n_eval_kmax=min(SIZINGS[-1][1], size.n_eval))


def _n_train(size: Size) -> int:
    from gradguard import data

    n = len(data.load(size.dataset, "train"))
    return min(n, size.train_subset) if size.train_subset else n


def make_plan(out: Path, size: Size, workers: int, budget_s: float, toy: bool) -> dict[str, Any]:
    path = out / "plan.json"
    if path.exists():
        return json.loads(path.read_text())
    rates = calibrate(size)
    n_train = _n_train(size)
    sized = size if toy else fit(size, rates, n_train, workers, budget_s)
    share, longest = assign(sized, rates, n_train, workers)
    plan = {"size": asdict(sized), "rates": rates, "n_train": n_train, "workers": share, "estimate_s": longest,
            "budget_s": budget_s, "toy": toy, "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d")}
    if not _over_budget(plan):  # an over-budget plan is shown, never fixed: the next start measures again
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(plan, indent=1))
    return plan


def _over_budget(plan: dict[str, Any]) -> bool:
    return plan["estimate_s"] > plan["budget_s"] and not plan["toy"]


def size_of(plan: dict[str, Any]) -> Size:
    s = dict(plan["size"])
    for key in ("ks", "ms", "lams", "draws", "seeds"):
        s[key] = tuple(s[key])
    s["extension"] = tuple(tuple(e) for e in s["extension"])
    return Size(**s)


def describe_plan(plan: dict[str, Any]) -> str:
    s, r = plan["size"], plan["rates"]
    over = _over_budget(plan)
    rates = ", ".join(f"{k} {v:.3g}" for k, v in r.items())
    return (f"[budget] plan: {len(plan['workers'])} one-thread workers, {sum(map(len, plan['workers']))} jobs "
            f"(configs x seeds {s['seeds']}), {plan['n_train']} training images x {s['epochs']} epochs, EOT-PGD-"
            f"{s['steps']} at k {s['ks']} on {s['n_eval']} images ({s['n_eval_kmax']} at k={max(s['ks'])}), "
            f"geometry {s['geom_draws']} draws x {s['n_geom']} images\n[budget] measured: {rates}\n"
            f"[budget] estimate: {plan['estimate_s'] / 3600:.2f} h wall (budget {plan['budget_s'] / 3600:.2f} h)"
            + ("\n[budget] WARNING: even the smallest sizing is over budget on this machine now (other load?); "
               "run again when the cores are free, or accept a longer run with --budget-h" if over else ""))


# ------------------------------------------------------------------------------------------------ running


def run_worker(out: Path, index: int) -> None:
    plan = json.loads((out / "plan.json").read_text())
    size = size_of(plan)
    by_name = {f"{c.name}-s{s}": (c, s) for c, s in jobs(size)}
    for name in plan["workers"][index]:
        cfg, seed = by_name[name]
        train_job(out, size, cfg, seed)
        eval_job(out, size, cfg, seed)


def run_workers(out: Path, n: int) -> None:
    """`n` subprocesses side by side, each one thread (OMP_NUM_THREADS=1), each with its share of the jobs."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, __file__, "--out", str(out), "--worker", str(i)], env=env)
             for i in range(n)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"[budget] worker exit codes {codes}: rerun the same command to resume")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help=f"default {DEFAULT_OUT} (toy: runs/graddiv-budget-toy)")
    p.add_argument("--toy", action="store_true", help="tiny sizes on the offline digits set: the plumbing, < 60 s")
    p.add_argument("--jobs", type=int, default=2, help="one-thread workers side by side")
    p.add_argument("--budget-h", type=float, default=BUDGET_S / 3600)
    p.add_argument("--plan", action="store_true", help="measure, print the plan and stop")
    p.add_argument("--summary-only", action="store_true")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = args.out or (ROOT / "runs" / "graddiv-budget-toy" if args.toy else DEFAULT_OUT)
    torch.set_num_threads(1)
    if args.worker is not None:
        run_worker(out, args.worker)
        return
    from graddiv_budget_summary import write_summary  # noqa: PLC0415 (a sibling script, found via sys.path[0])

    if not args.summary_only:
        plan = make_plan(out, TOY if args.toy else FULL, args.jobs, args.budget_h * 3600, args.toy)
        print(describe_plan(plan), flush=True)
        if args.plan:
            return
        if _over_budget(plan):
            raise SystemExit(2)
        run_workers(out, len(plan["workers"]))
    from record import RECORDS  # noqa: PLC0415

    # The study's own output (not a toy or a scratch folder) refreshes its experiment record.
    print(write_summary(out, records=RECORDS if out.resolve() == DEFAULT_OUT.resolve() else None))


if __name__ == "__main__":
    main()
