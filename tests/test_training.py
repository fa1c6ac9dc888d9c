"""The training loop on the offline 8x8 digits set: passes, logs, validation, schedules, recipes, failures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from gradguard.checkpoint import load_checkpoint, load_model
from gradguard.config import load_config, parse_config
from gradguard.runlog import read_metrics
from gradguard.training import NonFiniteLossError, build_recipe, train
from gradguard.training.schedules import lr_factor


def digits_config(**train: object) -> dict:
    """A tiny run: madry-cnn on 8x8 digits, 256 training images, batch 64 (4 batches per epoch)."""
    t = {"recipe": "standard", "epochs": 1, "batch_size": 64, "lr": 0.05, "eps": 0.1, "val_every": 1,
         "val_attack_steps": 3, "val_batch_size": 100, "progress": False, "tensorboard": False, "threads": 1,
         "log_every": 1}
    t.update(train)
    return {"name": "t", "seed": 0, "data": {"dataset": "digits", "val_size": 100, "train_subset": 256},
            "model": {"name": "madry-cnn"}, "train": t}


def run(tmp_path: Path, name: str = "run", **train: object) -> tuple[dict, Path]:
    cfg = parse_config(digits_config(**train))
    return train_fn(cfg, tmp_path / name), tmp_path / name


train_fn = train


# ------------------------------------------------------------------------------------------- schedules


def test_schedules() -> None:
    assert lr_factor("constant", 50, 100) == 1.0
    assert lr_factor("piecewise", 49, 100, milestones=[0.5, 0.75]) == 1.0
    assert lr_factor("piecewise", 50, 100, milestones=[0.5, 0.75]) == pytest.approx(0.1)
    assert lr_factor("piecewise", 80, 100, milestones=[0.5, 0.75]) == pytest.approx(0.01)
    assert lr_factor("cosine", 0, 100) == 1.0 and lr_factor("cosine", 50, 100) == pytest.approx(0.5)
    assert lr_factor("cosine", 100, 100) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor("onecycle", 0, 100) == 0.0 and lr_factor("onecycle", 40, 100) == 1.0
    assert lr_factor("onecycle", 20, 100) == pytest.approx(0.5) and lr_factor("onecycle", 70, 100) == pytest.approx(0.5)
    assert lr_factor("constant", 0, 100, warmup_steps=10) == pytest.approx(0.1)
    assert lr_factor("constant", 9, 100, warmup_steps=10) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor("exp", 0, 10)


# ------------------------------------------------------------------------------------------- the loop


def test_standard_run_writes_everything(tmp_path: Path) -> None:
    summary, d = run(tmp_path, epochs=2, val_every=0.5, schedule="cosine")
    assert (d / "config.toml").exists() and load_config(d / "config.toml").train.schedule == "cosine"
    assert {"last.safetensors", "last.json", "best.safetensors", "best.json"} <= {
        p.name for p in (d / "checkpoints").iterdir()}
    train_recs = read_metrics(d / "metrics.jsonl", "train")
    vals = read_metrics(d / "metrics.jsonl", "val")
    assert len(train_recs) == 8 and [r["step"] for r in train_recs] == list(range(1, 9))
    assert [v["step"] for v in vals] == [2, 4, 6, 8]
    for v in vals:  # the time-to-robustness record
        assert {"kind", "epoch", "step", "wall_s", "fb_passes", "val_clean_acc", "val_robust_acc"} <= set(v)
        assert v["fb_passes"] == v["step"]  # standard training: one forward+backward per batch
        assert 0 <= v["val_robust_acc"] <= v["val_clean_acc"] <= 1
    assert vals[-1]["val_passes"] > 0 and vals[-1]["val_wall_s"] > 0
    # lr follows the cosine schedule per iteration: recorded after step s, set at step s-1
    assert train_recs[0]["lr"] == pytest.approx(0.05) and train_recs[4]["lr"] == pytest.approx(
        0.05 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    # it learns: 8 SGD steps take it well above chance (0.1) and the training loss falls
    assert vals[-1]["val_clean_acc"] >= 0.2 and train_recs[-1]["loss"] < train_recs[0]["loss"]
    # the exported plain network reproduces the final clean validation accuracy
    model = load_model(d)
    from gradguard.data import load

    x, y = load("digits", "train").split(100, 0)[1].tensors()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc == pytest.approx(vals[-1]["val_clean_acc"])
    best = max(vals, key=lambda v: v["val_robust_acc"])
    assert summary["best_robust_acc"] == best["val_robust_acc"] and (d / "model-best.safetensors").exists()
    _, meta = load_checkpoint(d / "checkpoints" / "last.safetensors")
    assert meta["seed"] == 0 and meta["step"] == 8 and "torch" in meta["environment"]
    assert meta["config"]["train"]["schedule"] == "cosine" and "hostname" not in str(meta["environment"])


def test_same_seed_same_weights_other_seed_differs(tmp_path: Path) -> None:
    cfg = digits_config(recipe="pgd_at", recipe_args={"steps": 2})
    cfg["model"]["randomization"] = "noise"  # draws from the (seeded) global RNG during training
    a = train(parse_config(cfg), tmp_path / "a")
    b = train(parse_config(cfg), tmp_path / "b")
    cfg["seed"] = 1
    c = train(parse_config(cfg), tmp_path / "c")
    wa, wb, wc = (load_checkpoint(tmp_path / n / "checkpoints/last.safetensors")[0] for n in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa if k.startswith("model."))
    assert not all(torch.equal(wa[k], wc[k]) for k in wa if k.startswith("model."))
    assert a["final_val"]["val_robust_acc"] == b["final_val"]["val_robust_acc"]
    assert c["step"] == a["step"]


@pytest.mark.parametrize(("recipe", "args", "fb_per_batch", "steps_per_batch"), [
    ("pgd_at", {"steps": 3}, 4, 1),
    ("fast_at", {}, 2, 1),
    ("trades", {"steps": 2}, 4, 1),  # 2 attack steps + clean + adversarial forward (p_clean is a no-grad forward)
    ("free_at", {"m": 3}, 3, 3),
])
def test_passes_are_counted_per_recipe(tmp_path: Path, recipe: str, args: dict, fb_per_batch: int,
                                       steps_per_batch: int) -> None:
    summary, d = run(tmp_path, recipe=recipe, recipe_args=args)
    assert summary["batches_done"] == 4 and summary["step"] == 4 * steps_per_batch
    assert summary["fb_passes"] == pytest.approx(4 * fb_per_batch)
    val = read_metrics(d / "metrics.jsonl", "val")[-1]
    assert val["fb_passes"] == pytest.approx(4 * fb_per_batch)  # validation passes are not in the budget
    assert val["val_passes"] > 0


def test_eps_ramp_up_and_warmup(tmp_path: Path) -> None:
    _, d = run(tmp_path, recipe="pgd_at", recipe_args={"steps": 1}, epochs=2, eps_rampup_epochs=1.0,
               warmup_epochs=0.5, schedule="constant")
    recs = read_metrics(d / "metrics.jsonl", "train")
    eps = [r["eps"] for r in recs]
    assert eps[:5] == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1]) and eps[5:] == pytest.approx([0.1] * 3)
    assert [r["lr"] for r in recs[:3]] == pytest.approx([0.025, 0.05, 0.05])


def test_non_finite_loss_stops_naming_epoch_and_step_and_keeps_checkpoint(tmp_path: Path) -> None:
    cfg = parse_config(digits_config(lr=1e12, momentum=0.0, epochs=3, checkpoint_every=1))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(\w+\) at epoch \d+ step \d+") as e:
        train(cfg, tmp_path / "r")
    tensors, meta = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.safetensors")
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith("model."))
    assert f"step {meta['step']}" in str(e.value)  # the message names the checkpoint that was kept


def test_existing_run_is_not_overwritten(tmp_path: Path) -> None:
    run(tmp_path)
    with pytest.raises(FileExistsError, match="already holds a run"):
        run(tmp_path)


def test_resume_of_a_finished_run_is_a_no_op(tmp_path: Path) -> None:
    summary, d = run(tmp_path)
    again = train(load_config(d / "config.toml"), d, resume=True)
    assert again["step"] == summary["step"] and again["final_val"] == summary["final_val"]


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    _, d = run(tmp_path)
    with pytest.raises(ValueError, match="config differs"):
        train(parse_config(digits_config(lr=0.01)), d, resume=True)


def test_resume_refuses_a_recipe_default_that_changed_since_the_start(tmp_path: Path) -> None:
    """config.toml keeps only the recipe_args given; a default changed in a new release must not slip in."""
    from gradguard.checkpoint import load_checkpoint, save_checkpoint

    _, d = run(tmp_path, epochs=2)
    last = d / "checkpoints" / "last.safetensors"
    tensors, meta = load_checkpoint(last)
    assert meta["recipe"] == {"name": "standard", "label_smoothing": 0.0}
    meta["recipe"]["label_smoothing"] = 0.1  # as if the run had started under another default
    save_checkpoint(last, tensors, meta)
    with pytest.raises(ValueError, match=r"recipe settings \['label_smoothing'\]"):
        train(parse_config(digits_config(epochs=2)), d, resume=True)


def test_free_at_state_round_trips() -> None:
    from gradguard.threat import threat_model
    from gradguard.training import StepContext

    recipe = build_recipe("free_at", m=2)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x, y = torch.rand(5, 1, 8, 8), torch.randint(0, 10, (5,))
    ctx = StepContext(threat=threat_model("linf", 0.1), generator=torch.Generator(), step=0, progress=0.0)
    out = recipe.step(model, x, y, ctx)
    out.loss.backward()
    state = recipe.state_dict()
    assert state["delta"].abs().max() == pytest.approx(0.1)  # one signed step of eps, inside the ball
    other = build_recipe("free_at", m=2)
    other.load_state_dict(state)
    assert torch.equal(other.state_dict()["delta"], state["delta"])
    with pytest.raises(ValueError, match="unknown keys"):
        other.load_state_dict({"nope": torch.zeros(1)})


@pytest.mark.parametrize("spelling", ["craft_mode", "bn_mode"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_crafting_mode_is_a_setting_and_is_restored(mode: str, spelling: str) -> None:
    from gradguard.threat import threat_model
    from gradguard.training import StepContext

    seen = []

    class Spy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = torch.nn.BatchNorm2d(1)
            self.fc = torch.nn.Linear(64, 10)

        def forward(self, x):
            seen.append((self.training, torch.is_grad_enabled() and self.fc.weight.requires_grad))
            return self.fc(self.bn(x).flatten(1))

    model = Spy().train()
    recipe = build_recipe("pgd_at", steps=2, **{spelling: mode})
    ctx = StepContext(threat=threat_model("linf", 0.1), generator=torch.Generator(), step=0, progress=0.0)
    recipe.step(model, torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,)), ctx)
    assert seen[:2] == [(mode == "train", False)] * 2  # attack: chosen mode, parameter gradients off
    assert seen[2] == (True, True) and model.training and model.fc.weight.requires_grad


class _DropoutSpy(torch.nn.Module):
    """A net with dropout that records, per forward, whether its dropout layer was active."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 32)
        self.drop = torch.nn.Dropout(0.5)
        self.fc2 = torch.nn.Linear(32, 10)
        self.dropout_on: list[bool] = []

    def forward(self, x):
        self.dropout_on.append(self.drop.training)
        return self.fc2(self.drop(torch.relu(self.fc1(x.flatten(1)))))


