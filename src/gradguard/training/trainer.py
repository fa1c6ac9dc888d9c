"""The one training loop. It never knows which defence it runs: a recipe turns each batch into a loss.

    summary = train(load_config("configs/mnist-pgd-at.toml"), "runs/pgd-at")
    summary = train(cfg, "runs/pgd-at", resume=True)   # after a crash, Ctrl-C or SIGKILL

Per batch: the recipe's `step` runs `recipe.replays` times, each followed by backward, (all-reduce), clipping and an
optimizer step, with the lr set from the schedule at every iteration. Forward passes through the plain network are
counted by a hook; wall time excludes validation and checkpoint writing, both of which are logged on their own.
Exact resume: data order and augmentation come from a Generator re-derived from (seed, epoch), so a resumed epoch
replays its batch order and skips the done batches; the recipe's Generator, the global RNG, the optimizer and the
recipe state are restored from the last checkpoint, and metrics.jsonl is cut back to what it held at that moment;
the running loss/accuracy window of the train records is in the checkpoint too, so every record after a resume
equals the uninterrupted run's. The run folder is locked for the whole run (`gradguard.runlock`), and the weights
are checked finite after every optimizer step (`training.finite`): a run never checkpoints or exports NaN weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradguard.atomic import atomic_write_text
from gradguard.checkpoint import (
    CheckpointError,
    flatten_state,
    load_checkpoint,
    network_from_info,
    save_checkpoint,
    save_model,
    unflatten_state,
)
from gradguard.config import ExperimentConfig, dump_config
from gradguard.errors import GradguardError
from gradguard.passes import PassCounter
from gradguard.progress import terminal_bar
from gradguard.provenance import environment
from gradguard.rundir import RunExistsError, run_exists_message
from gradguard.runlock import hold_run_dir
from gradguard.runlog import MetricsLog, read_metrics
from gradguard.threads import ThreadsSetting, torch_threads
from gradguard.threat import threat_model
from gradguard.training import distributed as ddp
from gradguard.training.finite import all_finite, first_non_finite
from gradguard.training.optim import build_optimizer, set_lr
from gradguard.training.recipe import Recipe, StepContext
from gradguard.training.recipes import build_recipe
from gradguard.training.schedules import lr_factor
from gradguard.training.seeding import derive_seed, make_generator, seed_everything
from gradguard.training.validation import build_val_attack, robust_validate, val_attack_steps

__all__ = ["train", "NonFiniteLossError", "NonFiniteWeightsError", "ResumeError", "Progress", "prepare_data",
           "build_network"]


class NonFiniteLossError(GradguardError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_status = 3


class NonFiniteWeightsError(NonFiniteLossError):
    """An optimizer step made a weight NaN or infinite; the last checkpoint (finite by construction) is kept."""


class ResumeError(GradguardError, ValueError):
    """The run folder cannot be continued as it is (edited config, other world size, shortened log...)."""


@dataclass
class Progress:
    """Where the run is; saved in every checkpoint."""

    epoch: int = 0  # current epoch (0-based)
    batch: int = 0  # batches of the current epoch already done
    batches_done: int = 0  # over the whole run
    step: int = 0  # optimizer steps (batches x replays)
    fb_passes: float = 0.0  # training forward+backward passes (grad-recording forwards), in batches
    fwd_passes: float = 0.0  # all training forwards (adds attacks' no-grad bookkeeping), in batches
    wall_s: float = 0.0  # training wall time, validation and checkpoint writing excluded
    val_wall_s: float = 0.0
    val_passes: float = 0.0
    ckpt_wall_s: float = 0.0
    best_robust_acc: float = -1.0
    best_step: int = -1
    last_ckpt_step: int = 0
    metrics_offset: int = 0
    done: bool = False


# --------------------------------------------------------------------------------------------------- setup


def prepare_data(cfg: ExperimentConfig) -> tuple[Any, Any]:
    """(train, val) ImageData: a fixed held-out val subset of the training split, then the optional train subset."""
    from gradguard import data as gdata

    d = cfg.data
    full = gdata.load(d.dataset, "train", root=d.root or None)
    if d.val_size > 0:
        if d.val_size >= len(full):
            raise ValueError(f"data.val_size = {d.val_size} leaves no training data ({len(full)} images)")
        train_set, val_set = full.split(d.val_size, cfg.seed)
    else:
        train_set, val_set = full, None
    if 0 < d.train_subset < len(train_set):
        g = make_generator(cfg.seed, "train_subset")
        idx = torch.randperm(len(train_set), generator=g)[: d.train_subset].sort().values
        train_set = train_set.subset(idx)
    return train_set, val_set


def build_network(cfg: ExperimentConfig) -> nn.Module:
    """The zoo network with its randomization, built as `gradguard.checkpoint.load_model` rebuilds it."""
    return network_from_info(_model_info(cfg))


def _model_info(cfg: ExperimentConfig) -> dict[str, Any]:
    return {"model": cfg.model.name, "dataset": cfg.data.dataset, "model_args": cfg.model.args,
            "randomization": cfg.model.randomization, "randomization_args": cfg.model.randomization_args,
            "run": cfg.name, "recipe": cfg.train.recipe, "seed": cfg.seed}


class _InterruptFlag:
    """SIGINT sets a flag checked at batch boundaries, so Ctrl-C saves a consistent checkpoint; a second one aborts."""

    def __init__(self) -> None:
        self.set = False
        self._old: Any = None

    def __enter__(self) -> _InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


# --------------------------------------------------------------------------------------------------- state


def _new_window(wall_s: float) -> dict[str, Any]:
    """The running sums behind one train record (saved in checkpoints: a resume continues the same window)."""
    return {"loss": 0.0, "acc": 0.0, "n": 0, "imgs": 0, "t0": wall_s, "logs": {}}


def _changed_keys(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dumps (for the resume error)."""
    out = []
    for k in sorted(saved.keys() | now.keys()):
        a, b = saved.get(k), now.get(k)
        if isinstance(a, dict) and isinstance(b, dict) and k not in ("model_args", "recipe_args"):
            out += _changed_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def _rng_tensors(recipe_gen: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    out = {"rng.torch_cpu": torch.random.get_rng_state(), "rng.recipe": recipe_gen.get_state()}
    if device.type == "cuda":
        out["rng.cuda"] = torch.cuda.get_rng_state(device)
    return out


def _restore_rng(tensors: dict[str, Tensor], recipe_gen: torch.Generator, device: torch.device, *, seed: int,
                 rank: int, step: int) -> None:
    """Rank 0 continues its saved streams exactly. Only rank 0 writes checkpoints, so another rank cannot have its
    own streams back: it re-seeds its global RNGs and recipe Generator from (seed, rank, step), deterministic and
    distinct from every other rank's (taking rank 0's state would give all ranks the same random starts and dropout
    masks from then on)."""
    if rank == 0:
        torch.random.set_rng_state(tensors["rng.torch_cpu"])
        recipe_gen.set_state(tensors["rng.recipe"])
        if device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], device)
        return
    seed_everything(derive_seed(seed, "rank", rank, "resume", step))
    recipe_gen.manual_seed(derive_seed(seed, "recipe", rank, "resume", step))


