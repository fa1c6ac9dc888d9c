"""The two SGN readings as settings of the sgn recipe: a PGD start (SGN modules inside ordinary adversarial
training) and the input response active at inference (a purifier BPDA can bypass, saved and reloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradguard.attacks import BPDA
from gradguard.attacks.base import Attack
from gradguard.checkpoint import load_model, read_metadata, save_model
from gradguard.config import load_config, parse_config
from gradguard.models import build_model
from gradguard.models.sgn import LearnedResponse, SelfGradientNetwork, SignResponse
from gradguard.models.sgn_active import ActiveSelfGradientNetwork, SelfGradientPurifier
from gradguard.runlog import read_metrics
from gradguard.threat import threat_model
from gradguard.training import train
from gradguard.training.craft import craft_in_mode
from gradguard.training.recipe import StepContext
from gradguard.training.recipes import build_recipe

ROOT = Path(__file__).resolve().parents[1]


def tiny_cnn(seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net


def batch(n: int = 16, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def ctx(eps: float = 0.3, seed: int = 0) -> StepContext:
    return StepContext(threat=threat_model("linf", eps), generator=torch.Generator().manual_seed(seed), step=0,
                       progress=0.0)


class Spy:
    """Records the input of every call to one SelfGradientNetwork method."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
        self.inputs: list[Tensor] = []
        original = getattr(SelfGradientNetwork, method)

        def spy(model, x, *args, **kw):  # type: ignore[no-untyped-def]
            self.inputs.append(x.detach().clone())
            return original(model, x, *args, **kw)

        monkeypatch.setattr(SelfGradientNetwork, method, spy)


# ------------------------------------------------------------------------------------------------ A: pgd start


