"""GradDiv on real randomized zoo models: batched draws, frozen sample models, double backprop, the recipes, the
statistics and the transfer matrix (small digits-sized models, CPU, seeded)."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from gradguard.graddiv import (
    draw_gradients,
    graddiv_penalty,
    gradient_statistics,
    mean_resultant_length,
    transfer_matrix,
    unit_directions,
)
from gradguard.models import build_model, freeze, kl_divergence, randomize, set_generator
from gradguard.threat import threat_model
from gradguard.training.recipe import StepContext
from gradguard.training.recipes import build_recipe


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target)


def _noisy(seed: int = 0, kind: str = "noise") -> torch.nn.Module:
    torch.manual_seed(seed)  # test-only: parameter init of the zoo model
    model = randomize(build_model("madry-cnn", "digits"), kind)
    return set_generator(model, torch.Generator().manual_seed(seed))


def _ctx(step: int = 0, progress: float = 0.0, eps: float = 0.3, n_train: int | None = None) -> StepContext:
    return StepContext(threat_model("linf", eps), torch.Generator().manual_seed(step), step, progress, n_train)


def test_draws_are_independent_per_input_and_match_single_draws(digits) -> None:
    x, y = digits[0][:3], digits[1][:3]
    model = _noisy().eval()
    g, logits, loss = draw_gradients(model, x, y, 5)
    assert g.shape == (3, 5, 1, 8, 8) and logits.shape == (3, 5, 10) and loss.shape == (3, 5)
    flat = g.flatten(2)
    for b in range(3):  # every pair of draws of the same input differs: independent noise per replica
        for i in range(5):
            for j in range(i + 1, 5):
                assert not torch.allclose(flat[b, i], flat[b, j])
    assert (mean_resultant_length(unit_directions(g)) < 0.999).all()
    # Replaying the generator, draw i of input b is exactly the gradient of a single pass on that replica.
    set_generator(model, torch.Generator().manual_seed(7))
    g1, _, _ = draw_gradients(model, x, y, 5)
    set_generator(model, torch.Generator().manual_seed(7))
    xr = x.repeat_interleave(5, 0).requires_grad_(True)
    torch.nn.functional.cross_entropy(model(xr), y.repeat_interleave(5, 0), reduction="sum").backward()
    torch.testing.assert_close(g1, xr.grad.view_as(g1))


def test_frozen_model_is_deterministic_and_its_draws_coincide(digits) -> None:
    x, y = digits[0][:4], digits[1][:4]
    model = _noisy().eval()
    a, b = freeze(model, 3), freeze(model, 3)
    with torch.no_grad():
        torch.testing.assert_close(a(x), a(x))
        torch.testing.assert_close(a(x), b(x))
        torch.testing.assert_close(a(x)[1:2], a(x[1:2]))  # independent of the batch it is in
        assert not torch.allclose(a(x), freeze(model, 4)(x))
    g, _, _ = draw_gradients(a, x, y, 4)
    torch.testing.assert_close(mean_resultant_length(unit_directions(g)), torch.ones(4), atol=1e-5, rtol=0)
    stats = gradient_statistics(a, x, y, n_draws=4, ks=(1, 3), n_fresh=2)
    assert stats.mean_resultant_length == pytest.approx(1.0, abs=1e-5)
    assert all(v == pytest.approx(1.0, abs=1e-5) for v in stats.eot_cosine.values())


@pytest.mark.parametrize("name", ["mrl", "cos", "kappa", "det"])
def test_regularizer_gradients_reach_the_parameters(digits, name: str) -> None:
    x, y = digits[0][:8], digits[1][:8]
    model = _noisy().train()
    g, _, _ = draw_gradients(model, x, y, 3, create_graph=True)
    penalty = graddiv_penalty(name, g)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(penalty, params, allow_unused=True)
    weights = [(p, dp) for p, dp in zip(params, grads, strict=True) if p.dim() > 1]
    assert all(dp is not None and torch.isfinite(dp).all() for _, dp in weights)
    assert all(dp.abs().sum() > 0 for _, dp in weights), "double backprop reaches every weight tensor"


def test_recipe_registered_validated_and_refuses_deterministic_models() -> None:
    recipe = build_recipe("graddiv", regularizer="cos", lam=0.5)
    assert recipe.describe()["regularizer"] == "cos" and recipe.describe()["base"] == "standard"
    with pytest.raises(Exception, match="lamda"):
        build_recipe("graddiv", lamda=0.5)
    with pytest.raises(ValueError, match="needs a randomized model"):
        recipe.wrap(build_model("madry-cnn", "digits"))


def _brute_force_draws(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, seed: int):
    """Per-draw CE and input gradients, from one plain pass over the replicas with the generator replayed:
    (ce (B, n), grads as a list per input of n flat vectors)."""
    set_generator(model, torch.Generator().manual_seed(seed))
    xr = x.repeat_interleave(n, 0).requires_grad_(True)
    ce = torch.nn.functional.cross_entropy(model(xr), y.repeat_interleave(n, 0), reduction="none")
    (g,) = torch.autograd.grad(ce.sum(), xr)
    flat = g.flatten(1)
    return ce.detach().view(-1, n), [[flat[b * n + i] for i in range(n)] for b in range(x.shape[0])]


def _brute_mrl(vectors: list[torch.Tensor]) -> float:
    total = torch.zeros_like(vectors[0])
    for v in vectors:
        total = total + v / v.norm()
    return float((total / len(vectors)).norm())


def _brute_mean_cosine(vectors: list[torch.Tensor]) -> float:
    cosines = [float(torch.dot(a, b) / (a.norm() * b.norm()))
               for i, a in enumerate(vectors) for j, b in enumerate(vectors) if i != j]
    return sum(cosines) / len(cosines)


@pytest.mark.parametrize(("regularizer", "brute"), [("mrl", _brute_mrl), ("cos", _brute_mean_cosine)])
def test_recipe_step_matches_a_brute_force_recomputation(digits, regularizer: str, brute) -> None:
    """The loss, base loss, penalty and logged MRL of one step, against per-draw CE and pairwise cosines computed
    here with plain loops on the same draws (the generator replayed), not from the recipe's own logs."""
    x, y = digits[0][:6], digits[1][:6]
    model = _noisy().train()
    recipe = build_recipe("graddiv", lam=2.0, warmup=0.5, n_draws=3, regularizer=regularizer)
    set_generator(model, torch.Generator().manual_seed(11))
    out = recipe.step(recipe.wrap(model), x, y, _ctx(progress=0.25))
    ce, draws = _brute_force_draws(model, x, y, 3, seed=11)
    base = float(ce.mean())
    penalty = sum(brute(v) for v in draws) / len(draws)
    assert out.logs["graddiv_lam"] == 1.0  # half-way through a warm-up of half of training: 2.0 * 0.5
    assert out.logs["base_loss"] == pytest.approx(base, rel=1e-5)
    assert out.logs["graddiv_penalty"] == pytest.approx(penalty, rel=1e-4, abs=1e-6)
    assert out.loss.item() == pytest.approx(base + 1.0 * penalty, rel=1e-5)
    assert out.logs["graddiv_mrl"] == pytest.approx(sum(_brute_mrl(v) for v in draws) / len(draws), rel=1e-4)
    assert out.logits.shape == (6, 10)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    set_generator(model, torch.Generator().manual_seed(12))
    zero = build_recipe("graddiv", lam=0.0, n_draws=3).step(model, x, y, _ctx())
    assert "graddiv_penalty" not in zero.logs
    _, draws = _brute_force_draws(model, x, y, 3, seed=12)
    assert zero.logs["graddiv_mrl"] == pytest.approx(sum(_brute_mrl(v) for v in draws) / len(draws), rel=1e-4)
    zero.loss.backward()  # the reused forward graph is still there without double backprop