@pytest.mark.parametrize(
    ("recipe_name", "crafting_passes"),
    [("pgd_at", 3), ("fast_at", 1), ("trades", 4), ("sgn", 2)],  # trades: one clean prediction + 3 KL steps
)
def test_every_recipe_crafts_with_dropout_off_by_default(recipe_name: str, crafting_passes: int) -> None:
    """Crafting in eval mode is the default everywhere (EXPERIMENTS.md): the crafting passes run with dropout off,
    the training pass with it on, and the model comes back in train mode."""
    from gradguard.threat import threat_model
    from gradguard.training import StepContext

    args = {"pgd_at": {"steps": 3}, "fast_at": {}, "trades": {"steps": 3}, "sgn": {"refine_steps": 1}}[recipe_name]
    recipe = build_recipe(recipe_name, **args)
    net = _DropoutSpy().train()
    model = recipe.wrap(net)
    ctx = StepContext(threat=threat_model("linf", 0.1), generator=torch.Generator(), step=0, progress=0.0)
    out = recipe.step(model, torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,)), ctx)
    out.loss.backward()
    assert net.dropout_on[:crafting_passes] == [False] * crafting_passes
    assert net.dropout_on[crafting_passes:] and all(net.dropout_on[crafting_passes:])  # training passes: dropout on
    assert net.training and net.drop.training


