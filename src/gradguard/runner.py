"""`gradguard run`: one experiment from config to report (train, evaluate, measure gradients, write everything).

The runner is glue only: the trainer trains, the evaluator attacks, GradDiv's statistics measure, the report
renders. What it owns is the run record `results.json`: what was run, on what, how, and what came out.
"""

from __future__ import annotations

import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gradguard.atomic import atomic_write_text
from gradguard.config import ConfigError, ExperimentConfig, dump_config, load_config
from gradguard.report.files import write_json_atomic
from gradguard.report.records import RESULTS_SCHEMA
from gradguard.rundir import IfExists, RunExistsError, choose_run_dir
from gradguard.runlock import hold_run_dir, run_dir_is_empty
from gradguard.threads import ThreadsSetting

if TYPE_CHECKING:
    from gradguard.evaluation.result import EvalResult

__all__ = ["run_experiment", "RunExistsError"]


def _log(message: str) -> None:
    print(f"[gradguard run] {message}", file=sys.stderr, flush=True)


def _eval_inputs(cfg: ExperimentConfig, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The first n test images (a fixed, documented subset: the same for every run of a dataset), and what the
    data was: its source (which copy: for CIFAR-10, the exact batches or the lossy JPEG archive), lossy or not,
    how it was verified and the checksums."""
    from gradguard import data

    root = cfg.data.root or None
    test = data.load(cfg.data.dataset, "test", root=root)
    n = n or cfg.eval.n or cfg.data.test_subset or len(test)
    test = test.subset(torch.arange(min(n, len(test))))
    x, y = test.tensors()
    facts = data.info(cfg.data.dataset, root=root, check_cache=False)
    record = {"name": cfg.data.dataset, "source": facts.get("source", test.source),
              "lossy": bool(facts.get("lossy", False)), "n_eval": len(y)}
    record.update({k: facts.get(k) for k in ("verified", "verification", "checksums")})
    return x, y, record


def run_experiment(
    config: ExperimentConfig | str | Path,
    *,
    overrides: list[str] | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    command: str | None = None,
    threads: ThreadsSetting | None = None,
    if_exists: IfExists = "error",
) -> Path:
    """Train, evaluate and report one experiment; returns the run directory.

    `resume=True` continues an interrupted run (training from its last checkpoint; evaluation and report are
    redone). Without it an existing run directory is an error, so a finished run is never overwritten by accident.
    The directory is locked for the whole run: a second process on it gets RunLockedError, naming the first.
    `threads` replaces both `train.threads` and `eval.threads` for this call (`gradguard.threads`).
    `if_exists` says what a new run does when its folder already holds one: "error" (the default, naming the ways
    to go on), "new" (a folder beside it, `<dir>-<UTC date-time>`, logged) or "overwrite" (`gradguard.rundir`).
    """
    cfg = config if isinstance(config, ExperimentConfig) else load_config(config, overrides)
    out = Path(run_dir) if run_dir else Path("runs") / cfg.name
    if not resume:
        config_name = str(config) if isinstance(config, (str, Path)) else "CONFIG"  # for the resume command
        wanted, out = out, choose_run_dir(out, if_exists, config=config_name)
        if out != wanted:
            _log(f"{wanted} already holds a run (kept); this run goes to {out}")
    with hold_run_dir(out):
        if not resume and not run_dir_is_empty(out):  # under the lock: another process may have just started
            raise RunExistsError(f"{out} already holds a run: resume it with --resume {out}, or choose --out DIR")
        command = command or "gradguard run " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        return _run_locked(cfg, out, resume, command, threads)


def _run_locked(cfg: ExperimentConfig, out: Path, resume: bool, command: str, threads: ThreadsSetting | None) -> Path:
    """`run_experiment` once `out` is held."""
    from gradguard.training import train

    if resume and (out / "train_summary.json").exists() and (out / "model.safetensors").exists():
        import json

        _check_same_training(cfg, out)
        _log(f"training already finished in {out}; evaluating again")
        summary = json.loads((out / "train_summary.json").read_text(encoding="utf-8"))
    else:
        _log(f"training {cfg.name} ({cfg.train.recipe}, {cfg.model.name} on {cfg.data.dataset}) into {out}")
        summary = train(cfg, out, resume=resume and (out / "checkpoints").exists(), threads=threads)

    return evaluate_run(cfg, out, summary, command, threads=threads)


def evaluate_run(
    cfg: ExperimentConfig,
    out: Path,
    summary: dict[str, Any],
    command: str,
    *,
    attacks: Any = None,
    device: str | torch.device = "cpu",
    n: int | None = None,
    threads: ThreadsSetting | None = None,
) -> Path:
    """Evaluate the model trained into `out` and write results.json, evaluation.json and the report.

    `attacks` replaces the config's suite (a dict as `gradguard.evaluation.evaluate` takes), `device` is where
    the model is evaluated and `n` overrides eval.n: the GPU script (benchmarks/gpu_cifar10.py) uses all three.
    """
    from gradguard.checkpoint import load_model
    from gradguard.evaluation import evaluate
    from gradguard.evaluation.bypass import evaluate_with_bypass, purifier_of
    from gradguard.models import is_randomized
    from gradguard.report import write_run_report

    model = load_model(out / "model.safetensors", device=device)
    x, y, dataset = _eval_inputs(cfg, n)
    _log(f"data: {dataset['source']}")  # which copy: the lossy CIFAR-10 JPEG archive says so in its source line
    randomized = is_randomized(model)
    model, eval_kwargs = _evaluation_call(cfg, model, attacks=attacks, device=device, threads=threads)
    _log(f"evaluating on {len(y)} test images: suite {cfg.eval.suite if attacks is None else list(attacks)}, "
         f"eps {eval_kwargs['eps']}")
    t0 = time.perf_counter()
    if attacks is None and purifier_of(model) is not None:  # a purifying network: attacks that go around it too
        eval_kwargs["suite"] = eval_kwargs.pop("attacks")
        result = evaluate_with_bypass(model, x, y, **eval_kwargs)
    else:
        result = evaluate(model, x, y, **eval_kwargs)
    eval_wall = time.perf_counter() - t0
    result.save(out / "evaluation.json")
    print(result.summary(), flush=True)

    grads = _gradient_statistics(model, x, y) if randomized else None
    results = _results_record(cfg, command, summary, dataset, model, result, eval_wall, grads, device)
    atomic_write_text(out / "config.toml", dump_config(cfg))
    write_json_atomic(out / "results.json", results)
    page = write_run_report(out)
    _log(f"report: {page}")
    return out


def _evaluation_call(
    cfg: ExperimentConfig, model: torch.nn.Module, *, attacks: Any, device: str | torch.device,
    threads: ThreadsSetting | None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The config's evaluation settings with this call's replacements; on a GPU, larger batches, channels-last."""
    eval_kwargs = {**evaluation_settings(cfg), "progress": _log}
    if attacks is not None:
        eval_kwargs["attacks"] = attacks
    if threads is not None:
        eval_kwargs["threads"] = threads
    if torch.device(device).type == "cuda":  # fewer, larger launches; channels-last convolutions
        eval_kwargs["batch_size"] = max(eval_kwargs["batch_size"], 1000)
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # in torch, not its stubs
    return model, eval_kwargs


def _gradient_statistics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """GradDiv's measure of how a randomized model's input gradients scatter, on up to 200 test inputs."""
    from gradguard.graddiv import gradient_statistics

    n_stats = min(len(y), 200)
    _log(f"gradient statistics on {n_stats} inputs")
    return gradient_statistics(model, x[:n_stats], y[:n_stats], n_draws=10, ks=(1, 2, 5, 10, 20)).to_dict()


def _results_record(
    cfg: ExperimentConfig, command: str, summary: dict[str, Any], dataset: dict[str, Any], model: torch.nn.Module,
    result: EvalResult, eval_wall: float, grads: dict[str, Any] | None, device: str | torch.device,
) -> dict[str, Any]:
    """results.json: what was run, on what data and machine, how it trained and what the evaluation found."""
    from gradguard.provenance import environment

    env = environment(device)
    return {
        "schema": RESULTS_SCHEMA,
        "name": cfg.name,
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(env, summary.get("torch_threads"), result.meta.get("torch_threads")),
        "seed": cfg.seed,
        "dataset": dataset,
        "model": {"name": cfg.model.name, "randomization": cfg.model.randomization,
                  "randomization_args": cfg.model.randomization_args,
                  "params": sum(p.numel() for p in model.parameters()), **_inference(model)},
        "training": {k: summary.get(k) for k in ("recipe", "wall_s", "fb_passes", "fwd_passes", "epochs", "step",
                                                 "final_val", "best_val", "val_wall_s", "stopped_early")},
        "evaluation": result.to_dict(),
        "evaluation_wall_s": eval_wall,
        "gradient_statistics": grads,
        "environment": env,
    }


def _inference(model: torch.nn.Module) -> dict[str, Any]:
    """What the network computes at test time beyond its zoo builder (SGN's purifier), as its export records it."""
    record = getattr(model, "inference_record", None)
    return {"inference": record()} if callable(record) else {}


def evaluation_settings(cfg: ExperimentConfig) -> dict[str, Any]:
    """The keyword arguments `run_experiment` gives `gradguard.evaluation.evaluate` (eval.* with its fallbacks)."""
    return {
        "attacks": cfg.eval.suite, "eps": cfg.eval.eps or [cfg.train.eps], "norm": cfg.eval.norm or cfg.train.norm,
        "m": cfg.eval.m, "k": cfg.eval.k, "batch_size": cfg.eval.batch_size, "seed": cfg.seed,
        "quick": cfg.eval.quick, "threads": cfg.eval.threads,
    }


def _check_same_training(cfg: ExperimentConfig, out: Path) -> None:
    """Refuse to re-evaluate a finished run under a config that would not have trained its model.

    Only `eval` may differ (evaluation and report are redone); anything else would make results.json and
    config.toml describe a training the model never had.
    """
    own_file = out / "config.toml"
    if not own_file.exists():
        return
    own = load_config(own_file).model_dump(mode="json")
    new = cfg.model_dump(mode="json")
    differ = []
    for section in sorted((own.keys() | new.keys()) - {"eval"}):
        a, b = own.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            differ += [f"{section}.{k}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
        elif a != b:
            differ.append(section)
    if differ:
        raise ConfigError(f"cannot resume {out}: its model was trained with {own_file}, which differs in "
                          f"{', '.join(differ)}; only eval.* may change when a finished run is evaluated again")


def _machine(env: dict[str, Any], train_threads: int | None = None, eval_threads: int | None = None) -> str:
    """One line for the results table. Training and evaluation each ran on their own thread count (restored
    afterwards, so `env`'s count is neither's when they are unknown): both are given when they differ."""
    device = env.get("device_name") or env.get("device") or "cpu"
    cpus = env.get("processor_count")
    train_threads = train_threads or env.get("torch_threads")
    eval_threads = eval_threads or env.get("torch_threads")
    text = f"{device} ({env.get('machine', '?')})"
    if cpus:
        text += f", {cpus} CPU cores"
    if train_threads and eval_threads and train_threads != eval_threads:
        text += f", torch threads: {train_threads} training, {eval_threads} evaluation"
    elif train_threads:
        text += f", {train_threads} torch threads"
    return text
