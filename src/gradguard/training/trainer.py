"""The one training loop. It never knows which defence it runs: a recipe turns each batch into a loss.

    summary = train(load_config("configs/mnist-pgd-at.toml"), "runs/pgd-at")
    summary = train(cfg, "runs/pgd-at", resume=True)   # after a crash, Ctrl-C or SIGKILL

Per batch: the recipe's `step` runs `recipe.replays` times, each followed by backward, (all-reduce), clipping and an
optimizer step, with the lr set from the schedule at every iteration. Forward passes through the plain network are
counted by a hook; wall time excludes validation and checkpoint writing, both of which are logged on their own.
Exact resume: data order and augmentation come from a Generator re-derived from (seed, epoch), so a resumed epoch
replays its batch order and skips the done batches; the recipe's Generator, the global RNG, the optimizer and the
recipe state are restored from the last checkpoint, and metrics.jsonl is cut back to what it held at that moment.
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
    flatten_state,
    load_checkpoint,
    network_from_info,
    save_checkpoint,
    save_model,
    unflatten_state,
)
from gradguard.config import ExperimentConfig, dump_config
from gradguard.passes import PassCounter
from gradguard.progress import terminal_bar
from gradguard.provenance import environment
from gradguard.rundir import RunExistsError, run_exists_message
from gradguard.runlog import MetricsLog, read_metrics
from gradguard.threads import ThreadsSetting, torch_threads
from gradguard.threat import threat_model
from gradguard.training import distributed as ddp
from gradguard.training.optim import build_optimizer, set_lr
from gradguard.training.recipe import Recipe, StepContext
from gradguard.training.recipes import build_recipe
from gradguard.training.schedules import lr_factor
from gradguard.training.seeding import derive_seed, make_generator, seed_everything
from gradguard.training.validation import robust_validate

__all__ = ["train", "NonFiniteLossError", "Progress", "prepare_data", "build_network"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


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
    Raises NonFiniteLossError on a NaN/inf loss (the last good checkpoint stays) and KeyboardInterrupt after saving
    a resumable checkpoint on Ctrl-C.
    """
    with torch_threads(config.train.threads if threads is None else threads):
        return _Run(config, Path(run_dir), resume).run()