def test_amp_warns_on_cpu_and_channels_last_trains_the_same_net(tmp_path: Path) -> None:
    from gradguard.checkpoint import load_model

    with pytest.warns(UserWarning, match="GPU only"):
        summary, _ = run(tmp_path, "amp", amp=True)
    assert summary["done"]
    _, plain_dir = run(tmp_path, "plain")
    import warnings

    import gradguard.training.trainer as trainer_mod

    seen: list[bool] = []
    build = trainer_mod.build_network

    def spying_build(cfg):  # records the layout the second conv's weights have in every training forward
        net = build(cfg)
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1]
        convs[0].register_forward_pre_hook(
            lambda m, args: seen.append(m.training and m.weight.is_contiguous(memory_format=torch.channels_last)
                                        and not m.weight.is_contiguous()))
        return net

    trainer_mod.build_network = spying_build
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # channels-last on CPU is a supported setting: no "GPU only" warning
            _, cl_dir = run(tmp_path, "cl", channels_last=True)
    finally:
        trainer_mod.build_network = build
    assert any(seen)  # the training forwards really ran in channels-last layout
    plain, cl = load_model(plain_dir / "model.safetensors"), load_model(cl_dir / "model.safetensors")
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        # Same seed, same batches: only the convolutions' float rounding differs between the layouts.
        torch.testing.assert_close(cl(x), plain(x), rtol=1e-3, atol=1e-4)


