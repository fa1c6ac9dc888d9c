"""`evaluate`: the robustness protocol — clean accuracy, an attack ensemble per eps, worst case, masking checks.

Protocol (docs/evaluation.md has the long form):
1. Predictions average the softmax over `m` draws (randomized models); a point counts as robust at eps only if the
   m-draw prediction of its adversarial input is correct. Clean-misclassified points are never robust.
2. For each eps the attacks run in order. "chained" (default, cheap): each attack runs only on the points all
   earlier attacks failed on, as AutoAttack does. "independent": every attack runs on every clean-correct point,
   so each attack's own robust accuracy on the full set is known too (costs up to len(attacks) times more).
3. The worst case is per sample: a point is broken if any attack broke it.
4. The masking checks (`checks.py`) run on the same model and data and are stored with the numbers.
Under `torch.distributed` the test set is sharded (rank r takes samples r, r + W, ...) and the success tensors
are all-gathered, so every rank returns the same full result.
"""

from __future__ import annotations

import datetime as _dt
import math
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gradguard.draws import draw_mode
from gradguard.evaluation import checks
from gradguard.evaluation.predict import _is_randomized_flag, detect_randomness, eval_mode, model_device, predict_labels
from gradguard.evaluation.result import AttackRecord, EvalResult, Flag
from gradguard.evaluation.suites import SUITE_DEFAULT_K, AttackSpec, attack_settings, build_suite
from gradguard.inputs import check_attack_inputs, check_label_range
from gradguard.passes import PassCounter
from gradguard.progress import work_progress
from gradguard.specs import default_eps
from gradguard.threads import DEFAULT_THREADS, ThreadsSetting, torch_threads
from gradguard.threat import ThreatModel, normalize_norm

__all__ = ["evaluate", "MODES"]

MODES = ("chained", "independent")

AttackLike = Any  # an attack instance (has .eps), an AttackSpec, or a factory `f(eps=...) -> attack`


@contextmanager
def _seeded_randomness(model: nn.Module, seed: int, device: torch.device) -> Iterator[None]:
    """Let the zoo's randomized layers draw from a local generator seeded by `seed` (restored on exit).

    Without this they draw from the global RNG: the evaluation would be irreproducible and would disturb the
    caller's random stream. Layers that already have a generator keep it (the caller chose it).
    """
    from gradguard.models import random_layers  # lazy: the zoo loads only when an evaluation needs it

    layers = [layer for layer in random_layers(model) if getattr(layer, "generator", None) is None]
    if layers:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
        for layer in layers:
            layer.generator = gen
    try:
        yield
    finally:
        for layer in layers:
            layer.generator = None


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _comm_device() -> torch.device:
    backend = torch.distributed.get_backend()
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def _gather_columns(local: Tensor, n: int, rank: int, world: int) -> Tensor:
    """All-gather (R, n_local) bool tensors sharded with stride `world` into the full (R, n) tensor."""
    if world == 1:
        return local
    pad = math.ceil(n / world)
    buf = torch.zeros(local.shape[0], pad, dtype=torch.uint8, device=_comm_device())
    buf[:, : local.shape[1]] = local.to(torch.uint8)
    parts = [torch.empty_like(buf) for _ in range(world)]
    torch.distributed.all_gather(parts, buf)
    full = torch.zeros(local.shape[0], n, dtype=torch.bool)
    for r, part in enumerate(parts):
        cols = len(range(r, n, world))
        full[:, r::world] = part[:, :cols].cpu().bool()
    return full


def _all_reduce(values: list[float], op: str = "sum") -> list[float]:
    rank, world = _dist_info()
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    red = torch.distributed.ReduceOp.SUM if op == "sum" else torch.distributed.ReduceOp.MAX
    torch.distributed.all_reduce(t, op=red)
    return t.cpu().tolist()


def _resolve_attacks(
    attacks: str | Mapping[str, AttackLike], *, norm: str, k: int | None, quick: bool, num_classes: int
) -> tuple[str, dict[str, AttackLike], dict[str, str], int]:
    """(suite name, ordered attacks, kinds, effective k)."""
    if isinstance(attacks, str):
        suite = build_suite(attacks, norm=norm, k=k, quick=quick, num_classes=num_classes)
        k_eff = SUITE_DEFAULT_K[attacks.lower()] if k is None else int(k)
        return attacks.lower(), suite, {n: s.kind for n, s in suite.items()}, k_eff
    if not attacks:
        raise ValueError("attacks: expected a suite name or a non-empty dict of name -> attack or factory")
    kinds = {name: _kind(a) for name, a in attacks.items()}
    # k = 0 here means "read it from the built attacks" (see `_effective_k`).
    return "custom", dict(attacks), kinds, 0 if k is None else int(k)


