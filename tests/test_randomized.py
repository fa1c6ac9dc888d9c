"""Randomized networks: per-input independence, eval-mode randomness, frozen sample models, generators, KL."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradguard.models import (
    KINDS,
    BayesLayer,
    Normalize,
    build_model,
    freeze,
    is_randomized,
    kl_divergence,
    random_layers,
    randomize,
    set_generator,
)
from gradguard.models.random_layers import GaussianNoise, RandomDropout, RandomResizePad
from gradguard.models.weight_noise import PNILayer

ALL_KINDS = list(KINDS)


@pytest.fixture(scope="module")
def mnist_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("smallcnn", "mnist").eval()


@pytest.fixture(scope="module")
def cifar_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("preact-resnet18", "cifar10").eval()


def _x(n: int, c: int, s: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, c, s, s, generator=torch.Generator().manual_seed(seed))



@pytest.mark.parametrize("kind", ALL_KINDS)
def test_each_kind_randomizes_per_input_in_eval_mode(mnist_model: nn.Module, kind: str) -> None:
    model = randomize(mnist_model, kind).eval()
    assert is_randomized(model) and not is_randomized(mnist_model)
    x = _x(1, 1, 28).repeat(3, 1, 1, 1)
    with torch.no_grad():
        y1, y2 = model(x), model(x)
    assert y1.shape == (3, 10) and torch.isfinite(y1).all()
    # copies of one input in one batch get different draws, and two calls differ too
    assert not torch.allclose(y1[0], y1[1], atol=1e-6)
    assert not torch.allclose(y1[1], y1[2], atol=1e-6)
    assert not torch.allclose(y1, y2, atol=1e-6)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_each_kind_on_preact_resnet18_cifar(cifar_model: nn.Module, kind: str) -> None:
    # an untrained BN net in eval mode (running stats 0/1) does not rescale Adv-BNN's sigma = 0.08 noise: the
    # logits reach ~1e5; a small init_s keeps this shape/gradient test in a sane range
    model = randomize(cifar_model, kind, **({"init_s": 0.005} if kind == "bayes" else {})).eval()
    x = _x(1, 3, 32).repeat(2, 1, 1, 1).requires_grad_(True)
    y = model(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    assert not torch.allclose(y[0], y[1], atol=1e-6)
    (grad,) = torch.autograd.grad(F.cross_entropy(y, torch.tensor([3, 3])), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_frozen_model_is_deterministic_and_batch_independent(mnist_model: nn.Module, kind: str) -> None:
    model = randomize(mnist_model, kind)
    frozen = freeze(model, seed=3).eval()
    assert not is_randomized(frozen) and is_randomized(model)
    x = _x(4, 1, 28, seed=2)
    with torch.no_grad():
        a, b = frozen(x), frozen(x)
        alone = torch.cat([frozen(x[i : i + 1]) for i in range(4)])
        again = freeze(model, seed=3).eval()(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, alone, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a, again, rtol=1e-5, atol=1e-5)
    # different seeds: different sample models (at least one of a few seeds differs on some input)
    with torch.no_grad():
        others = [freeze(model, seed=s).eval()(x) for s in (4, 5, 6)]
    assert any(not torch.allclose(a, o, atol=1e-5) for o in others)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_generator_reproducibility_and_global_rng_untouched(mnist_model: nn.Module, kind: str) -> None:
    model = randomize(mnist_model, kind)
    x = _x(1, 1, 28).repeat(3, 1, 1, 1)
    set_generator(model, torch.Generator().manual_seed(11))
    state = torch.get_rng_state()
    with torch.no_grad():
        y1 = model(x)
    assert torch.equal(state, torch.get_rng_state())
    set_generator(model, torch.Generator().manual_seed(11))
    with torch.no_grad():
        y2 = model(x)
        y3 = model(x)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    assert not torch.allclose(y2, y3, atol=1e-6)
    set_generator(model, None)  # back to the global RNG
    torch.manual_seed(5)
    with torch.no_grad():
        z1 = model(x)
    torch.manual_seed(5)
    with torch.no_grad():
        z2 = model(x)
    torch.testing.assert_close(z1, z2, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_randomize_leaves_the_original_untouched(kind: str) -> None:
    torch.manual_seed(0)
    model = build_model("smallcnn", "mnist").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    text = repr(model)
    x = _x(2, 1, 28)
    with torch.no_grad():
        y = model(x)
    randomized = randomize(model, kind)
    with torch.no_grad():
        randomized(x)
    assert repr(model) == text and not random_layers(model)
    assert not hasattr(model, "randomization")
    assert randomized.randomization[-1]["kind"] == kind
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        torch.testing.assert_close(model(x), y, rtol=0, atol=0)


def test_double_backprop_reaches_parameters(mnist_model: nn.Module) -> None:
    """GradDiv differentiates input gradients with respect to the weights."""
    for kind in ALL_KINDS:
        model = randomize(mnist_model, kind, **({"init_s": 0.005} if kind == "bayes" else {}))
        x = _x(2, 1, 28).requires_grad_(True)
        loss = F.cross_entropy(model(x), torch.tensor([1, 2]))
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        g.pow(2).sum().backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and any(gr.abs().sum() > 0 for gr in grads), kind


def test_kl_divergence_positive_with_gradients(mnist_model: nn.Module) -> None:
    assert kl_divergence(mnist_model).shape == () and kl_divergence(mnist_model).item() == 0.0
    model = randomize(mnist_model, "bayes", sigma_0=0.1, init_s=0.05)
    layers = [m for m in model.modules() if isinstance(m, BayesLayer)]
    assert len(layers) == 7  # 4 convs + 3 linear layers
    kl = kl_divergence(model)
    assert kl.shape == () and kl.item() > 0
    kl.backward()
    for layer in layers:
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
        assert layer.weight_log_sigma.grad is not None and layer.weight_log_sigma.grad.abs().sum() > 0


def test_kl_matches_closed_form_and_vanishes_at_the_prior() -> None:
    layer = BayesLayer(nn.Linear(3, 2), sigma_0=0.5, init_s=0.2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.4, -0.1]]))
        layer.bias.copy_(torch.tensor([0.5, -0.5]))
    mu = torch.cat([layer.weight.flatten(), layer.bias])
    s, s0 = 0.2, 0.5
    # KL(N(mu, s^2) || N(0, s0^2)) per element
    expected = (torch.log(torch.tensor(s0 / s)) + (s**2 + mu**2) / (2 * s0**2) - 0.5).sum()
    torch.testing.assert_close(layer.kl(), expected)
    at_prior = BayesLayer(nn.Linear(3, 2), sigma_0=0.3, init_s=0.3)
    with torch.no_grad():
        at_prior.weight.zero_()
        at_prior.bias.zero_()
    assert abs(at_prior.kl().item()) < 1e-5


def test_local_reparameterization_matches_weight_sampling_for_linear() -> None:
    """Per-input LRT draws have the mean and variance of outputs under real weight samples."""
    torch.manual_seed(0)
    base = nn.Linear(4, 3)
    lrt = BayesLayer(base, sigma_0=0.3, init_s=0.3, per_sample=True)
    shared = BayesLayer(base, sigma_0=0.3, init_s=0.3, per_sample=False)
    x = torch.tensor([[1.0, -2.0, 0.5, 0.0]])
    n = 20000
    g = torch.Generator().manual_seed(0)
    set_generator(lrt, g)
    set_generator(shared, torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = lrt(x.repeat(n, 1))
        b = torch.cat([shared(x) for _ in range(2000)])
    expected_mean = base(x)[0].detach()
    expected_var = (x**2).sum() * 0.09 + 0.09  # sum_i x_i^2 s^2 + s_bias^2
    torch.testing.assert_close(a.mean(0), expected_mean, atol=0.03, rtol=0)
    torch.testing.assert_close(a.var(0), expected_var.expand(3), atol=0.0, rtol=0.05)
    torch.testing.assert_close(b.mean(0), expected_mean, atol=0.08, rtol=0)
    torch.testing.assert_close(b.var(0), expected_var.expand(3), atol=0.0, rtol=0.12)


def test_bayes_shared_sample_is_shared_by_the_batch(mnist_model: nn.Module) -> None:
    model = randomize(mnist_model, "bayes", per_sample=False, init_s=0.01).eval()
    x = _x(1, 1, 28).repeat(2, 1, 1, 1)
    with torch.no_grad():
        y1, y2 = model(x), model(x)
    torch.testing.assert_close(y1[0], y1[1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(y1, y2, atol=1e-6)


def test_pni_noise_scale_and_alpha_gradient() -> None:
    torch.manual_seed(0)
    base = nn.Linear(5, 2, bias=False)
    layer = PNILayer(base, alpha=0.5)
    x = torch.ones(1, 5)
    set_generator(layer, torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = layer(x.repeat(20000, 1))
    expected_std = 0.5 * base.weight.std().item() * 5**0.5  # alpha * std(W) * |x|
    torch.testing.assert_close(y.std(0), torch.full((2,), expected_std), rtol=0.05, atol=0)
    layer(x.repeat(4, 1)).pow(2).sum().backward()
    assert layer.alpha.grad is not None and layer.alpha.grad.abs() > 0
    assert layer.weight.grad is not None


def test_noise_kind_stds_and_pixel_units() -> None:
    """init_std is in pixel units even though the first conv sees normalized input; inner convs get inner_std."""
    conv = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    net = nn.Sequential(Normalize([0.5], [0.25]), conv, nn.Conv2d(1, 1, 1))
    model = randomize(net, "noise", init_std=0.2, inner_std=0.05)
    noises = [m for m in model.modules() if isinstance(m, GaussianNoise)]
    assert [n.std for n in noises] == [0.2, 0.05]
    x = torch.full((4000, 1, 2, 2), 0.5)
    set_generator(model, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model[1](model[0](x))  # Normalize then the noisy first conv
    assert abs(out.std().item() - 0.2 / 0.25) < 0.02


def test_resize_pad_geometry() -> None:
    layer = RandomResizePad(ratio=0.25, keep_size=False, mode="nearest")
    x = torch.ones(64, 1, 16, 16)
    set_generator(layer, torch.Generator().manual_seed(0))
    out = layer(x)
    assert out.shape == (64, 1, 20, 20)
    # the image covers r x r pixels of the 20 x 20 canvas, r in 16..20: count the ones
    areas = (out > 0.99).flatten(1).sum(1)
    sides = areas.float().sqrt().round()
    assert set(sides.tolist()) <= {16.0, 17.0, 18.0, 19.0, 20.0} and len(set(sides.tolist())) >= 3
    # positions vary across inputs
    tops = torch.stack([row.nonzero()[0] for row in (out[:, 0] > 0.99).any(2)]).flatten()
    assert len(set(tops.tolist())) >= 2
    kept = RandomResizePad(ratio=0.25)(x)
    assert kept.shape == x.shape


def test_resize_pad_keeps_normalize_first(mnist_model: nn.Module) -> None:
    model = randomize(mnist_model, "resize-pad")
    assert isinstance(model[0], Normalize) and isinstance(model[1], RandomResizePad)
    assert model.arch == "smallcnn"


def test_dropout_kind_replaces_train_dropout_and_drops_at_rate() -> None:
    model = randomize(build_model("smallcnn", "mnist"), "dropout", p=0.3)
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert len([m for m in model.modules() if isinstance(m, RandomDropout)]) == 3
    layer = RandomDropout(0.3).eval()
    x = torch.ones(200, 500)
    y = layer(x)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.01
    torch.testing.assert_close(y[y > 0], torch.full_like(y[y > 0], 1 / 0.7))


def test_bad_kind_and_setting_are_named(mnist_model: nn.Module) -> None:
    with pytest.raises(ValueError, match="unknown randomization 'gauss'"):
        randomize(mnist_model, "gauss")
    with pytest.raises(ValueError, match="no setting.*'sigma'"):
        randomize(mnist_model, "noise", sigma=0.1)


def test_frozen_layers_follow_device_moves_and_dtype(mnist_model: nn.Module) -> None:
    frozen = freeze(randomize(mnist_model, "noise"), seed=0).eval()
    x = _x(2, 1, 28)
    with torch.no_grad():
        a = frozen(x)
        b = frozen.double()(x.double())
    torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4)


def test_plain_modules_and_composition() -> None:
    """Any nn.Module works (no zoo wrapper, no Normalize), and kinds compose."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    rp = randomize(net, "resize-pad")
    assert isinstance(rp[0], RandomResizePad) and rp.net is not net
    both = randomize(randomize(net, "noise", init_std=0.1), "bayes", init_s=0.01)
    assert [r["kind"] for r in both.randomization] == ["noise", "bayes"]
    assert len(random_layers(both)) == 3  # one noise layer + two Bayesian layers
    x = torch.rand(1, 1, 8, 8).repeat(2, 1, 1, 1)
    with torch.no_grad():
        y = both(x)
    assert y.shape == (2, 3) and not torch.allclose(y[0], y[1])
    with pytest.raises(ValueError, match="found no Conv2d"):
        randomize(nn.Sequential(nn.Linear(2, 2)), "noise")
