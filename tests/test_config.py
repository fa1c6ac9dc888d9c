"""Experiment configs: every bad value is an error naming its key; overrides are TOML values; dump/load round trip."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gradguard.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    dump_config,
    load_config,
    parse_config,
)

ROOT = Path(__file__).resolve().parents[1]
SMALL_CIFAR_STUDY = ["cifar10-small-fast-at", "cifar10-small-pgd-at", "cifar10-small-trades", "cifar10-small-sgn"]
SHIPPED = ["mnist-standard", "mnist-pgd-at", "mnist-trades", "mnist-fast-at", "mnist-free-at", "cifar10-fast-at",
           "cifar10-pgd-at", *SMALL_CIFAR_STUDY, "cifar10-small-graddiv-lam0", "cifar10-small-graddiv-lam1"]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exp.toml"
    p.write_text(text)
    return p


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(data, source="test.toml")
    return str(e.value)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load_and_round_trip(name: str) -> None:
    cfg = load_config(ROOT / "configs" / f"{name}.toml")
    assert parse_config(tomllib.loads(dump_config(cfg))) == cfg


def test_small_cifar_study_matches_budget_network_and_threat() -> None:
    """The 2-core SGN study compares methods at equal cost: same network, eps, wall-time budget and evaluation."""
    cfgs = [load_config(ROOT / "configs" / f"{n}.toml") for n in SMALL_CIFAR_STUDY]
    assert {c.train.recipe for c in cfgs} == {"fast_at", "pgd_at", "trades", "sgn"}
    for c in cfgs:
        assert (c.model.name, c.train.eps, c.train.max_wall_s, c.train.threads) == ("cnn-bn", 8 / 255, 2700, 1)
        assert (c.eval.suite, c.eval.n, c.eval.quick) == ("standard", 1000, False)


def test_defaults_are_valid_and_complete() -> None:
    cfg = ExperimentConfig()
    assert cfg.train.recipe == "standard" and cfg.eval.m == 1 and cfg.data.val_size == 1000


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"trian": {}}, "trian: unknown key"),
        ({"train": {"lerning_rate": 0.1}}, "train.lerning_rate: unknown key"),
        ({"model": {"nmae": "x"}}, "model.nmae: unknown key"),
        ({"train": {"recipe": "pgd_at", "recipe_args": {"stpes": 3}}}, "train.recipe_args.stpes: unknown key"),
        ({"eval": {"quick": "yes please"}}, "eval.quick"),
        ({"train": {"epochs": "ten"}}, "train.epochs"),
        ({"train": {"batch_size": 12.5}}, "train.batch_size"),
        ({"train": {"optimizer": "lbfgs"}}, "train.optimizer"),
        ({"train": {"schedule": "exp"}}, "train.schedule"),
        ({"train": {"eps": -0.1}}, "train.eps"),
        ({"train": {"eps": 8.0}}, "train.eps: must be <= 1 for norm 'linf' (got 8)"),
        ({"train": {"val_eps": 2.0}}, "train.val_eps: must be <= 1"),
        ({"train": {"val_attack_steps": 0}}, "train.val_attack_steps"),
        ({"train": {"recipe": "pgd_at", "recipe_args": {"steps": 0}}}, "train.recipe_args.steps"),
        ({"train": {"recipe": "trades", "recipe_args": {"beta": -1}}}, "train.recipe_args.beta"),
        ({"train": {"recipe": "free_at", "recipe_args": {"m": 0}}}, "train.recipe_args.m"),
        ({"train": {"recipe": "nope"}}, "train.recipe: unknown recipe 'nope'"),
        ({"train": {"lr": 0}}, "train.lr"),
        ({"train": {"momentum": 1.0}}, "train.momentum"),
        ({"train": {"milestones": [0.75, 0.5]}}, "train.milestones"),
        ({"eval": {"eps": [0.3, 1.5]}}, "eval.eps[1]: must be <= 1"),
        ({"eval": {"eps": [-0.1]}}, "eval.eps[0]: must be > 0"),
        ({"eval": {"m": 0}}, "eval.m"),
        ({"data": {"val_size": -1}}, "data.val_size"),
        ({"seed": -3}, "seed"),
    ],
)
def test_every_bad_value_names_its_key(data: dict, key: str) -> None:
    msg = _error(data)
    assert "test.toml" in msg
    assert key in msg, msg


def test_all_problems_reported_together() -> None:
    msg = _error({"train": {"foo": 1, "eps": 2.0, "recipe": "pgd_at", "recipe_args": {"steps": 0}}})
    for key in ("train.foo: unknown key", "train.eps: must be <= 1", "train.recipe_args.steps"):
        assert key in msg, msg


def test_l2_eps_may_exceed_one() -> None:
    assert parse_config({"train": {"norm": "l2", "eps": 1.5}}).train.eps == 1.5


def test_overrides_are_toml_values(tmp_path: Path) -> None:
    path = _write(tmp_path, 'name = "x"\n[train]\nrecipe = "pgd_at"\n')
    cfg = load_config(path, ["train.lr=0.05", "train.milestones=[0.3, 0.6]", "train.nesterov=true",
                             "model.name=madry-cnn", "train.recipe_args.steps=3", 'name="quoted name"',
                             "model.randomization_args.init_std=0.1"])
    assert cfg.train.lr == 0.05 and cfg.train.milestones == [0.3, 0.6] and cfg.train.nesterov is True
    assert cfg.model.name == "madry-cnn" and cfg.train.recipe_args == {"steps": 3} and cfg.name == "quoted name"
    assert cfg.model.randomization_args == {"init_std": 0.1}


def test_bad_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, "[train]\n")
    with pytest.raises(ConfigError, match="train.lrr: unknown key"):
        load_config(path, ["train.lrr=0.1"])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(path, ["train.lr"])
    with pytest.raises(ConfigError, match="train.eps"):
        load_config(path, ["train.eps=[1, 2]"])
    with pytest.raises(ConfigError, match="is not a table"):
        apply_overrides({"train": {"lr": 0.1}}, ["train.lr.x=1"])


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = _write(tmp_path, "[train\nlr = 0.1\n")
    with pytest.raises(ConfigError, match="exp.toml is not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config .*missing.toml"):
        load_config(tmp_path / "missing.toml")


def test_dump_round_trips_nested_and_special_values() -> None:
    cfg = parse_config({"name": 'a "quoted" name', "model": {"randomization": "noise",
                                                                "randomization_args": {"init_std": 0.2}},
                        "train": {"recipe": "pgd_at", "recipe_args": {"steps": 3, "alpha": 0.01},
                                  "eps": 0.03137254901960784, "betas": [0.5, 0.9]},
                        "eval": {"eps": [0.1, 0.3], "norm": "linf"}})
    text = dump_config(cfg)
    assert parse_config(tomllib.loads(text)) == cfg
    assert "[train.recipe_args]" in text


def test_recipe_record_fills_defaults() -> None:
    """The record a checkpoint keeps (and resume compares) has every setting, not only the recipe_args given."""
    from gradguard.training import build_recipe

    cfg = parse_config({"train": {"recipe": "trades", "recipe_args": {"beta": 1.0}}})
    settings = build_recipe(cfg.train.recipe, **cfg.train.recipe_args).describe()
    assert settings["name"] == "trades" and settings["beta"] == 1.0
    assert settings["steps"] == 10 and settings["craft_mode"] == "eval"