@pytest.mark.parametrize("on", ["adv", "clean"])
def test_recipe_pgd_at_base(digits, on: str) -> None:
    x, y = digits[0][:4], digits[1][:4]
    model = _noisy().train()
    recipe = build_recipe("graddiv", base="pgd_at", graddiv_on=on, pgd_steps=2, n_draws=2, lam=0.5)
    out = recipe.step(model, x, y, _ctx(eps=0.2))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.logits.shape == (4, 10)
    assert model.training, "PGD crafting leaves the model in train mode"


def test_elbo_bases_add_the_scaled_kl(digits) -> None:
    x, y = digits[0][:4], digits[1][:4]
    model = _noisy(kind="bayes").train()
    kl = kl_divergence(model).item()
    assert kl > 0
    gd = build_recipe("graddiv", base="elbo", kl_weight=0.5, n_train=1000, lam=0.0, n_draws=2)
    assert gd.step(model, x, y, _ctx()).logs["kl_term"] == pytest.approx(0.5 * kl / 1000, rel=1e-5)
    bnn = build_recipe("adv_bnn", adversarial=False, kl_weight=2.0, n_train=500, n_draws=3)
    out = bnn.step(model, x, y, _ctx())
    assert out.logs["kl_term"] == pytest.approx(2.0 * kl / 500, rel=1e-5)
    assert out.loss.item() == pytest.approx(out.logs["ce"] + out.logs["kl_term"], rel=1e-5)
    adv = build_recipe("adv_bnn", pgd_steps=2).step(model, x, y, _ctx(eps=0.2, n_train=300))
    adv.loss.backward()
    sigmas = [p for n, p in model.named_parameters() if n.endswith("log_sigma")]
    assert sigmas and all(p.grad is not None and p.grad.abs().sum() > 0 for p in sigmas)  # posterior scales train