def test_pgd_start_is_the_point_pgd_at_crafts_with_the_same_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    taps, perturbed = Spy(monkeypatch, "tap_forward"), Spy(monkeypatch, "perturbed_forward")
    recipe = build_recipe("sgn", taps=["1", "3"], start="pgd", start_steps=3, refine_steps=0)
    model = recipe.wrap(tiny_cnn())
    x, y = batch()
    recipe.step(model, x, y, ctx(seed=7))
    expected = craft_in_mode(tiny_cnn(), x, y, threat_model("linf", 0.3), craft_mode="eval", steps=3,
                             alpha=2.5 * 0.3 / 3, random_start=True, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(taps.inputs[0], expected, rtol=0, atol=0)
    assert (expected - x).abs().max() > 0.1  # a real PGD point, not the clean batch
    # hidden taps only: the perturbed flow starts where the taps recorded it
    torch.testing.assert_close(perturbed.inputs[0], expected, rtol=0, atol=0)


def test_start_alpha_and_steps_reach_the_crafting(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}

    def fake(model, x, y, threat, **kw):  # type: ignore[no-untyped-def]
        seen.update(kw)
        return x

    monkeypatch.setattr("gradguard.training.recipes.sgn.craft_in_mode", fake)
    recipe = build_recipe("sgn", start="pgd", start_steps=4, start_alpha=0.05, craft_mode="train")
    recipe.step(recipe.wrap(tiny_cnn()), *batch(), ctx())
    assert seen["steps"] == 4 and seen["alpha"] == 0.05 and seen["random_start"] and seen["craft_mode"] == "train"


def test_random_start_is_the_old_spelling_of_start() -> None:
    assert build_recipe("sgn", random_start=True).config.start == "random"
    assert build_recipe("sgn", random_start=False).config.start == "clean"
    assert build_recipe("sgn", random_start=True, start="random").config.start == "random"
    with pytest.raises(ValueError, match="contradicts start"):
        build_recipe("sgn", random_start=True, start="pgd")
    assert "random_start" not in build_recipe("sgn").describe()
    cfg = load_config(ROOT / "configs" / "mnist-sgn.toml")  # the main job loads unchanged
    assert cfg.train.recipe == "sgn" and build_recipe("sgn", **cfg.train.recipe_args).config.start == "clean"


def _digits(**train_args: object) -> dict:
    t = {"recipe": "sgn", "epochs": 1, "batch_size": 64, "lr": 0.05, "eps": 0.1, "val_every": 1,
         "val_attack_steps": 2, "val_batch_size": 100, "progress": False, "tensorboard": False, "threads": 1,
         "log_every": 1, "recipe_args": train_args}
    return {"name": "t", "seed": 0, "data": {"dataset": "digits", "val_size": 50, "train_subset": 256},
            "model": {"name": "strided-cnn"}, "train": t}


@pytest.mark.parametrize(("args", "fb_per_batch"), [
    ({"taps": ["net.features.3"], "start": "pgd", "start_steps": 3, "refine_steps": 0}, 5),  # 3 PGD + taps + flow
    ({"taps": ["input"], "start": "pgd", "start_steps": 2, "refine_steps": 1}, 5),  # 2 PGD + taps + refine + flow
    ({"taps": ["input"], "refine_steps": 1, "active_inference": True}, 3),  # exported network != counted one
])
def test_trainer_counts_every_pgd_step(tmp_path: Path, args: dict, fb_per_batch: int) -> None:
    summary = train(parse_config(_digits(**args)), tmp_path / "run")
    assert summary["batches_done"] == 4
    assert summary["fb_passes"] == pytest.approx(4 * fb_per_batch)
    val = read_metrics(tmp_path / "run" / "metrics.jsonl", "val")[-1]
    assert val["fb_passes"] == pytest.approx(4 * fb_per_batch)


def test_a_run_checkpointed_before_start_existed_still_resumes(tmp_path: Path) -> None:
    """Its checkpoint's recipe record says random_start and lacks the settings added with start."""
    from gradguard.checkpoint import load_checkpoint, save_checkpoint

    d = tmp_path / "run"
    summary = train(parse_config(_digits(taps=["input"], refine_steps=0, random_start=True)), d)
    last = d / "checkpoints" / "last.safetensors"
    tensors, meta = load_checkpoint(last)
    for key in ("start", "start_steps", "start_alpha", "active_inference", "purify_scale"):
        del meta["recipe"][key]
    meta["recipe"]["random_start"] = True  # as the recipe described itself before
    save_checkpoint(last, tensors, meta)
    assert train(load_config(d / "config.toml"), d, resume=True)["step"] == summary["step"]
    meta["recipe"]["random_start"] = False  # a record that differs in substance is still refused
    save_checkpoint(last, tensors, meta)
    with pytest.raises(ValueError, match=r"recipe settings \['start'\]"):
        train(load_config(d / "config.toml"), d, resume=True)

# ------------------------------------------------------------------------------------------- B: active inference


class MeanClassifier(nn.Module):
    """Two classes by mean brightness: class 0 above 0.5, class 1 below (its input gradient is known)."""

    def forward(self, x: Tensor) -> Tensor:
        s = 20 * (x.flatten(1).mean(1) - 0.5)
        return torch.stack([s, -s], 1)


def constant_response(direction: float) -> LearnedResponse:
    """A learned response whose last bias saturates tanh: u = sign(direction) everywhere."""
    r = LearnedResponse(hidden=2, layers=2)
    with torch.no_grad():
        r.convs[-1].bias.fill_(100.0 * direction)
    return r


def test_purifier_moves_against_the_response_and_can_change_the_prediction() -> None:
    clf = MeanClassifier()
    # u = -1 everywhere: the network moves its input up by eps, so a dim image (class 1) becomes class 0
    active = ActiveSelfGradientNetwork(clf, SelfGradientPurifier(constant_response(-1.0), clf, eps=0.3))
    x = torch.full((4, 1, 4, 4), 0.35)
    assert (clf(x).argmax(1) == 1).all() and (active(x).argmax(1) == 0).all()
    torch.testing.assert_close(active.purifier(x), torch.full_like(x, 0.65))
    # with the sign response (the loss's ascent at its own label) it moves away from the boundary instead
    sign = ActiveSelfGradientNetwork(clf, SelfGradientPurifier(SignResponse(), clf, eps=0.1))
    torch.testing.assert_close(sign.purifier(x), torch.full_like(x, 0.25))
    with torch.no_grad():  # predictions under no_grad still purify
        torch.testing.assert_close(sign.purifier(x), torch.full_like(x, 0.25))


def test_white_box_gradient_through_the_purifier_is_the_true_one() -> None:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    response = LearnedResponse(hidden=4, layers=2).double()
    with torch.no_grad():
        response.convs[-1].weight.normal_(0, 0.3)
    active = ActiveSelfGradientNetwork(backbone, SelfGradientPurifier(response, backbone, eps=0.05, scale=0.5))
    x = (0.3 + 0.4 * torch.rand(2, 1, 4, 4, dtype=torch.float64)).requires_grad_(True)  # box clamp inactive
    assert torch.autograd.gradcheck(lambda z: active(z), (x,), eps=1e-6, atol=1e-5)


class GradientRecorder(Attack):
    """Takes one gradient of the CE through the model and leaves x unchanged."""

    def __init__(self, eps: float) -> None:
        super().__init__(eps=eps)
        self.grads: list[Tensor] = []

    def _perturb(self, model, x, y, target):  # type: ignore[no-untyped-def]
        z = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(z), y), [z])
        self.grads.append(g)
        return x.detach()