class _Run:
    def __init__(self, cfg: ExperimentConfig, run_dir: Path, resume: bool) -> None:
        self.cfg, self.run_dir, self.resume = cfg, run_dir, resume
        self.ckpt_dir = run_dir / "checkpoints"

    # -- setup ----------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg, t = self.cfg, self.cfg.train
        self.info = ddp.setup(t.device)
        self.device = self.info.device
        cuda = self.device.type == "cuda"
        if t.amp and not cuda:
            warnings.warn("train.amp applies on a GPU only; ignored on CPU", stacklevel=3)
        self.amp = t.amp and cuda
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        # Channels-last also pays on CPU: oneDNN skips a reorder per conv (docs/training.md, about 28% off a
        # SmallCNN training step). Off by default so that documented seeded runs stay bit-for-bit reproducible.
        self.channels_last = t.channels_last
        if t.batch_size < self.info.world_size:
            raise ValueError(f"train.batch_size = {t.batch_size} is smaller than the world size {self.info.world_size}")

        last = self.ckpt_dir / "last.safetensors"
        self.ckpt: tuple[dict[str, Tensor], dict[str, Any]] | None = None
        if self.resume and last.exists():
            self.ckpt = load_checkpoint(last)
        elif self.resume:  # killed before its first checkpoint: nothing to continue, start over
            warnings.warn(f"{last} does not exist: starting {self.run_dir} from the beginning", stacklevel=3)
            self.resume = False
        elif last.exists():
            raise RunExistsError(run_exists_message(self.run_dir, "gradguard train"))

        seed_everything(cfg.seed)  # the single place a run seeds the global RNGs (weight init, dropout)
        self.train_set, self.val_set = prepare_data(cfg)
        model = build_network(cfg)
        self.recipe: Recipe = build_recipe(t.recipe, **t.recipe_args)
        self.trained = self.recipe.wrap(model).to(self.device)
        if self.channels_last:
            self.trained = self.trained.to(memory_format=torch.channels_last)
        self.plain = self.recipe.unwrap(self.trained)
        if self.info.enabled:
            ddp.broadcast_module(self.trained)
            seed_everything(derive_seed(cfg.seed, "rank", self.info.rank) % (2**63))  # per-rank dropout draws
        self.params = [p for p in self.trained.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.params, t)
        self.recipe_gen = make_generator(cfg.seed, "recipe", self.info.rank, device=self.device)

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

        self.p = Progress()
        if self.ckpt is not None:
            self._restore(*self.ckpt)
        self.counter = PassCounter(self.plain)
        main = self.info.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not self.resume:
                atomic_write_text(self.run_dir / "config.toml", dump_config(cfg))
        self.log = MetricsLog(self.run_dir / "metrics.jsonl", enabled=main,
                              truncate_to=self.p.metrics_offset if self.resume else 0,
                              tensorboard=t.tensorboard)
        self.env = environment(self.device)
        if self.resume and main:
            self.log.write({"kind": "resume", "step": self.p.step, "epoch": self._epochs_done()})

    def _restore(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        if meta.get("config") != json.loads(json.dumps(self.cfg.model_dump(mode="json"))):
            raise ValueError(f"cannot resume {self.run_dir}: the config differs from the one the run was started with "
                             "(resume with the run's own config.toml)")
        # The recipe record has every setting with its defaults filled in: a library default that changed since the
        # run started is caught here (config.toml keeps only the recipe_args given).
        saved = meta.get("recipe")
        now = json.loads(json.dumps(self.recipe.describe()))
        if saved is not None and saved != now:
            changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            raise ValueError(f"cannot resume {self.run_dir}: recipe settings {changed} now default to "
                             f"{[now.get(k) for k in changed]}, the run started with {[saved.get(k) for k in changed]} "
                             "(set them explicitly in train.recipe_args)")
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.trained.load_state_dict(model_state, strict=True)
        self.optimizer.load_state_dict(unflatten_state(meta["optimizer"], tensors))
        recipe_state = {k[len("recipe."):]: v for k, v in tensors.items() if k.startswith("recipe.")}
        self.recipe.load_state_dict(recipe_state)
        self.p = Progress(**meta["progress"])
        _restore_rng(tensors, self.recipe_gen, self.device, seed=self.cfg.seed, rank=self.info.rank, step=self.p.step)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
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
            "environment": self.env,
        }
        return tensors, meta

    def _save(self, name: str) -> None:
        if not self.info.is_main:
            return
        t0 = time.perf_counter()
        if name == "last":
            self.p.last_ckpt_step = self.p.step
            self.p.metrics_offset = self.log.offset()
        tensors, meta = self._state()
        save_checkpoint(self.ckpt_dir / f"{name}.safetensors", tensors, meta)
        self.p.ckpt_wall_s += time.perf_counter() - t0

    # -- validation -----------------------------------------------------------------------------------------
    def _epochs_done(self) -> float:
        return self.p.batches_done / self.batches_per_epoch

    def _validate(self) -> dict[str, Any] | None:
        if self.val_set is None:
            return None
        t0 = time.perf_counter()
        snap = self.counter.snapshot()
        gen = make_generator(self.cfg.seed, "val", device=self.device)
        res = robust_validate(self.plain, self.val_x, self.val_y, self.cfg.train, eps=self.val_eps, generator=gen,
                              info=self.info)
        self._sync()
        self.p.val_passes += self.counter.since(snap, min(self.cfg.train.val_batch_size, len(self.val_y)))[0]
        self.p.val_wall_s += time.perf_counter() - t0
        record = {"kind": "val", "epoch": self._epochs_done(), "step": self.p.step, "wall_s": self.p.wall_s,
                  "fb_passes": self.p.fb_passes, "fwd_passes": self.p.fwd_passes, **res, "val_eps": self.val_eps,
                  "val_attack": self.cfg.train.val_attack, "val_attack_steps": self.cfg.train.val_attack_steps,
                  "val_n": len(self.val_y), "val_wall_s": self.p.val_wall_s, "val_passes": self.p.val_passes}
        self.log.write(record)
        if res["val_robust_acc"] > self.p.best_robust_acc:
            self.p.best_robust_acc, self.p.best_step = res["val_robust_acc"], self.p.step
            if self.info.is_main:
                self._save("best")
                save_model(self.plain, self.run_dir / "model-best.safetensors",
                           {**_model_info(self.cfg), **{k: record[k] for k in ("step", "val_clean_acc",
                                                                              "val_robust_acc")}})
        return record

    def _val_due(self, batches_done: int) -> bool:
        """True when this batch crosses a multiple of the (possibly fractional) validation interval."""
        k = self.val_interval
        return math.floor(batches_done / k + 1e-9) > math.floor((batches_done - 1) / k + 1e-9)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- one batch ------------------------------------------------------------------------------------------
    def _batch(self, x: Tensor, y: Tensor) -> tuple[float, float, float, dict[str, float]]:
        t, info = self.cfg.train, self.info
        global_n = x.shape[0]
        if info.enabled:
            a, b = ddp.shard(x, info)
            x, y = x[a:b], y[a:b]
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        loss_sum = correct = 0.0
        logs: dict[str, float] = {}
        for _ in range(self.replays):
            lr = t.lr * lr_factor(t.schedule, self.p.step, self.total_steps, milestones=t.milestones, gamma=t.gamma,
                                  warmup_steps=self.warmup_steps, onecycle_peak=t.onecycle_peak)
            set_lr(self.optimizer, lr)
            epochs = self.p.step / (self.batches_per_epoch * self.replays)
            eps = t.eps * min(1.0, epochs / t.eps_rampup_epochs) if t.eps_rampup_epochs > 0 else t.eps
            ctx = StepContext(threat=threat_model(t.norm, eps), generator=self.recipe_gen, step=self.p.step,
                              progress=self.p.step / self.total_steps)
            snap = self.counter.snapshot()
            autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()
            with autocast:
                out = self.recipe.step(self.trained, x, y, ctx)
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            loss = out.loss.detach().float()
            if info.enabled:
                loss = ddp.allreduce_grads(self.params, x.shape[0], global_n, loss)
            lv = float(loss)
            if not math.isfinite(lv):
                raise NonFiniteLossError(
                    f"non-finite loss ({lv}) at epoch {self.p.epoch} step {self.p.step} (batch {self.p.batch} of the "
                    f"epoch); the run stopped and the last good checkpoint "
                    f"{self.ckpt_dir / 'last.safetensors'} (step {self.p.last_ckpt_step}) was kept")
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, t.grad_clip)
            self.optimizer.step()
            self.p.step += 1
            fwd, fb = self.counter.since(snap, x.shape[0])
            self.p.fwd_passes += fwd
            self.p.fb_passes += fb
            loss_sum += lv
            correct += float((out.logits.detach().argmax(1) == y).float().mean())
            for k, v in out.logs.items():
                logs[k] = logs.get(k, 0.0) + float(v) / self.replays
        return loss_sum / self.replays, correct / self.replays, eps, logs

    # -- run ------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        try:
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

    def _loop(self, flag: _InterruptFlag) -> None:
        t, p = self.cfg.train, self.p
        main = self.info.is_main
        if p.batches_done == 0 and t.val_at_start and p.best_step < 0:
            self._validate()
        bar = terminal_bar(self.total_batches, initial=p.batches_done, disable=not (t.progress and main))
        win = {"loss": 0.0, "acc": 0.0, "n": 0, "imgs": 0, "t0": p.wall_s}
        win_logs: dict[str, float] = {}
        clock = time.perf_counter()
        try:
            while p.batches_done < self.total_batches:
                loader = self._loader(p.epoch)
                for i, (x, y) in enumerate(loader):
                    if i < p.batch:  # resumed mid-epoch: replay the order, skip what was done
                        continue
                    if p.batches_done >= self.total_batches:
                        break
                    loss, acc, eps, logs = self._batch(x, y)
                    p.batch += 1
                    p.batches_done += 1
                    win["loss"] += loss
                    win["acc"] += acc
                    win["n"] += 1
                    win["imgs"] += x.shape[0]
                    for k, v in logs.items():
                        win_logs[k] = win_logs.get(k, 0.0) + v
                    now = time.perf_counter()
                    p.wall_s += now - clock
                    clock = now
                    bar.update(1)
                    last_batch = p.batches_done >= self.total_batches
                    if p.batches_done % max(1, t.log_every // self.replays) == 0 or last_batch:
                        self._log_train(win, win_logs, eps, bar)
                        win = {"loss": 0.0, "acc": 0.0, "n": 0, "imgs": 0, "t0": p.wall_s}
                        win_logs = {}
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
                    clock = time.perf_counter()
                    if end_of_epoch:
                        break
                else:
                    raise RuntimeError(f"the data loader yielded fewer than {self.batches_per_epoch} batches")
        finally:
            bar.close()

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

    def _log_train(self, win: dict[str, float], win_logs: dict[str, float], eps: float, bar: Any) -> None:
        n = max(1, int(win["n"]))
        loss, acc = win["loss"] / n, win["acc"] / n
        if self.info.enabled:
            loss, acc = (v / self.info.world_size for v in ddp.all_sum([loss, acc], self.info))
        dt = self.p.wall_s - win["t0"]
        rate = win["imgs"] / dt if dt > 0 else float("nan")
        record = {"kind": "train", "epoch": self._epochs_done(), "step": self.p.step,
                  "lr": self.optimizer.param_groups[0]["lr"], "eps": eps, "loss": loss, "acc": acc,
                  "imgs_per_s": rate, "wall_s": self.p.wall_s, "fb_passes": self.p.fb_passes,
                  "fwd_passes": self.p.fwd_passes, **{k: v / n for k, v in win_logs.items()}}
        self.log.write(record)
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", img_s=f"{rate:.0f}", refresh=False)
        bar.set_description(f"epoch {self._epochs_done():.2f}")

    def _finish(self) -> dict[str, Any]:
        main = self.info.is_main
        summary: dict[str, Any] = {"run_dir": str(self.run_dir), "name": self.cfg.name,
                                   "recipe": self.recipe.describe(),
                                   **{k: v for k, v in asdict(self.p).items() if k not in ("metrics_offset",)},
                                   "epochs": self._epochs_done(), "world_size": self.info.world_size,
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