def _effective_k(settings: dict[str, list[dict[str, Any]]], kinds: dict[str, str]) -> int:
    """The smallest `eot` among the white-box attacks that declare one (1 when none does)."""
    eots = [int(s["eot"]) for name, per_eps in settings.items() if kinds[name] == "white-box"
            for s in per_eps if isinstance(s.get("eot"), int)]
    return min(eots) if eots else 1


def _kind(attack: AttackLike) -> str:
    if isinstance(attack, AttackSpec):
        return attack.kind
    if getattr(attack, "gradient_free", False) or getattr(attack, "uses_gradients", True) is False:
        return "gradient-free"
    cls = attack if isinstance(attack, type) else type(attack)
    return "gradient-free" if cls.__name__ in ("Square",) else "white-box"


def _instantiate(name: str, spec: AttackLike, eps: float, seed: int) -> Any:
    if isinstance(spec, AttackSpec):
        return spec(eps, seed=seed)
    if hasattr(spec, "eps") and not isinstance(spec, type):  # a ready-made attack instance
        if not math.isclose(float(spec.eps), eps, rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(
                f"attack {name!r} was built with eps={spec.eps:g} but is evaluated at eps={eps:g}: pass a factory "
                f"instead, e.g. functools.partial(APGD, steps=100) or lambda eps: APGD(eps=eps)"
            )
        return spec
    if callable(spec):
        return spec(eps=eps)
    raise TypeError(f"attack {name!r}: expected an attack, an AttackSpec or a factory f(eps=...), got {spec!r}")


def _run_attack(
    attack: Any, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor, *, name: str, eps: float, norm: str,
    m: int, batch_size: int, randomized: bool, device: torch.device, say: Callable[[str], None] | None = None,
) -> tuple[Tensor, float, int, int]:
    """Attack x[idx]; returns (fooled mask over idx, wall seconds, gradient evaluations, queries).

    With `say`, a bar on a terminal (else a line per tenth of the points) shows the points done and the time left.
    """
    from gradguard.threat import threat_model

    ball = threat_model(norm, eps)
    fooled = torch.zeros(len(idx), dtype=torch.bool)
    counter = PassCounter(model)  # the fallback count for attacks that keep none of their own
    elapsed = 0.0
    own_grads = own_queries = hook_samples = hook_grads = 0
    bar = work_progress(len(idx), f"eps={eps:g} {name}", say)
    try:
        for start in range(0, len(idx), batch_size):
            sel = idx[start : start + batch_size]
            xb, yb = x[sel].to(device), y[sel].to(device)
            t0 = time.perf_counter()
            snap = counter.snapshot()
            x_adv = attack(model, xb, yb)
            hook_samples += counter.samples - snap[0]
            hook_grads += counter.grad_samples - snap[1]
            elapsed += time.perf_counter() - t0
            if hasattr(attack, "last_grad_evals"):  # the attack's own count (EOT draws included) beats the hook's
                own_grads += int(attack.last_grad_evals)
                own_queries += int(getattr(attack, "last_forward_evals", 0))
            else:
                own_grads = own_queries = -1
            x_adv = _checked_adversarial(x_adv, xb, ball, name=name, norm=norm, eps=eps)
            with torch.no_grad():
                pred = predict_labels(model, x_adv, m, batch_size, randomized=randomized)
            fooled[start : start + len(sel)] = pred != yb.cpu()
            bar.update(len(sel))
    finally:
        bar.close()
        counter.remove()
    if own_grads >= 0 and len(idx):
        return fooled, elapsed, own_grads, own_queries
    return fooled, elapsed, hook_grads, hook_samples - hook_grads


def _checked_adversarial(x_adv: Any, xb: Tensor, ball: ThreatModel, *, name: str, norm: str, eps: float) -> Tensor:
    """The attack's output, detached, refused when it is no batch of xb's shape or leaves the ball or the box."""
    if not isinstance(x_adv, Tensor) or x_adv.shape != xb.shape:
        raise RuntimeError(f"attack {name!r} returned {type(x_adv).__name__} of the wrong shape")
    x_adv = x_adv.detach()
    tol = 1e-5 if norm == "linf" else 1e-4 * max(1.0, eps)
    outside = ~ball.contains(x_adv.float(), xb.float(), tol=tol)
    if outside.any():
        dist = ball.distance(x_adv.float(), xb.float()).max().item()
        raise RuntimeError(
            f"attack {name!r} returned {int(outside.sum())} points outside the {norm} ball eps={eps:g} or "
            f"the [0, 1] box (max distance {dist:.4g}): is it built for norm={norm!r}?"
        )
    return x_adv


def evaluate(
    model: nn.Module,
    x: Any,
    y: Tensor | None = None,
    attacks: str | Mapping[str, AttackLike] = "standard",
    eps: float | list[float] | tuple[float, ...] | None = None,
    *,
    norm: str = "linf",
    m: int = 1,
    k: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    mode: str = "chained",
    quick: bool = False,
    run_checks: bool = True,
    check_n: int = 200,
    large_eps_steps: int = 20,
    progress: Callable[[str], None] | None = None,
    threads: ThreadsSetting = DEFAULT_THREADS,
) -> EvalResult:
    """Evaluate `model` on (x, y) against an attack ensemble at each eps; see the module docstring.

    `x` may be an image tensor in [0, 1] with labels `y`, or an `ImageData` (then `y` is None). `attacks` is a
    suite name ("standard", "rand") or a dict name -> attack instance / `AttackSpec` / factory `f(eps=...)`.
    `k` is the EOT draws of the suite's gradient attacks (None: the suite default, 1 for standard, 20 for rand;
    for a dict of attacks, the smallest `eot` the built white-box attacks declare, recorded and used by the checks).
    `eps` None takes the command line's default, `gradguard.specs.default_eps(norm, channels)`: 0.3 or 8/255 for
    linf, 2.0 or 0.5 for l2, on 1- or 3-channel images.
    `threads`: torch CPU threads during the call (an int, 0 = as set, or "auto"; `gradguard.threads`), restored
    after it. `progress` receives one line per step; with it, each attack also shows a bar on a terminal, or a
    line every 10% of its points when stderr is not a terminal.
    """
    x, y = _checked_inputs(model, x, y, eps)
    eps_list = _eps_values(eps, norm, x)
    _check_protocol(mode, m)
    norm = normalize_norm(norm)
    say = progress or (lambda s: None)
    shard = _local_shard(x, y)
    device = model_device(model)
    t_start = time.perf_counter()

    with torch_threads(threads) as threads_used, eval_mode(model), \
            _seeded_randomness(model, (seed * 1_000_003 + shard.rank) % 2**64, device):
        clean = _clean_predictions(model, shard, x, y, m=m, batch_size=batch_size, device=device, say=say)
        suite, specs, kinds, k_eff = _resolve_attacks(
            attacks, norm=norm, k=k, quick=quick, num_classes=clean.num_classes)
        runs = _attack_each_eps(model, shard, clean, specs, kinds, eps_list, norm=norm, m=m, batch_size=batch_size,
                                seed=seed, mode=mode, device=device, progress=progress, say=say)
        if k_eff == 0:
            k_eff = _effective_k(runs.settings, kinds)
        probes = _masking_probes(model, shard, clean, norm=norm, m=m, k=k_eff, seed=seed, batch_size=batch_size,
                                 check_n=check_n, large_eps_steps=large_eps_steps, run_checks=run_checks)

    full = _gather_over_ranks(shard, clean, runs, probes, len(eps_list), t_start)
    result = _assemble_result(model, full, runs, kinds, eps_list=eps_list, norm=norm, m=m, k=k_eff, seed=seed,
                              mode=mode, suite=suite, randomized=clean.randomized, device=device,
                              world=shard.world, batch_size=batch_size, quick=quick and suite != "custom",
                              num_classes=clean.num_classes, threads_used=threads_used)
    draws = draw_mode(model, x[:1].to(device)) if clean.randomized and len(x) else None
    result.flags = _masking_flags(result, full, kinds, probes, max_diff=clean.max_diff, draws=draws,
                                  run_checks=run_checks)
    return result


# ------------------------------------------------------------------------------------------ the steps of evaluate


@dataclass
class _Shard:
    """This rank's share of the test set: samples rank, rank + world, ... (everything when not distributed)."""

    x: Tensor
    y: Tensor
    rank: int
    world: int
    n_total: int


@dataclass
class _Clean:
    """What the clean pass found out on the local shard, before any attack."""

    randomized: bool
    max_diff: float  # the largest change between two forward passes of one input (the randomness probe)
    num_classes: int
    correct: Tensor  # m-draw prediction correct, per local sample
    correct_single: Tensor  # single-draw prediction correct, per local sample


@dataclass
class _AttackRuns:
    """Per attack, on the local shard: which points it broke and attacked at each eps, its settings and costs."""

    names: list[str]
    settings: dict[str, list[dict[str, Any]]]
    success: dict[str, Tensor]  # (n_eps, n_local) bool
    attacked: dict[str, Tensor]  # (n_eps, n_local) bool
    stats: dict[str, list[list[float]]]  # per eps: wall seconds, gradient evaluations, queries


@dataclass
class _Probes:
    """The masking checks' own measurements on the local shard (counts, summed over ranks later)."""

    large_eps: float
    grad_counts: list[int]  # zero gradients, non-finite gradients, inputs checked
    big_counts: list[int]  # robust at the huge eps, attacked at it


@dataclass
class _Gathered:
    """The full-test-set view every rank ends with: per-sample tensors gathered, counters summed."""

    clean_correct: Tensor
    clean_single: Tensor
    success: dict[str, Tensor]
    attacked: dict[str, Tensor]
    flat_stats: list[float]  # attack by attack, eps by eps: wall (max over ranks), gradient evaluations, queries
    counts: list[float]  # _Probes.grad_counts + _Probes.big_counts, summed over ranks
    wall_total: float


def _checked_inputs(model: nn.Module, x: Any, y: Tensor | None, eps: Any) -> tuple[Tensor, Tensor]:
    """Images and labels as detached CPU tensors, refused before any work when they cannot be attacked."""
    if y is None:
        if not hasattr(x, "tensors"):
            raise TypeError("evaluate: pass images and labels (x, y) or an ImageData as x")
        x, y = x.tensors()
    check_attack_inputs(x, y, eps if isinstance(eps, (list, tuple)) else [eps], model=model)  # before any work
    x, y = x.detach().cpu(), y.detach().cpu().long()
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    return x, y


def _eps_values(eps: float | list[float] | tuple[float, ...] | None, norm: str, x: Tensor) -> list[float]:
    """The eps list to evaluate at: the caller's, or the command line's default for this norm and image kind."""
    if eps is None:
        eps = default_eps(norm, x.shape[1])
    eps_list = [float(eps)] if isinstance(eps, (int, float)) else [float(e) for e in eps]
    if not eps_list:
        raise ValueError("eps: expected at least one value")
    return eps_list


def _check_protocol(mode: str, m: int) -> None:
    """Refuse an unknown attack mode or a draw count below one before any work."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")


def _local_shard(x: Tensor, y: Tensor) -> _Shard:
    """The samples this rank evaluates, so that ranks share the attack work without overlap."""
    rank, world = _dist_info()
    local = torch.arange(rank, x.shape[0], world)
    return _Shard(x=x[local], y=y[local], rank=rank, world=world, n_total=x.shape[0])


def _clean_predictions(model: nn.Module, shard: _Shard, x: Tensor, y: Tensor, *, m: int, batch_size: int,
                       device: torch.device, say: Callable[[str], None]) -> _Clean:
    """Decide whether the model is randomized and which points it classifies correctly (only those can be robust)."""
    xl, yl = shard.x, shard.y
    zoo = _is_randomized_flag(model)
    detected, max_diff = detect_randomness(model, xl[:64]) if len(xl) else (False, 0.0)
    flags_rand = _all_reduce([float(detected), max_diff], op="max")
    randomized = bool(flags_rand[0]) or bool(zoo)
    max_diff = flags_rand[1]

    pred_single = predict_labels(model, xl, 1, batch_size, randomized=randomized)
    pred_m = pred_single
    if randomized and m > 1:
        pred_m = predict_labels(model, xl, m, batch_size, randomized=randomized)
    num_classes = _num_classes(model, x[:1], device)
    check_label_range(y, num_classes)
    correct_l = pred_m == yl
    say(f"clean accuracy {correct_l.float().mean().item():.4f} on {len(xl)} local points")
    return _Clean(randomized=randomized, max_diff=max_diff, num_classes=num_classes, correct=correct_l,
                  correct_single=pred_single == yl)


def _attack_each_eps(
    model: nn.Module, shard: _Shard, clean: _Clean, specs: dict[str, AttackLike], kinds: dict[str, str],
    eps_list: list[float], *, norm: str, m: int, batch_size: int, seed: int, mode: str, device: torch.device,
    progress: Callable[[str], None] | None, say: Callable[[str], None],
) -> _AttackRuns:
    """Run every attack at every eps, in order: chained on the points still robust, or independent on all.

    Fills in `kinds` for factories, whose kind shows only once they are built.
    """
    xl, yl, correct_l = shard.x, shard.y, clean.correct
    n_eps, names = len(eps_list), list(specs)
    succ = {a: torch.zeros(n_eps, len(xl), dtype=torch.bool) for a in names}
    tried = {a: torch.zeros(n_eps, len(xl), dtype=torch.bool) for a in names}
    settings: dict[str, list[dict[str, Any]]] = {a: [] for a in names}
    stats = {a: [[0.0, 0.0, 0.0] for _ in eps_list] for a in names}  # wall, grad evals, queries
    for e, eps_value in enumerate(eps_list):
        robust = correct_l.clone()
        for j, name in enumerate(names):
            attack = _instantiate(name, specs[name], eps_value, seed + 1000 * e + j)
            settings[name].append(attack_settings(attack))
            if e == 0 and not isinstance(specs[name], AttackSpec):
                kinds[name] = _kind(attack)  # a factory only shows its kind once built
            todo = robust if mode == "chained" else correct_l
            idx = torch.nonzero(todo).flatten()
            fooled, wall, grads, queries = _run_attack(
                attack, model, xl, yl, idx, name=name, eps=eps_value, norm=norm, m=m, batch_size=batch_size,
                randomized=clean.randomized, device=device, say=progress,
            )
            tried[name][e, idx] = True
            succ[name][e] = ~correct_l
            succ[name][e, idx[fooled]] = True
            robust[idx[fooled]] = False
            stats[name][e] = [wall, float(grads), float(queries)]
            say(f"eps={eps_value:g} {name}: attacked {len(idx)}, broke {int(fooled.sum())} ({wall:.1f} s)")
    return _AttackRuns(names=names, settings=settings, success=succ, attacked=tried, stats=stats)


def _masking_probes(
    model: nn.Module, shard: _Shard, clean: _Clean, *, norm: str, m: int, k: int, seed: int, batch_size: int,
    check_n: int, large_eps_steps: int, run_checks: bool,
) -> _Probes:
    """Measure what the masking checks need beyond the attacks: bad input gradients and a huge-eps attack."""
    xl, yl = shard.x, shard.y
    n_check = min(check_n, len(xl))
    grad_counts = [0, 0, 0]
    big_counts = [0, 0]
    big = checks.large_eps(norm, tuple(xl.shape[1:]))
    if run_checks:
        grad_counts = list(checks.count_bad_gradients(model, xl[:n_check], yl[:n_check], batch_size=batch_size))
        ok = torch.nonzero(clean.correct).flatten()[:n_check]
        big_counts = list(checks.large_eps_robust_count(
            model, xl[ok], yl[ok], norm=norm, eps=big, m=m, k=k, steps=large_eps_steps, seed=seed + 999_999,
            batch_size=batch_size, randomized=clean.randomized,
        ))
    return _Probes(large_eps=big, grad_counts=grad_counts, big_counts=big_counts)


def _gather_over_ranks(shard: _Shard, clean: _Clean, runs: _AttackRuns, probes: _Probes, n_eps: int,
                       t_start: float) -> _Gathered:
    """Put the shards back together, so every rank returns the same full result (a no-op on one process)."""
    names, rank, world = runs.names, shard.rank, shard.world
    rows = [clean.correct.unsqueeze(0), clean.correct_single.unsqueeze(0)]
    rows += [runs.success[a] for a in names] + [runs.attacked[a] for a in names]
    full = _gather_columns(torch.cat(rows), shard.n_total, rank, world)
    off = 2
    succ_full = {a: full[off + i * n_eps : off + (i + 1) * n_eps] for i, a in enumerate(names)}
    off += len(names) * n_eps
    tried_full = {a: full[off + i * n_eps : off + (i + 1) * n_eps] for i, a in enumerate(names)}
    stats = runs.stats
    flat_stats = [v for a in names for row in stats[a] for v in row]
    flat_stats = _all_reduce(flat_stats)  # gradient evaluations and queries add up over ranks...
    # ...wall time does not: the ranks attack their shards at the same time
    flat_stats[0::3] = _all_reduce([row[0] for a in names for row in stats[a]], op="max")
    counts = _all_reduce([float(v) for v in probes.grad_counts + probes.big_counts])
    wall_total = _all_reduce([time.perf_counter() - t_start], op="max")[0]
    return _Gathered(clean_correct=full[0], clean_single=full[1], success=succ_full, attacked=tried_full,
                     flat_stats=flat_stats, counts=counts, wall_total=wall_total)


def _assemble_result(
    model: nn.Module, full: _Gathered, runs: _AttackRuns, kinds: dict[str, str], *, eps_list: list[float],
    norm: str, m: int, k: int, seed: int, mode: str, suite: str, randomized: bool, device: torch.device,
    world: int, batch_size: int, quick: bool, num_classes: int, threads_used: int,
) -> EvalResult:
    """One record per attack, the per-sample worst case over attacks, and the run's metadata (flags come next)."""
    n_eps = len(eps_list)
    records: dict[str, AttackRecord] = {}
    for i, a in enumerate(runs.names):
        per = full.flat_stats[i * n_eps * 3 : (i + 1) * n_eps * 3]
        records[a] = AttackRecord(
            name=a, kind=kinds[a], settings=runs.settings[a], success=full.success[a], attacked=full.attacked[a],
            wall_s=per[0::3], grad_evals=[int(v) for v in per[1::3]], queries=[int(v) for v in per[2::3]],
        )
    worst = ~full.clean_correct.unsqueeze(0).expand(n_eps, -1).clone()
    for a in runs.names:
        worst |= full.success[a] & full.attacked[a]

    result = EvalResult(
        eps=eps_list, norm=norm, m=m, k=k, seed=seed, mode=mode, suite=suite, randomized=randomized,
        clean_correct=full.clean_correct, clean_correct_single=full.clean_single, success=worst, attacks=records,
        meta=_meta(model, device, full.wall_total, world, batch_size, quick, num_classes),
    )
    result.meta["torch_threads"] = threads_used  # the environment record is taken after the count was restored
    result.meta["environment"]["torch_threads"] = threads_used
    return result


def _masking_flags(result: EvalResult, full: _Gathered, kinds: dict[str, str], probes: _Probes, *,
                   max_diff: float, draws: str | None, run_checks: bool) -> list[Flag]:
    """The masking checks' verdicts, in the order reports list them."""
    flags = [checks.randomness_flag(result.randomized, max_diff, result.k, result.m, draws)]
    flags.append(checks.gradient_free_flag(full.success, full.attacked, kinds, full.clean_correct))
    if run_checks:
        z, nf, checked, rob, att = (int(v) for v in full.counts)
        flags.append(checks.zero_gradient_flag(z, nf, checked))
    own = {a: rec.robust_accuracy(full.clean_correct) for a, rec in result.attacks.items()}
    flags.append(checks.monotonic_flag(result.eps, result.robust_accuracy, own))
    if run_checks:
        flags.append(checks.large_eps_flag(rob, att, probes.large_eps, result.norm))
    return flags


def _num_classes(model: nn.Module, x1: Tensor, device: torch.device) -> int:
    with torch.no_grad():
        return int(model(x1.to(device)).shape[1]) if len(x1) else 0


def _meta(
    model: nn.Module, device: torch.device, wall: float, world: int, batch_size: int, quick: bool, num_classes: int
) -> dict[str, Any]:
    from gradguard import __version__
    from gradguard.provenance import environment

    return {
        "model": type(model).__name__,
        "num_classes": num_classes,
        "device": str(device) if device.type != "cuda" else f"{device} ({torch.cuda.get_device_name(device)})",
        "wall_s": wall,
        "world_size": world,
        "batch_size": batch_size,
        "quick": quick,
        "torch": torch.__version__,
        "gradguard": __version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "environment": environment(device),  # versions, threads, git commit (no hostname)
    }