def test_bpda_bypasses_the_purifier_where_its_gradient_vanishes() -> None:
    clf = MeanClassifier()
    # u = +1: the purifier moves dim inputs down by eps and the box clamps them at 0: a flat, masked gradient
    active = ActiveSelfGradientNetwork(clf, SelfGradientPurifier(constant_response(1.0), clf, eps=0.3))
    x, y = torch.full((2, 1, 4, 4), 0.2), torch.tensor([1, 1])
    direct, bypass = GradientRecorder(0.3), GradientRecorder(0.3)
    direct(active, x, y)
    BPDA(attack=bypass, modules=SelfGradientPurifier)(active, x, y)
    assert direct.grads[0].abs().max() == 0
    z = torch.zeros_like(x).requires_grad_(True)
    (expected,) = torch.autograd.grad(F.cross_entropy(clf(z), y), [z])  # the backbone's gradient at x' = 0
    torch.testing.assert_close(bypass.grads[0], expected)
    assert isinstance(active.purifier, SelfGradientPurifier)  # put back after the attack


def _trained_active(eps: float = 0.3) -> tuple[nn.Module, object]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        backbone = build_model("strided-cnn", "digits")
    recipe = build_recipe("sgn", active_inference=True, purify_scale=0.5)
    wrapped = recipe.wrap(backbone)
    opt = torch.optim.SGD(wrapped.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)
    for _ in range(2):
        out = recipe.step(wrapped, x, y, StepContext(threat_model("linf", eps), g, 0, 0.0))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return recipe.unwrap(wrapped), x


def test_active_network_saves_and_reloads_as_the_active_network(tmp_path: Path) -> None:
    active, x = _trained_active()
    assert isinstance(active, ActiveSelfGradientNetwork) and active.purifier.eps == 0.3
    save_model(active, tmp_path / "model.safetensors", {"model": "strided-cnn", "dataset": "digits"})
    meta = read_metadata(tmp_path / "model.safetensors")
    assert meta["inference"]["kind"] == "self-gradient-purifier" and meta["inference"]["scale"] == 0.5
    loaded = load_model(tmp_path / "model.safetensors")
    assert isinstance(loaded, ActiveSelfGradientNetwork) and loaded.purifier.eps == 0.3
    active.eval()
    torch.testing.assert_close(loaded(x), active(x), rtol=0, atol=0)
    with torch.no_grad():
        assert not torch.allclose(loaded(x), loaded.backbone(x))  # the purifier is really on


