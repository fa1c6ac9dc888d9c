"""Experiment configs: TOML files validated on load, so a typo fails before an hour of training, not after.

    cfg = load_config("configs/mnist-pgd-at.toml", overrides=["train.lr=0.05", "train.epochs=2"])

Every error names the key it is about (``train.eps: must be <= 1 for norm 'linf' (got 8.0)``); an unknown key is an
error; ``[train.recipe_args]`` is checked by the recipe's own ``Config``. The full schema is in docs/training.md.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gradguard import config_checks as checks
from gradguard.atomic import atomic_write_text
from gradguard.errors import UserError

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "EvalConfig",
    "ExperimentConfig",
    "load_config",
    "parse_config",
    "apply_overrides",
    "dump_config",
    "save_config",
    "format_validation_error",
]


class ConfigError(UserError, ValueError):
    """An invalid experiment config; the message names the file (if any) and every bad key."""


def _passes(check: Callable[[Any], None]) -> Callable[[Any], Any]:
    """A pydantic field validator from a check that raises ValueError (its message follows the key)."""
    def validate(value: Any) -> Any:
        check(value)
        return value

    return validate


class _Strict(BaseModel):
    # allow_inf_nan=False: `epochs = inf` or `lr = nan` is a typo, never a setting
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Strict):
    """Which data, and how much of it."""

    dataset: str = "mnist"
    root: str = ""  # folder (or archive) to read the dataset from first; "" = $GRADGUARD_DATA, then the cache
    val_size: int = Field(1000, ge=0)  # fixed held-out subset of the training split for robust validation
    train_subset: int = Field(0, ge=0)  # 0 = all remaining training images
    test_subset: int = Field(1000, ge=0)  # test images the runner evaluates on when eval.n = 0; 0 = all
    augment: bool = False  # random crop (padding crop_padding) + horizontal flip, for CIFAR-like data
    crop_padding: int = Field(4, ge=0)
    flip: bool = True

    _dataset_known = field_validator("dataset")(_passes(checks.check_dataset))


class ModelConfig(_Strict):
    name: str = "smallcnn"
    args: dict[str, Any] = Field(default_factory=dict)  # extra keyword arguments for build_model
    randomization: str = "none"  # "none", "noise", "pni", "bayes", "resize-pad", "dropout"
    randomization_args: dict[str, Any] = Field(default_factory=dict)

    _name_known = field_validator("name")(_passes(checks.check_model_name))
    _randomization_known = field_validator("randomization")(_passes(checks.check_randomization))


Schedule = Literal["constant", "piecewise", "cosine", "onecycle"]
# torch CPU threads (gradguard.threads): N >= 1, 0 = leave torch's setting alone, "auto" = by the load average
Threads = Annotated[int, Field(ge=0)] | Literal["auto"]


class TrainConfig(_Strict):
    recipe: str = "standard"
    recipe_args: dict[str, Any] = Field(default_factory=dict)  # validated by the recipe's Config
    epochs: float = Field(10, gt=0)  # fractions allowed (e.g. 0.5 for a quick run)
    batch_size: int = Field(128, ge=1)  # global batch (split across ranks under torchrun)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam only
    schedule: Schedule = "piecewise"
    milestones: list[float] = Field(default_factory=lambda: [0.5, 0.75])  # piecewise: fractions of training
    gamma: float = Field(0.1, gt=0)  # piecewise: lr factor at each milestone
    warmup_epochs: float = Field(0, ge=0)  # linear warm-up from 0, any schedule
    onecycle_peak: float = Field(0.4, gt=0, lt=1)  # onecycle: fraction of training at which lr peaks
    norm: Literal["linf", "l2"] = "linf"
    eps: float = Field(0.3, ge=0)
    eps_rampup_epochs: float = Field(0, ge=0)  # eps grows linearly from 0 over this many epochs
    grad_clip: float = Field(0, ge=0)  # max global gradient norm; 0 = off
    amp: bool = False  # bf16 autocast (GPU only; ignored with a warning on CPU)
    channels_last: bool = False  # conv nets in channels-last layout (GPU and CPU)
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1"
    threads: Threads = 1  # torch CPU threads for the run (gradguard.threads; docs/training.md)
    max_wall_s: float = Field(0, ge=0)  # stop at the first batch after this much training wall time; 0 = off
    val_every: float = Field(1, gt=0)  # epochs between robust validations (fractions allowed)
    val_at_start: bool = False  # also validate before the first step (the curve's origin)
    # The time-to-robustness log's attack: APGD-CE by default (a fixed-step PGD can overstate robust accuracy by tens
    # of points, and by different amounts per method); "apgd" chains targeted APGD after it; pgd/fgsm are cheap.
    val_attack: Literal["apgd-ce", "apgd", "pgd", "fgsm", "none"] = "apgd-ce"
    val_attack_steps: int | None = Field(None, ge=1)  # None = the attack's own default: APGD 100, PGD 10
    val_attack_alpha: float = Field(0, ge=0)  # PGD only; 0 = 2.5 * eps / steps
    val_attack_targets: int = Field(9, ge=1)  # "apgd": target classes of the targeted APGD
    keep_val_models: bool = False  # save the plain network at every validation (models/step-N.safetensors)
    val_eps: float = Field(0, ge=0)  # 0 = train.eps
    val_batch_size: int = Field(500, ge=1)
    log_every: int = Field(10, ge=1)  # optimizer steps between train records in metrics.jsonl (and plot points)
    checkpoint_every: int = Field(0, ge=0)  # optimizer steps between 'last' checkpoints; 0 = each epoch end
    progress: bool = True  # tqdm bars
    tensorboard: bool = True  # write TensorBoard events when the package is installed

    _device_known = field_validator("device")(_passes(checks.check_device))
    _threads_fit = field_validator("threads")(_passes(checks.check_threads))


class EvalConfig(_Strict):
    """Final evaluation, run by `gradguard run` after training (see gradguard.evaluation)."""

    suite: str = "standard"
    norm: Literal["linf", "l2"] | None = None  # None = train.norm
    eps: list[float] = Field(default_factory=list)  # empty = [train.eps]
    m: int = Field(1, ge=1)  # prediction draws averaged for randomized models
    k: int | None = Field(None, ge=1)  # EOT draws per gradient; None = the suite's default (standard 1, rand 20)
    n: int = Field(1000, ge=0)  # first n test images evaluated; 0 = data.test_subset (0 there too: all)
    batch_size: int = Field(500, ge=1)
    quick: bool = False
    threads: Threads = 1  # torch CPU threads for the evaluation (gradguard.threads; docs/evaluation.md)

    _suite_known = field_validator("suite")(_passes(checks.check_suite))
    _threads_fit = field_validator("threads")(_passes(checks.check_threads))


class ExperimentConfig(_Strict):
    name: str = "experiment"  # the run folder's name under runs/: one plain path component
    seed: int = Field(0, ge=0, le=checks.SEED_MAX)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    _name_safe = field_validator("name")(_passes(checks.check_run_name))

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        problems: list[str] = []
        t = self.train
        if t.norm == "linf":
            for key, value in (("train.eps", t.eps), ("train.val_eps", t.val_eps)):
                if value > 1:
                    problems.append(f"{key}: must be <= 1 for norm 'linf' (got {value:g})")
        eval_norm = self.eval.norm or t.norm
        for i, value in enumerate(self.eval.eps):
            if value <= 0:
                problems.append(f"eval.eps[{i}]: must be > 0 (got {value:g}); clean accuracy is always reported")
            elif eval_norm == "linf" and value > 1:
                problems.append(f"eval.eps[{i}]: must be <= 1 for norm 'linf' (got {value:g})")
        if sorted(t.milestones) != list(t.milestones) or any(not 0 < m < 1 for m in t.milestones):
            problems.append(f"train.milestones: must be increasing fractions of training in (0, 1) "
                            f"(got {t.milestones})")
        if not all(0 < b < 1 for b in t.betas):
            problems.append(f"train.betas: each must be in (0, 1) (got {list(t.betas)})")
        problems += _check_recipe_args(t.recipe, t.recipe_args)
        problems += _settings_problems(self.model_dump(), t.recipe_args)
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _check_recipe_args(recipe: str, args: dict[str, Any]) -> list[str]:
    # The recipe registry owns the check; it is looked up here, at validation time, so that importing the config
    # schema imports no training module.
    from gradguard.training.recipes import recipe_names, recipe_settings

    try:
        recipe_settings(recipe, args)
    except ValidationError as e:
        return [_format_error(err, prefix="train.recipe_args") for err in e.errors()]
    except ValueError as e:
        return [f"{'train.recipe_args' if recipe in recipe_names() else 'train.recipe'}: {e}"]
    return []


def _settings_problems(raw: dict[str, Any], recipe_args: Any) -> list[str]:
    """Settings tables checked against the code that will use them (the zoo builder's signature, the
    randomization kind's settings) and the dataset's known training-set size. Works on the plain dict too (raw
    TOML, with defaults filled here), so these problems are reported along with field errors; a check whose
    inputs are themselves invalid is skipped (the field error already says so)."""
    def section(name: str) -> dict[str, Any]:
        value = raw.get(name) if isinstance(raw, dict) else None
        return value if isinstance(value, dict) else {}

    model, data = section("model"), section("data")
    name, args = model.get("name", "smallcnn"), model.get("args", {})
    kind, kind_args = model.get("randomization", "none"), model.get("randomization_args", {})
    dataset, val_size = data.get("dataset", "mnist"), data.get("val_size", 1000)
    problems: list[str] = []
    tables = {"model.args": args, "model.randomization_args": kind_args, "train.recipe_args": recipe_args}
    for key, table in tables.items():
        problems += checks.non_finite_numbers(table, key)
    for key, check in (
        ("model.args", lambda: checks.check_model_args(name, args)),
        ("model.randomization_args", lambda: checks.check_randomization_args(kind, kind_args)),
        ("data.val_size", lambda: checks.check_val_size(val_size, dataset)),
    ):
        try:
            check()
        except ValueError as e:
            problems.append(f"{key}: {e}")
        except (TypeError, KeyError, AttributeError):  # e.g. an unknown model name: its own field error says so
            pass
    return problems


def _early_cross_checks(data: dict[str, Any]) -> list[str]:
    """Cross-field checks on the raw dict, so they are reported together with field errors (pydantic skips its
    after-validators when a field is invalid)."""
    train = data.get("train") if isinstance(data, dict) else None
    if not isinstance(train, dict):
        return _settings_problems(data, {})
    out: list[str] = []
    eps, norm = train.get("eps"), train.get("norm", "linf")
    if isinstance(eps, (int, float)) and not isinstance(eps, bool) and norm == "linf" and eps > 1:
        out.append(f"train.eps: must be <= 1 for norm 'linf' (got {eps:g})")
    recipe, args = train.get("recipe", "standard"), train.get("recipe_args", {})
    if isinstance(recipe, str) and isinstance(args, dict):
        out += _check_recipe_args(recipe, args)
    return out + _settings_problems(data, args)


def _format_error(err: Any, prefix: str = "") -> str:
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.get("loc", ())).lstrip(".")
    key = ".".join(p for p in (prefix, loc) if p)
    msg = str(err.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    elif err.get("type") not in ("value_error", "missing") and "input" in err:
        msg = f"{msg} (got {err['input']!r})"
    return f"{key}: {msg}" if key else msg


def format_validation_error(e: ValidationError) -> str:
    """One line per problem, each starting with the dotted key."""
    return "\n".join(_format_error(err) for err in e.errors())


def parse_config(data: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Validate a plain dict (as read from TOML) into an ExperimentConfig, or raise ConfigError: one line per
    problem, each ``SOURCE: key: what is wrong (got value)``."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as e:
        lines = format_validation_error(e).splitlines()
        lines += [line for line in _early_cross_checks(data) if line not in lines]
        raise ConfigError("\n".join(f"{source}: {line}" for line in lines)) from None


_KEY = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


def _parse_value(text: str) -> Any:
    """A TOML value ("0.1", "true", "[0.3, 0.1]", "'x'"); a bare word that is not TOML is taken as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.path=value`` strings to a nested dict (copied); values are parsed as TOML."""
    out = json.loads(json.dumps(data))
    for item in overrides or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise ConfigError(f"bad override {item!r}: expected key.path=value, e.g. train.lr=0.1")
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"bad override {item!r}: {'.'.join(parts[: i + 1])} is not a table")
            node = nxt
        node[parts[-1]] = _parse_value(value.strip())
    return out


def load_config(path: str | os.PathLike[str], overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a TOML experiment file, apply ``key=value`` overrides, validate."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                          "TOML files must be saved as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path} is not valid TOML: {e}") from None
    return parse_config(apply_overrides(data, overrides), source=str(path))


# --------------------------------------------------------------------------------------------- writing TOML


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_\-]+", k) else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        items = [f"{_toml_key(str(k))} = {_toml_value(x)}" for k, x in v.items() if x is not None]
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_table(d: dict[str, Any], prefix: str, out: list[str]) -> None:
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict) and v is not None}
    tables = {k: v for k, v in d.items() if isinstance(v, dict)}
    if prefix and (scalars or not tables):
        out.append(f"\n[{prefix}]")
    for k, v in scalars.items():
        out.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in tables.items():
        _toml_table(v, f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k), out)


def dump_config(cfg: ExperimentConfig) -> str:
    """The config as TOML text that `load_config` reads back to an equal config (None values are omitted)."""
    out: list[str] = []
    _toml_table(cfg.model_dump(mode="json"), "", out)
    return "\n".join(out).lstrip("\n") + "\n"


def save_config(cfg: ExperimentConfig, path: str | os.PathLike[str]) -> None:
    """Write the config atomically (temporary file, then rename)."""
    atomic_write_text(path, dump_config(cfg))
