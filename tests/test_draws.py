"""Draws that are what they claim: a model drawing its noise once per forward call gets k forward calls for k
draws (EOT gradients, m-draw predictions, GradDiv draws), a per-input model keeps its one batched pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from _evaluation_toys import Noisy, quadrant_data
from gradguard.attacks import PGD
from gradguard.draws import draw_mode, forget_draw_mode, forward_replicas
from gradguard.evaluation import evaluate, predict
from gradguard.graddiv import draw_gradients, mean_resultant_length, unit_directions
from gradguard.gradients import forward_scores, input_gradient
from gradguard.losses import ce
from gradguard.models import build_model, randomize


def _net() -> nn.Module:
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 5))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net


class Counting(nn.Module):
    """`net` after input noise drawn per input (`shared=False`) or once per call, shared by the batch (`shared`);
    counts its forward calls and rows and records every noise it drew."""

    def __init__(self, shared: bool, sigma: float = 0.5, seed: int = 3) -> None:
        super().__init__()
        self.net, self.shared, self.sigma = _net(), shared, sigma
        self.generator = torch.Generator().manual_seed(seed)
        self.rows: list[int] = []
        self.noise: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, *x.shape[1:]) if self.shared else x.shape
        noise = self.sigma * torch.randn(shape, generator=self.generator)
        self.rows.append(x.shape[0])
        self.noise.append(noise)
        return self.net(x + noise)


def _data(n: int = 6) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 5, (n,), generator=g)


def test_draw_mode_tells_per_sample_per_call_and_deterministic_apart_once_per_model() -> None:
    x, _ = _data()
    shared, per_sample = Counting(shared=True), Counting(shared=False)
    assert draw_mode(shared, x) == "per-call" and draw_mode(per_sample, x) == "per-sample"
    assert draw_mode(_net(), x) == "deterministic"
    calls = len(shared.rows)
    state = shared.generator.get_state()
    assert draw_mode(shared, x) == "per-call" and len(shared.rows) == calls  # cached: no second probe
    assert torch.equal(shared.generator.get_state(), state)
    forget_draw_mode(shared)
    before = shared.generator.get_state()
    draw_mode(shared, x)
    assert len(shared.rows) > calls and torch.equal(shared.generator.get_state(), before)  # probe replays nothing
    lenet = build_model("lenet5", "mnist")
    assert draw_mode(randomize(lenet, "pni", per_sample=False), torch.rand(1, 1, 28, 28)) == "per-call"
    assert draw_mode(randomize(lenet, "pni"), torch.rand(1, 1, 28, 28)) == "per-sample"


class Coin(nn.Module):
    """Low-entropy noise: class 1 with probability 0.7, drawn per input or once per call."""

    def __init__(self, shared: bool, seed: int) -> None:
        super().__init__()
        self.shared, self.generator = shared, torch.Generator().manual_seed(seed)

    def forward(self, x: Tensor) -> Tensor:
        b = (torch.rand(1 if self.shared else x.shape[0], generator=self.generator) < 0.7).float()
        return torch.stack([torch.zeros_like(b), 20.0 * b - 10.0], 1).expand(x.shape[0], 2)


@pytest.mark.parametrize("seed", range(12))
def test_probe_is_not_fooled_by_draws_that_agree_by_chance(seed: int) -> None:
    x = torch.zeros(3, 4)
    assert draw_mode(Coin(shared=False, seed=seed), x) == "per-sample"
    assert draw_mode(Coin(shared=True, seed=seed), x) == "per-call"  # never "deterministic"


def test_eot_gradient_of_a_shared_draw_model_averages_k_distinct_draws() -> None:
    k = 6
    model, (x, y) = Counting(shared=True), _data()
    draw_mode(model, x)
    model.rows.clear(), model.noise.clear()
    grad, loss = input_gradient(model, x, y, "ce", eot=k)
    assert model.rows == [x.shape[0]] * k  # k forward calls of the batch, one draw each
    assert len({float(n.sum()) for n in model.noise}) == k  # k distinct draws
    singles = []
    for noise in model.noise:  # replay each recorded draw by hand
        xi = x.clone().requires_grad_(True)
        singles.append(torch.autograd.grad(ce(model.net(xi + noise), y).sum(), xi)[0])
    torch.testing.assert_close(grad, torch.stack(singles).mean(0), rtol=1e-5, atol=1e-6)
    assert (grad - singles[0]).abs().max() > 1e-3  # a shared single draw would have given singles[0]
    scores, loss2 = forward_scores(model, x, eot=k, y=y, loss_fn="ce")
    assert model.rows[-k:] == [x.shape[0]] * k and scores.shape == (x.shape[0], 5) and loss2 is not None


def test_per_sample_model_still_takes_k_draws_in_one_batched_pass() -> None:
    k = 5
    model, (x, y) = Counting(shared=False), _data()
    draw_mode(model, x)
    model.rows.clear()
    input_gradient(model, x, y, "ce", eot=k)
    forward_scores(model, x, eot=k)
    draw_gradients(model, x, y, k)
    predict(model, x, m=k, randomized=True)
    assert model.rows == [x.shape[0] * k] * 4


def test_graddiv_draws_of_a_shared_draw_model_are_distinct() -> None:
    model, (x, y) = Counting(shared=True), _data()
    g, logits, _ = draw_gradients(model, x, y, 8)
    r = mean_resultant_length(unit_directions(g))
    assert (r < 0.999).all(), r  # one shared draw would give R = 1 exactly
    assert not torch.allclose(logits[:, 0], logits[:, 1])
    # and row j of the replicas went to call j: the gradient of draw j is that of a single pass with noise j
    xi = x.clone().requires_grad_(True)
    (g3,) = torch.autograd.grad(ce(model.net(xi + model.noise[-8 + 3]), y).sum(), xi)
    torch.testing.assert_close(g[:, 3], g3, rtol=1e-5, atol=1e-6)


def test_forward_replicas_keeps_the_graph_to_each_replica() -> None:
    model, (x, _) = Counting(shared=True), _data(3)
    x_rep = x.repeat_interleave(4, 0).requires_grad_(True)
    out = forward_replicas(model, x_rep, 4)
    assert out.shape == (12, 5)
    (g,) = torch.autograd.grad(out[5].sum(), x_rep)
    assert g.flatten(1).abs().sum(1).nonzero().flatten().tolist() == [5]  # row 5 depends on replica 5 only


def test_m_draw_prediction_of_a_shared_draw_model_averages_m_calls() -> None:
    model, (x, _) = Counting(shared=True), _data()
    draw_mode(model, x)
    model.noise.clear()
    probs = predict(model, x, m=10, randomized=True)
    assert len(model.noise) == 10
    with torch.no_grad():
        ref = torch.stack([torch.softmax(model.net(x + n), 1) for n in model.noise]).mean(0)
    torch.testing.assert_close(probs, ref, rtol=1e-5, atol=1e-6)
    single = torch.softmax(model.net(x + model.noise[0]), 1).detach()
    assert (probs - single).abs().max() > 1e-3


class SharedNoisy(Noisy):
    """The evaluation toy with its noise drawn once per call, shared by the batch."""

    def features(self, x: Tensor) -> Tensor:
        return x + self.sigma * torch.randn((1, *x.shape[1:]), generator=self.gen)


def test_randomness_flag_says_how_the_draws_were_taken() -> None:
    x, y = quadrant_data(8)
    res = evaluate(SharedNoisy(sigma=0.05), x, y, {"pgd": lambda eps: PGD(eps=eps, steps=3, eot=4)}, eps=[0.1],
                   m=4, run_checks=False)
    flag = {f.name: f for f in res.flags}["randomness_without_eot"]
    assert res.randomized and not flag.triggered and flag.values["draws"] == "per-call"
    assert "own forward call" in flag.message


def test_kl_term_scale_follows_the_training_subset(tmp_path: Path) -> None:
    from gradguard.config import parse_config
    from gradguard.runlog import read_metrics
    from gradguard.training import train

    def first_kl(subset: int) -> float:
        cfg = {"name": "t", "seed": 0, "data": {"dataset": "digits", "val_size": 100, "train_subset": subset},
               "model": {"name": "madry-cnn", "randomization": "bayes"},
               "train": {"recipe": "adv_bnn", "recipe_args": {"adversarial": False}, "epochs": 1, "batch_size": 64,
                         "lr": 0.01, "val_every": 1, "val_attack_steps": 1, "progress": False, "tensorboard": False,
                         "threads": 1, "log_every": 1}}
        train(parse_config(cfg), tmp_path / str(subset))
        return next(r["kl_term"] for r in read_metrics(tmp_path / str(subset) / "metrics.jsonl", "train"))

    assert first_kl(128) / first_kl(256) == pytest.approx(2.0, rel=1e-4)  # same init, KL / N_train