def test_resuming_a_finished_active_run_exports_the_same_purifier(tmp_path: Path) -> None:
    """The purifier's eps comes from the last step; a resume that takes no step must not export eps 0."""
    train(parse_config(_digits(taps=["input"], refine_steps=0, active_inference=True)), tmp_path / "run")
    first = read_metadata(tmp_path / "run" / "model.safetensors")["inference"]
    assert first["eps"] == 0.1
    train(load_config(tmp_path / "run" / "config.toml"), tmp_path / "run", resume=True)
    assert read_metadata(tmp_path / "run" / "model.safetensors")["inference"] == first

def test_active_inference_needs_the_input_tap() -> None:
    with pytest.raises(ValueError, match="taps must include 'input'"):
        build_recipe("sgn", taps=["1"], active_inference=True)


def test_evaluation_adds_bypass_attacks_and_states_the_verdict() -> None:
    from gradguard.evaluation.bypass import evaluate_with_bypass

    active, _ = _trained_active()
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(12, 1, 8, 8, generator=g), torch.randint(0, 10, (12,), generator=g)
    y[:] = active.eval()(x).argmax(1)  # every point clean-correct, so every attack runs
    result = evaluate_with_bypass(active, x, y, "apgd", 0.3, quick=True, run_checks=False, threads=1)
    assert list(result.attacks) == ["apgd-ce", "apgd-t", "bpda-apgd-ce", "transfer-apgd-ce", "square"]
    assert result.suite == "apgd+bypass" and result.meta["quick"]
    flag = next(f for f in result.flags if f.name == "purifier_bypass")
    after = sum(int((r.success & r.attacked).sum()) for n, r in result.attacks.items()
                if n in ("bpda-apgd-ce", "transfer-apgd-ce", "square"))
    assert sum(v[0] for v in flag.values["n_extra"].values()) == after
    assert flag.triggered == (after / 12 > 0.002)
    with pytest.raises(ValueError, match="no self-gradient purifier"):
        evaluate_with_bypass(active.backbone, x, y, "apgd", 0.3, quick=True)


def test_the_bypass_evaluation_leaves_a_train_mode_network_untouched() -> None:
    from gradguard.evaluation.bypass import evaluate_with_bypass

    backbone = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 8 * 8, 10))
    active = ActiveSelfGradientNetwork(backbone, SelfGradientPurifier(SignResponse(), backbone, eps=0.1))
    x, y = batch(4)
    before = backbone[1].running_mean.clone()
    evaluate_with_bypass(active, x, y, "apgd", 0.1, quick=True, run_checks=False, threads=1)
    torch.testing.assert_close(backbone[1].running_mean, before, rtol=0, atol=0)
    assert active.training

def test_gradguard_run_scores_an_active_network_with_the_bypass_attacks(tmp_path: Path) -> None:
    from gradguard.evaluation import EvalResult
    from gradguard.runner import run_experiment

    cfg = _digits(taps=["input"], refine_steps=1, active_inference=True)
    cfg["data"]["test_subset"] = 20
    cfg["eval"] = {"suite": "apgd", "eps": [0.1], "n": 20, "quick": True, "threads": 1}
    out = run_experiment(parse_config(cfg), run_dir=tmp_path / "run", command="test")
    assert isinstance(load_model(out / "model.safetensors"), ActiveSelfGradientNetwork)
    result = EvalResult.load(out / "evaluation.json")
    assert result.suite == "apgd+bypass" and {"bpda-apgd-ce", "transfer-apgd-ce"} <= set(result.attacks)
    assert any(f.name == "purifier_bypass" for f in result.flags)
    assert json.loads((out / "results.json").read_text())["training"]["fb_passes"] == pytest.approx(4 * 3)


def test_results_record_names_the_purifier() -> None:
    """results.json's model entry carries the export's inference record, so reports can say the input is moved."""
    from gradguard.runner import _inference

    backbone = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    active = ActiveSelfGradientNetwork(backbone, SelfGradientPurifier(SignResponse(), backbone, eps=0.1, scale=0.5))
    record = _inference(active)["inference"]
    assert record["eps"] == 0.1 and record["scale"] == 0.5 and record["norm"] == "linf"
    assert _inference(backbone) == {}