# --------------------------------------------------------------------------------------------------- the loop


def train(config: ExperimentConfig, run_dir: str | Path, *, resume: bool = False,
          threads: ThreadsSetting | None = None) -> dict[str, Any]:
    """Run one experiment into `run_dir`; returns the summary (also written to `train_summary.json`).

    `resume=True` continues from `run_dir/checkpoints/last.safetensors` (the config must be the run's own).
    `threads` (an int or "auto", see `gradguard.threads`) replaces `train.threads` for this call only, without
    changing the config, so a resumed run can take another thread count; torch's setting is restored afterwards.
    Raises NonFiniteLossError on a NaN/inf loss or weight (the last good checkpoint stays), RunLockedError when
    another process holds `run_dir`, ResumeError when the folder cannot be continued, and KeyboardInterrupt after
    saving a resumable checkpoint on Ctrl-C.
    """
    with torch_threads(config.train.threads if threads is None else threads):
        return _Run(config, Path(run_dir), resume).run()


class _Run:
    """One training run, read top to bottom in `run`: set up, loop over batches, finish.

    Set-up: `_open_device`, `_claim_run_dir`, `_build`, `_plan`, `_restore_or_start`, `_open_log`. Per batch:
    `_train_batch` (the recipe's replays, `_replay`), then `_close_batch` (log, validate, advance the epoch,
    checkpoint, honour Ctrl-C). Checkpoints: `_state` / `_save` / `_restore`.
    """

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, resume: bool) -> None:
        self.cfg, self.run_dir, self.resume = cfg, run_dir, resume
        self.ckpt_dir = run_dir / "checkpoints"

    # -- run ------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Hold the run folder, set up, train until done (or interrupted), then export the model and summary."""
        lock = hold_run_dir(self.run_dir) if ddp.launched_rank() == 0 else contextlib.nullcontext()
        try:
            with lock:
                self._setup()
                with _InterruptFlag() as flag:
                    if not self.p.done:
                        self._loop(flag)
                return self._finish()
        finally:
            if hasattr(self, "log"):
                self.log.close()
            if hasattr(self, "counter"):
                self.counter.remove()
            if hasattr(self, "info"):
                ddp.teardown(self.info)

    # -- setup ----------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        """Everything the loop needs, in an order that keeps seeded runs and resumes exact."""
        self._open_device()
        self._claim_run_dir()
        self._build()
        self._plan()
        self._restore_or_start()
        self._open_log()

    def _open_device(self) -> None:
        """Join the process group (if any) and settle the device, mixed precision and memory layout."""
        t = self.cfg.train
        self.info = ddp.setup(t.device)
        self.device = self.info.device
        cuda = self.device.type == "cuda"
        if t.amp and not cuda:
            warnings.warn("train.amp applies on a GPU only; ignored on CPU", stacklevel=4)
        self.amp = t.amp and cuda
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        # Channels-last also pays on CPU: oneDNN skips a reorder per conv (docs/training.md).
        # Off by default so that documented seeded runs stay bit-for-bit reproducible.
        self.channels_last = t.channels_last
        if t.batch_size < self.info.world_size:
            raise ValueError(f"train.batch_size = {t.batch_size} is smaller than the world size {self.info.world_size}")

    def _claim_run_dir(self) -> None:
        """Load the checkpoint a resume continues, or refuse to train over a finished run; then write config.toml."""
        last = self.ckpt_dir / "last.safetensors"
        self.ckpt: tuple[dict[str, Tensor], dict[str, Any]] | None = None
        if self.resume and last.exists():
            self.ckpt = load_checkpoint(last)
            self._check_resumable(self.ckpt[1])  # before any data is read
        elif self.resume:  # killed before its first checkpoint: nothing to continue, start over
            warnings.warn(f"{last} does not exist: starting {self.run_dir} from the beginning", stacklevel=4)
            self.resume = False
        elif last.exists():
            raise RunExistsError(run_exists_message(self.run_dir, "gradguard train"))
        if self.info.is_main and not self.resume:  # first thing written: from here on the run can be resumed
            atomic_write_text(self.run_dir / "config.toml", dump_config(self.cfg))

    def _build(self) -> None:
        """Seed, then read the data and build the network, the recipe, the optimizer and the recipe's Generator."""
        cfg, t = self.cfg, self.cfg.train
        seed_everything(cfg.seed)  # the single place a run seeds the global RNGs (weight init, dropout)
        self.train_set, self.val_set = prepare_data(cfg)
        model = build_network(cfg)
        self.recipe: Recipe = build_recipe(t.recipe, **t.recipe_args)
        self.trained = self.recipe.wrap(model).to(self.device)
        if self.channels_last:
            self.trained = self.trained.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.plain = self.recipe.unwrap(self.trained)
        if self.info.enabled:
            ddp.broadcast_module(self.trained)
            seed_everything(derive_seed(cfg.seed, "rank", self.info.rank) % (2**63))  # per-rank dropout draws
        self.params = [p for p in self.trained.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.params, optimizer=t.optimizer, lr=t.lr, momentum=t.momentum,
                                         nesterov=t.nesterov, weight_decay=t.weight_decay, betas=t.betas)
        self.recipe_gen = make_generator(cfg.seed, "recipe", self.info.rank, device=self.device)

    def _plan(self) -> None:
        """Turn the config's epochs into batch and step counts: the schedule, validation and warm-up run on them."""
        t = self.cfg.train
        n = len(self.train_set)
        self.batches_per_epoch = n // t.batch_size if self.info.enabled else math.ceil(n / t.batch_size)
        if self.batches_per_epoch == 0:
            raise ValueError(f"train.batch_size = {t.batch_size} exceeds the {n} training images")
        self.total_batches = max(1, round(t.epochs * self.batches_per_epoch))
        self.replays = max(1, int(getattr(self.recipe, "replays", 1)))
        self.total_steps = self.total_batches * self.replays
        self.val_interval = max(1.0, t.val_every * self.batches_per_epoch)  # in batches, may be fractional
        self.warmup_steps = round(t.warmup_epochs * self.batches_per_epoch * self.replays)
        self.val_eps = t.val_eps or t.eps
        if self.val_set is not None:
            self.val_x, self.val_y = self.val_set.tensors()

    def _restore_or_start(self) -> None:
        """Start from step 0, or take weights, optimizer, recipe, RNGs and progress from the loaded checkpoint."""
        self.p = Progress()
        self.window: dict[str, Any] = {}
        if self.ckpt is not None:
            self._restore(*self.ckpt)

    def _open_log(self) -> None:
        """Count passes, open metrics.jsonl (cut back to the checkpoint on resume) and note a resume in it."""
        main = self.info.is_main
        self.counter = PassCounter(self.recipe.counted(self.trained))  # the network training calls
        self.log = MetricsLog(self.run_dir / "metrics.jsonl", enabled=main,
                              truncate_to=self.p.metrics_offset if self.resume else 0,
                              tensorboard=self.cfg.train.tensorboard)
        self.env = environment(self.device)
        if self.resume and main:
            self.log.write({"kind": "resume", "step": self.p.step, "epoch": self._epochs_done()})

    def _check_resumable(self, meta: dict[str, Any]) -> None:
        """Refuse a checkpoint this run cannot continue: another config or another number of processes."""
        ckpt = self.ckpt_dir / "last.safetensors"
        changed = _changed_keys(meta.get("config") or {}, json.loads(json.dumps(self.cfg.model_dump(mode="json"))))
        if changed:
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            raise ResumeError(f"cannot resume {self.run_dir}: the config differs from the one {ckpt} was trained "
                              f"with in {shown} (was config.toml edited? restore it, or start a new run)")
        saved_world = int(meta.get("world_size", 1))
        if saved_world != self.info.world_size:
            raise ResumeError(f"cannot resume {self.run_dir}: {ckpt} was written by a {saved_world}-process run, this "
                              f"is a {self.info.world_size}-process one (batch shards and counts would differ); "
                              f"resume with torchrun --nproc_per_node={saved_world}, or start a new run")

    def _check_recipe_unchanged(self, saved: dict[str, Any] | None) -> None:
        """Refuse a resume when a recipe default changed since the run started (config.toml keeps only the
        recipe_args given; the checkpoint's recipe record has every setting with its defaults filled in)."""
        now = json.loads(json.dumps(self.recipe.describe()))
        saved = None if saved is None else json.loads(json.dumps(self.recipe.read_record(saved)))
        if saved is not None and saved != now:
            changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            was = [saved.get(k) for k in changed]
            raise ResumeError(f"cannot resume {self.run_dir}: recipe settings {changed} now default to "
                              f"{[now.get(k) for k in changed]}, the run started with {was} "
                              "(set them explicitly in train.recipe_args)")

    def _restore(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Put every piece of state `_state` saved back in place, so the run continues as if never stopped."""
        ckpt = self.ckpt_dir / "last.safetensors"
        self._check_recipe_unchanged(meta.get("recipe"))
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            self.trained.load_state_dict(model_state, strict=True)
        except RuntimeError as e:
            raise ResumeError(f"cannot resume {self.run_dir}: {ckpt} holds another network's weights than "
                              f"{self.cfg.model.name!r} ({str(e).splitlines()[-1].strip()})") from None
        self.optimizer.load_state_dict(unflatten_state(meta["optimizer"], tensors))
        recipe_state = {k[len("recipe."):]: v for k, v in tensors.items() if k.startswith("recipe.")}
        self.recipe.load_state_dict(recipe_state)
        self.p = Progress(**meta["progress"])
        self.window = dict(meta.get("log_window") or {})
        _restore_rng(tensors, self.recipe_gen, self.device, seed=self.cfg.seed, rank=self.info.rank, step=self.p.step)

    # -- the loop -------------------------------------------------------------------------------------------
    def _loop(self, flag: _InterruptFlag) -> None:
        """Train epoch after epoch until the planned batches are done, the deadline passes or Ctrl-C stops it."""
        t, p = self.cfg.train, self.p
        if p.batches_done == 0 and t.val_at_start and p.best_step < 0:
            self._validate()
        bar = terminal_bar(self.total_batches, initial=p.batches_done, disable=not (t.progress and self.info.is_main))
        if not self.window:
            self.window = _new_window(p.wall_s)
        self._clock = time.perf_counter()
        try:
            while p.batches_done < self.total_batches and not p.done:
                self._run_epoch(flag, bar)
        finally:
            bar.close()

    def _run_epoch(self, flag: _InterruptFlag, bar: Any) -> None:
        """The current epoch from where the run stands (a resume replays its batch order and skips what was done)."""
        p = self.p
        for i, (x, y) in enumerate(self._loader(p.epoch)):
            if i < p.batch:  # resumed mid-epoch: replay the order, skip what was done
                continue
            if p.batches_done >= self.total_batches:
                return
            eps = self._train_batch(x, y, bar)
            if self._close_batch(eps, flag, bar):
                return
        raise RuntimeError(f"the data loader yielded fewer than {self.batches_per_epoch} batches")

    def _train_batch(self, x: Tensor, y: Tensor, bar: Any) -> float:
        """Train on one batch and add it to the progress, the log window and the wall time; returns its eps."""
        p, win = self.p, self.window
        loss, acc, eps, logs = self._batch(x, y)
        p.batch += 1
        p.batches_done += 1
        win["loss"] += loss
        win["acc"] += acc
        win["n"] += 1
        win["imgs"] += x.shape[0]
        for k, v in logs.items():
            win["logs"][k] = win["logs"].get(k, 0.0) + v
        now = time.perf_counter()
        p.wall_s += now - self._clock
        self._clock = now
        bar.update(1)
        return eps

    def _close_batch(self, eps: float, flag: _InterruptFlag, bar: Any) -> bool:
        """What follows a batch: log, validate, advance the epoch, checkpoint, stop on Ctrl-C; True ends the epoch."""
        t, p = self.cfg.train, self.p
        last_batch = p.batches_done >= self.total_batches or self._past_deadline()
        if p.batches_done % max(1, t.log_every // self.replays) == 0 or last_batch:
            self._log_train(eps, bar)
            self.window = _new_window(p.wall_s)
        if self._val_due(p.batches_done) or last_batch:
            self._sync()
            self._validate()
        end_of_epoch = p.batch >= self.batches_per_epoch
        if end_of_epoch:
            p.epoch += 1
            p.batch = 0
        if last_batch:
            p.done = True
        due = (t.checkpoint_every > 0 and p.step - p.last_ckpt_step >= t.checkpoint_every) or (
            t.checkpoint_every == 0 and end_of_epoch)
        if due or last_batch or flag.set:
            self._save("last")
        if flag.set:
            raise KeyboardInterrupt(f"interrupted at step {p.step}; resumable checkpoint saved")
        self._clock = time.perf_counter()  # validation and checkpoint writing are not training time
        return end_of_epoch or p.done

    def _past_deadline(self) -> bool:
        """train.max_wall_s reached: the run ends here as if this were its last batch (validated, saved, done);
        `stopped_early` in the summary says so. Budgeted runs (a GPU lent for minutes) always leave a model."""
        limit = self.cfg.train.max_wall_s
        if limit and self.info.enabled:  # every rank must stop at the same batch
            return ddp.all_sum([float(self.p.wall_s >= limit)], self.info)[0] > 0
        return bool(limit) and self.p.wall_s >= limit

    def _loader(self, epoch: int):
        """The loader with a Generator derived from (seed, epoch): an epoch's order is known without replaying."""
        if not hasattr(self, "_batch_loader"):
            from gradguard.data import Augment, BatchLoader

            d = self.cfg.data
            augment = Augment(crop_padding=d.crop_padding, flip=d.flip) if d.augment else None
            self._batch_loader = BatchLoader(self.train_set, self.cfg.train.batch_size, shuffle=True,
                                             augment=augment, device="cpu", drop_last=self.info.enabled)
        self._batch_loader.generator = make_generator(self.cfg.seed, "data", epoch)
        return self._batch_loader

    def _log_train(self, eps: float, bar: Any) -> None:
        """Write the train record of the window that ends here (averaged over ranks) and show it on the bar."""
        win = self.window
        n = max(1, int(win["n"]))
        loss, acc = win["loss"] / n, win["acc"] / n
        if self.info.enabled:
            loss, acc = (v / self.info.world_size for v in ddp.all_sum([loss, acc], self.info))
        dt = self.p.wall_s - win["t0"]
        rate = win["imgs"] / dt if dt > 0 else float("nan")
        record = {"kind": "train", "epoch": self._epochs_done(), "step": self.p.step,
                  "lr": self.optimizer.param_groups[0]["lr"], "eps": eps, "loss": loss, "acc": acc,
                  "imgs_per_s": rate, "wall_s": self.p.wall_s, "fb_passes": self.p.fb_passes,
                  "fwd_passes": self.p.fwd_passes, **{k: v / n for k, v in win["logs"].items()}}
        self.log.write(record)
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", img_s=f"{rate:.0f}", refresh=False)
        bar.set_description(f"epoch {self._epochs_done():.2f}")

    # -- one batch ------------------------------------------------------------------------------------------
    def _batch(self, x: Tensor, y: Tensor) -> tuple[float, float, float, dict[str, float]]:
        """The recipe's replays on one batch; returns their mean loss and accuracy, the eps used and mean logs."""
        global_n = x.shape[0]
        x, y = self._local_batch(x, y)
        loss_sum = correct = 0.0
        logs: dict[str, float] = {}
        for _ in range(self.replays):
            ctx, eps = self._step_context()
            lv, out = self._replay(x, y, global_n, ctx)
            loss_sum += lv
            correct += float((out.logits.detach().argmax(1) == y).float().mean())
            for k, v in out.logs.items():
                logs[k] = logs.get(k, 0.0) + float(v) / self.replays
        return loss_sum / self.replays, correct / self.replays, eps, logs

    def _local_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """This rank's shard of the batch, on the device, in the run's memory layout."""
        if self.info.enabled:
            a, b = ddp.shard(x, self.info)
            x, y = x[a:b], y[a:b]
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _step_context(self) -> tuple[StepContext, float]:
        """Set this step's lr from the schedule and hand the recipe its threat (eps ramped up), Generator, progress."""
        t = self.cfg.train
        lr = t.lr * lr_factor(t.schedule, self.p.step, self.total_steps, milestones=t.milestones, gamma=t.gamma,
                              warmup_steps=self.warmup_steps, onecycle_peak=t.onecycle_peak)
        set_lr(self.optimizer, lr)
        epochs = self.p.step / (self.batches_per_epoch * self.replays)
        eps = t.eps * min(1.0, epochs / t.eps_rampup_epochs) if t.eps_rampup_epochs > 0 else t.eps
        ctx = StepContext(threat=threat_model(t.norm, eps), generator=self.recipe_gen, step=self.p.step,
                          progress=self.p.step / self.total_steps, n_train=len(self.train_set))
        return ctx, eps

    def _replay(self, x: Tensor, y: Tensor, global_n: int, ctx: StepContext) -> tuple[float, Any]:
        """One optimizer step on the recipe's loss: backward, all-reduce, finite checks, clipping, step, counting."""
        t = self.cfg.train
        snap = self.counter.snapshot()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()
        with autocast:
            out = self.recipe.step(self.trained, x, y, ctx)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        loss = out.loss.detach().float()
        if self.info.enabled:
            loss = ddp.allreduce_grads(self.params, x.shape[0], global_n, loss)
        lv = float(loss)
        if not math.isfinite(lv):
            raise NonFiniteLossError(f"non-finite loss ({lv}) at epoch {self.p.epoch} step {self.p.step} (batch "
                                     f"{self.p.batch} of the epoch); the run stopped; {self._kept()}")
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, t.grad_clip)
        self.optimizer.step()
        if not all_finite(self.params):
            self._non_finite_weights()
        self.p.step += 1
        fwd, fb = self.counter.since(snap, x.shape[0])
        self.p.fwd_passes += fwd
        self.p.fb_passes += fb
        return lv, out

    def _kept(self) -> str:
        """What is left after a failure: the last checkpoint, read back to be sure it is still good."""
        last = self.ckpt_dir / "last.safetensors"
        if not last.exists():
            return "no checkpoint had been written yet"
        try:  # read it back: the message promises a good checkpoint, so check that it still is one
            step = load_checkpoint(last)[1]["step"]
        except CheckpointError as e:
            return f"the last checkpoint is not usable either: {e}"
        return f"the last good checkpoint {last} (step {step}) was kept"

    def _non_finite_weights(self) -> None:
        """Stop the run, naming the first parameter an optimizer step made NaN or infinite."""
        name, count = first_non_finite(self.trained.named_parameters()) or ("a parameter", 0)
        lr = self.optimizer.param_groups[0]["lr"]
        raise NonFiniteWeightsError(
            f"non-finite weights after the optimizer step at epoch {self.p.epoch} step {self.p.step} (batch "
            f"{self.p.batch} of the epoch): {name} holds {count} NaN/inf values (lr {lr}); the run stopped; "
            f"{self._kept()}")

    # -- validation -----------------------------------------------------------------------------------------
    def _epochs_done(self) -> float:
        """Progress in (fractional) epochs, as records report it."""
        return self.p.batches_done / self.batches_per_epoch

    def _validate(self) -> dict[str, Any] | None:
        """Attack the held-out images (the time-to-robustness log), record it and keep the best model so far."""
        if self.val_set is None:
            return None
        t0 = time.perf_counter()
        snap = self.counter.snapshot()
        gen = make_generator(self.cfg.seed, "val", device=self.device)
        t = self.cfg.train
        chain = build_val_attack(t.val_attack, eps=self.val_eps, norm=t.norm, steps=t.val_attack_steps,
                                 alpha=t.val_attack_alpha, targets=t.val_attack_targets, generator=gen)
        res = robust_validate(self.plain, self.val_x, self.val_y, chain, batch_size=t.val_batch_size, info=self.info)
        self._sync()
        self.p.val_passes += self.counter.since(snap, min(self.cfg.train.val_batch_size, len(self.val_y)))[0]
        self.p.val_wall_s += time.perf_counter() - t0
        record = {"kind": "val", "epoch": self._epochs_done(), "step": self.p.step, "wall_s": self.p.wall_s,
                  "fb_passes": self.p.fb_passes, "fwd_passes": self.p.fwd_passes, **res, "val_eps": self.val_eps,
                  "val_attack": t.val_attack, "val_attack_steps": val_attack_steps(t.val_attack, t.val_attack_steps),
                  "val_n": len(self.val_y), "val_wall_s": self.p.val_wall_s, "val_passes": self.p.val_passes}
        self.log.write(record)
        self._keep_val_models(record)
        return record

    def _keep_val_models(self, record: dict[str, Any]) -> None:
        """Export this validation's model when asked (for re-scoring the curve offline), and the best one so far."""
        if self.cfg.train.keep_val_models and self.info.is_main:
            save_model(self.plain, self.run_dir / "models" / f"step-{self.p.step}.safetensors",
                       {**_model_info(self.cfg), **{k: record[k] for k in ("step", "epoch", "fb_passes", "wall_s",
                                                                          "val_clean_acc", "val_robust_acc")}})
        if record["val_robust_acc"] > self.p.best_robust_acc:
            self.p.best_robust_acc, self.p.best_step = record["val_robust_acc"], self.p.step
            if self.info.is_main:
                self._save("best")
                save_model(self.plain, self.run_dir / "model-best.safetensors",
                           {**_model_info(self.cfg), **{k: record[k] for k in ("step", "val_clean_acc",
                                                                              "val_robust_acc")}})

    def _val_due(self, batches_done: int) -> bool:
        """True when this batch crosses a multiple of the (possibly fractional) validation interval."""
        k = self.val_interval
        return math.floor(batches_done / k + 1e-9) > math.floor((batches_done - 1) / k + 1e-9)

    def _sync(self) -> None:
        """Wait for the GPU, so wall times measure finished work."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Everything a resume needs: tensors (weights, optimizer, recipe, RNGs) and JSON (config, progress...)."""
        tensors = {f"model.{k}": v for k, v in self.trained.state_dict().items()}
        opt_tensors, opt_tree = flatten_state(self.optimizer.state_dict(), "optim")
        tensors.update(opt_tensors)
        tensors.update({f"recipe.{k}": v for k, v in self.recipe.state_dict().items()})
        tensors.update(_rng_tensors(self.recipe_gen, self.device))
        meta = {
            "config": self.cfg.model_dump(mode="json"),
            "seed": self.cfg.seed,
            "device": str(self.device),
            "world_size": self.info.world_size,
            "epoch": self.p.epoch,
            "step": self.p.step,
            "progress": asdict(self.p),
            "optimizer": opt_tree,
            "scheduler": {"kind": self.cfg.train.schedule, "step": self.p.step, "total_steps": self.total_steps},
            "recipe": self.recipe.describe(),  # every setting, defaults filled in: checked on resume
            "log_window": self.window,  # the train-record window under way, so a resume logs what the run would
            "environment": self.env,
        }
        return tensors, meta

    def _save(self, name: str) -> None:
        """Write checkpoints/<name>.safetensors (main process only); "last" also marks where metrics.jsonl stands."""
        if not self.info.is_main:
            return
        t0 = time.perf_counter()
        if name == "last":
            self.p.last_ckpt_step = self.p.step
            self.p.metrics_offset = self.log.offset()
        tensors, meta = self._state()
        save_checkpoint(self.ckpt_dir / f"{name}.safetensors", tensors, meta)
        self.p.ckpt_wall_s += time.perf_counter() - t0

    # -- the end --------------------------------------------------------------------------------------------
    def _finish(self) -> dict[str, Any]:
        """Export the plain network and write the summary (final and best validation, costs, stopped early?)."""
        main = self.info.is_main
        summary: dict[str, Any] = {"run_dir": str(self.run_dir), "name": self.cfg.name,
                                   "recipe": self.recipe.describe(),
                                   **{k: v for k, v in asdict(self.p).items() if k not in ("metrics_offset",)},
                                   "epochs": self._epochs_done(), "world_size": self.info.world_size,
                                   "stopped_early": self.p.batches_done < self.total_batches,
                                   "torch_threads": torch.get_num_threads()}
        if main:
            self.log.offset()
            vals = read_metrics(self.run_dir / "metrics.jsonl", "val")
            summary["final_val"] = vals[-1] if vals else None
            summary["best_val"] = next((v for v in vals if v["step"] == self.p.best_step), None)
            save_model(self.plain, self.run_dir / "model.safetensors",
                       {**_model_info(self.cfg), "step": self.p.step, "environment": self.env})
            atomic_write_text(self.run_dir / "train_summary.json", json.dumps(summary, indent=2) + "\n")
        return summary