def test_elbo_reads_n_train_from_the_step_context_and_refuses_a_disagreeing_setting(digits) -> None:
    x, y = digits[0][:4], digits[1][:4]
    model = _noisy(kind="bayes").train()
    kl = kl_divergence(model).item()
    for name, args in (("graddiv", {"base": "elbo", "lam": 0.0, "n_draws": 2}), ("adv_bnn", {"adversarial": False})):
        out = build_recipe(name, **args).step(model, x, y, _ctx(n_train=250))
        assert out.logs["kl_term"] == pytest.approx(kl / 250, rel=1e-5)
        assert build_recipe(name, n_train=250, **args).step(model, x, y, _ctx(n_train=250)).logs["kl_term"] > 0
        with pytest.raises(ValueError, match="n_train = 6000 disagrees with the training set's 250"):
            build_recipe(name, n_train=6000, **args).step(model, x, y, _ctx(n_train=250))
        with pytest.raises(ValueError, match="n_train"):  # nobody knows the size: say so instead of guessing
            build_recipe(name, **args).step(model, x, y, _ctx())


def test_eot_cosine_grows_with_k_on_a_randomized_model(digits) -> None:
    x, y = digits[0][:40], digits[1][:40]
    stats = gradient_statistics(_noisy(), x, y, n_draws=6, ks=(1, 4, 16), n_fresh=4, batch_size=20)
    assert 0 < stats.mean_resultant_length < 1 and stats.kappa > 0
    r2 = stats.mean_resultant_length**2
    assert r2 == pytest.approx(1 / 6 + 5 / 6 * stats.mean_pairwise_cosine, abs=0.05)  # Jensen gap only
    c = stats.eot_cosine
    assert c[1] < c[4] < c[16] < 1


def test_transfer_matrix(digits) -> None:
    """Every cell and both means against a recomputation here: attack frozen draw i, count on frozen draw j the
    fooled inputs among those j classifies correctly, average with plain loops."""
    from gradguard.attacks import PGD
    from gradguard.models import freeze

    x, y = digits[0][:30], digits[1][:30]
    model = _noisy()
    ident = transfer_matrix(model, x, y, 3, lambda i: (lambda m, xx, yy: xx))
    assert ident.success.shape == (3, 3) and ident.mean_off_diagonal == 0.0
    full = transfer_matrix(model, x, y, 3, lambda i: PGD(eps=0.4, steps=10, seed=i))
    assert model.training, "mode restored"
    model.eval()
    frozen = [freeze(model, seed).eval() for seed in range(3)]
    expected = torch.zeros(3, 3)
    with torch.no_grad():
        correct = [f(x).argmax(1) == y for f in frozen]
    for i in range(3):
        x_adv = PGD(eps=0.4, steps=10, seed=i)(frozen[i], x, y)
        with torch.no_grad():
            for j in range(3):
                fooled = [bool(c) and int(p) != int(t) for c, p, t in zip(correct[j], frozen[j](x_adv).argmax(1), y,
                                                                         strict=True)]
                expected[i, j] = sum(fooled) / max(1, int(correct[j].sum()))
    torch.testing.assert_close(full.success, expected)
    off = [float(expected[i, j]) for i in range(3) for j in range(3) if i != j]
    assert full.mean_off_diagonal == pytest.approx(sum(off) / 6)
    assert full.mean_diagonal == pytest.approx(sum(float(expected[i, i]) for i in range(3)) / 3)
    assert 0.0 < full.mean_off_diagonal < 1.0  # a budget where some, not all, examples transfer
    assert full.to_dict()["seeds"] == [0, 1, 2]


def _short_run(x: torch.Tensor, y: torch.Tensor, lam: float, seed: int) -> float:
    model = _noisy(seed)
    recipe = build_recipe("graddiv", lam=lam, regularizer="mrl", n_draws=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    steps = 0
    for _ in range(3):
        perm = torch.randperm(1500, generator=g)
        for i in range(0, 1500, 50):
            idx = perm[i : i + 50]
            out = recipe.step(model, x[idx], y[idx], _ctx(steps))
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            steps += 1
    return gradient_statistics(model, x[1500:], y[1500:], n_draws=8, ks=()).mean_resultant_length


@pytest.mark.slow
def test_short_run_with_graddiv_lowers_mean_resultant_length(digits) -> None:
    x, y = digits
    torch.set_num_threads(1)
    without, with_gd = _short_run(x, y, 0.0, seed=0), _short_run(x, y, 1.0, seed=0)
    assert with_gd < without - 0.02, (without, with_gd)  # measured gaps on seeds 0-2: 0.035-0.055


def test_craft_pgd_attacks_samples_misclassified_at_their_clean_point() -> None:
    """Adversarial training needs every sample pushed: the evaluation PGD leaves already-fooled samples clean."""
    from torch import nn

    from gradguard.training.recipes.graddiv import craft_pgd

    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    x = torch.rand(16, 6)
    y = (model(x).argmax(1) + 1) % 3  # every sample misclassified before the attack
    x_adv = craft_pgd(model, x, y, _ctx(eps=0.1), steps=5, alpha=None, eot=1)
    moved = (x_adv - x).abs().flatten(1).amax(1)
    assert bool((moved > 0.05).all()), moved
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert float(ce(model(x_adv), y)) > float(ce(model(x), y))