def test_cli_train_overrides_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gradguard.cli import main
    from gradguard.config import dump_config

    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(dump_config(parse_config(digits_config())))
    assert main(["train", str(cfg_file), "--set", "train.eps=3", "--out", str(tmp_path / "x")]) == 1
    assert "train.eps: must be <= 1" in capsys.readouterr().err
    assert main(["train", str(cfg_file), "--set", "train.lr=0.02", "--set", "train.recipe=fast_at",
                 "--out", str(tmp_path / "r")]) == 0
    saved = load_config(tmp_path / "r" / "config.toml")
    assert saved.train.lr == 0.02 and saved.train.recipe == "fast_at"
    assert '"val_robust_acc"' in capsys.readouterr().out
    assert main(["train", str(cfg_file), "--out", str(tmp_path / "r")]) == 1  # refuses to overwrite
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "r")]) == 0


def test_validation_at_start_gives_the_curve_origin(tmp_path: Path) -> None:
    _, d = run(tmp_path, val_at_start=True, val_every=0.5)
    vals = read_metrics(d / "metrics.jsonl", "val")
    assert [v["step"] for v in vals] == [0, 2, 4] and vals[0]["fb_passes"] == 0 and vals[0]["wall_s"] == 0


def test_resumed_ranks_keep_distinct_random_streams() -> None:
    """Rank 0 continues its saved streams exactly; another rank (whose streams no checkpoint holds) re-seeds from
    (seed, rank, step): the same on every resume, and not rank 0's, so ranks never share random starts."""
    import random

    import numpy as np

    from gradguard.training.trainer import _restore_rng, _rng_tensors

    cpu = torch.device("cpu")
    py_state, np_state = random.getstate(), np.random.get_state()  # seed_everything reseeds these too
    with torch.random.fork_rng():
        torch.manual_seed(1)
        g = torch.Generator().manual_seed(5)
        saved = _rng_tensors(g, cpu)
        expected = (torch.randn(4, generator=g), torch.randn(4))
        draws: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for rank in (0, 1, 2, 1):
            g2 = torch.Generator()
            _restore_rng(saved, g2, cpu, seed=0, rank=rank, step=10)
            draws.setdefault(rank, []).append((torch.randn(4, generator=g2), torch.randn(4)))
    random.setstate(py_state)
    np.random.set_state(np_state)
    assert all(torch.equal(a, b) for a, b in zip(draws[0][0], expected, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(draws[1][0], draws[1][1], strict=True))
    firsts = [draws[r][0][0] for r in (0, 1, 2)] + [draws[r][0][1] for r in (0, 1, 2)]
    assert len({tuple(t.tolist()) for t in firsts}) == 6


# ------------------------------------------------------------------------------------------- strong validation


def test_validation_attacks_chain_and_every_validated_model_is_kept(tmp_path: Path) -> None:
    """The time-to-robustness log can be written by APGD-CE (+ targeted APGD), and the network behind each point is
    saved, so that the curve can be re-scored offline with a stronger evaluation."""
    from gradguard.checkpoint import read_metadata

    _, ce_dir = run(tmp_path, "ce", epochs=1, val_every=0.5, val_attack="apgd-ce", keep_val_models=True)
    _, both_dir = run(tmp_path, "both", epochs=1, val_every=0.5, val_attack="apgd", val_attack_targets=2)
    ce = [r for r in read_metrics(ce_dir / "metrics.jsonl") if r["kind"] == "val"]
    both = [r for r in read_metrics(both_dir / "metrics.jsonl") if r["kind"] == "val"]
    assert len(ce) == len(both) == 2 and all(r["val_attack_steps"] == 3 for r in ce + both)
    for a, b in zip(ce, both, strict=True):  # validation never changes training: the same networks were scored
        assert a["val_clean_acc"] == b["val_clean_acc"]
        assert b["val_robust_acc"] <= a["val_robust_acc"]  # a chain only removes robust points
    kept = sorted((ce_dir / "models").glob("step-*.safetensors"))
    assert [int(p.stem.split("-")[1]) for p in kept] == sorted(r["step"] for r in ce)
    for record in ce:
        path = ce_dir / "models" / f"step-{record['step']}.safetensors"
        info = read_metadata(path)
        assert info["step"] == record["step"] and info["val_robust_acc"] == record["val_robust_acc"]
        assert load_model(path) is not None
    assert not (both_dir / "models").exists()  # off by default


def test_n_fgsm_trains_beyond_the_ball_unless_clipped() -> None:
    """N-FGSM: noise of radius 2 eps, one step of eps, no projection: points up to 3 eps away, never outside the box;
    with clip the eps ball holds. The step goes up the loss gradient at the noisy point."""
    from gradguard.threat import threat_model
    from gradguard.training import StepContext

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    eps = 0.1
    ctx = StepContext(threat=threat_model("linf", eps), generator=torch.Generator().manual_seed(1), step=0,
                      progress=0.0)
    free = build_recipe("n_fgsm").craft(net, x, y, ctx)
    dist = (free - x).flatten(1).abs().amax(1)
    assert dist.max() > 1.5 * eps and dist.max() <= 3 * eps + 1e-6 and free.min() >= 0 and free.max() <= 1
    clipped = build_recipe("n_fgsm", clip=True).craft(net, x, y, ctx)
    assert (clipped - x).abs().max() <= eps + 1e-6
    no_noise = build_recipe("n_fgsm", noise_ratio=0.0).craft(net, x, y, ctx)  # plain FGSM from x: loss goes up
    loss = torch.nn.functional.cross_entropy
    assert loss(net(no_noise), y) > loss(net(x), y)
def test_max_wall_s_stops_at_a_batch_boundary_with_a_model_and_says_so(tmp_path: Path) -> None:
    summary, d = run(tmp_path, epochs=3, max_wall_s=1e-9)  # the first batch already passes the limit
    assert summary["stopped_early"] is True and summary["batches_done"] == 1 and summary["done"] is True
    assert (d / "model.safetensors").exists() and summary["final_val"] is not None
    full, _ = run(tmp_path, "full", epochs=1)
    assert full["stopped_early"] is False and full["batches_done"] == 4
