"""Attacks on analytic linear models, where the optimal perturbation is known in closed form (the adv_lib idea),
plus the contract every attack keeps: model mode and flags restored, private RNG, determinism, counts."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from gradguard.attacks import APGD, APGDT, BPDA, CWL2, FGSM, PGD, Attack, CWLinf, Square, Transfer, eval_mode
from gradguard.losses import margin

SHAPE = (1, 6, 6)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads; on a shared 2-core machine they only contend."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


D = 36


def linear_model(n_classes: int = 2, seed: int = 0, live: int | None = None) -> nn.Module:
    """Random linear classifier; with `live`, classes from `live` on get bias -10 and never matter (DLR needs
    at least 3 classes, yet the closed form of the binary case is wanted)."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(D, n_classes)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n_classes, D, generator=g) * 0.5)
        lin.bias.zero_()
        if live is not None:
            lin.bias[live:] = -10.0
    return nn.Sequential(nn.Flatten(), lin).eval()


def inputs(model: nn.Module, n: int = 8, seed: int = 1) -> tuple[Tensor, Tensor]:
    """Inputs near 0.5 (far from the box faces) labelled by the model itself."""
    g = torch.Generator().manual_seed(seed)
    x = 0.5 + 0.05 * torch.randn(n, *SHAPE, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return x, y


def analytic_distance(model: nn.Module, x: Tensor, y: Tensor, norm: str) -> Tensor:
    """Smallest perturbation flipping a linear classifier: min_j (z_y - z_j) / ||w_y - w_j||_dual."""
    w = model[1].weight.detach()
    with torch.no_grad():
        z = model(x)
    wd = w[y].unsqueeze(1) - w.unsqueeze(0)  # (N, K, D)
    dual = wd.abs().sum(-1) if norm == "linf" else wd.norm(dim=-1)
    gap = z.gather(1, y[:, None]) - z
    ratio = gap / dual
    ratio[torch.arange(len(y)), y] = float("inf")
    return ratio.min(1).values


def fooled(model: nn.Module, x_adv: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(1) != y


def in_ball(x_adv: Tensor, x: Tensor, eps: Tensor | float, norm: str) -> bool:
    d = (x_adv - x).flatten(1)
    dist = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    return bool((dist <= eps + 1e-5).all() and (x_adv >= 0).all() and (x_adv <= 1).all())


GRADIENT_ATTACKS = {
    "pgd": lambda norm: lambda e: PGD(eps=e, norm=norm, steps=30),
    "apgd-ce": lambda norm: lambda e: APGD(eps=e, norm=norm, steps=30),
    "apgd-dlr": lambda norm: lambda e: APGD(eps=e, norm=norm, steps=30, loss="dlr"),
}


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", sorted(GRADIENT_ATTACKS))
def test_flip_exactly_where_eps_exceeds_the_analytic_margin(name: str, norm: str) -> None:
    model = linear_model(2) if name != "apgd-dlr" else linear_model(4, live=2)
    x, y = inputs(model)
    d = analytic_distance(model, x, y, norm)
    make = GRADIENT_ATTACKS[name](norm)
    above = make(d * 1.03)(model, x, y)
    below = make(d * 0.97)(model, x, y)
    assert fooled(model, above, y).all(), f"{name} missed a flip at 1.03x the analytic distance"
    assert not fooled(model, below, y).any()
    assert in_ball(above, x, d * 1.03, norm) and in_ball(below, x, d * 0.97, norm)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("cls", [PGD, APGD])
def test_reaches_the_optimal_margin_below_the_threshold(cls: type, norm: str) -> None:
    # Below the flip point the best point of a linear 2-class model is the vertex (linf) / the ray (l2) of the
    # dual direction; its margin is m - eps * ||w_y - w_o||_dual exactly.
    model = linear_model(2)
    x, y = inputs(model)
    eps = float(analytic_distance(model, x, y, norm).min()) * 0.8
    w = model[1].weight.detach()
    wd = w[y] - w[1 - y]
    dual = wd.abs().sum(1) if norm == "linf" else wd.norm(dim=1)
    with torch.no_grad():
        expect = margin(model(x), y) - eps * dual
        # PGD's fixed step shrinks the off-optimum part of a random L2 start only geometrically; start at x.
        extra = {"random_start": False} if cls is PGD else {}
        x_adv = cls(eps=eps, norm=norm, steps=40, loss="cw", **extra)(model, x, y)
        got = margin(model(x_adv), y)
    torch.testing.assert_close(got, expect, rtol=0, atol=1e-4)


def test_fgsm_is_optimal_on_a_linear_binary_model() -> None:
    model = linear_model(2)
    x, y = inputs(model)
    d = analytic_distance(model, x, y, "linf")
    assert fooled(model, FGSM(eps=d * 1.01)(model, x, y), y).all()
    assert not fooled(model, FGSM(eps=d * 0.99)(model, x, y), y).any()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgdt_reaches_the_multiclass_threshold(norm: str) -> None:
    # With several live classes, untargeted losses chase the currently largest other logit, which need not be
    # the class whose boundary is closest; trying every target (APGD-T) finds the closest one.
    model = linear_model(6, seed=3)
    x, y = inputs(model, n=10)
    d = analytic_distance(model, x, y, norm)
    make = lambda e: APGDT(eps=e, norm=norm, steps=30, n_target_classes=5)  # noqa: E731
    assert fooled(model, make(d * 1.03)(model, x, y), y).all()
    assert not fooled(model, make(d * 0.97)(model, x, y), y).any()


def test_cw_l2_distance_matches_the_analytic_margin() -> None:
    for n_classes in (2, 5):
        model = linear_model(n_classes, seed=n_classes)
        x, y = inputs(model)
        d = analytic_distance(model, x, y, "l2")
        attack = CWL2(steps=100, binary_steps=6)
        adv = attack(model, x, y)
        assert fooled(model, adv, y).all()
        ratio = (adv - x).flatten(1).norm(dim=1) / d
        assert ((ratio >= 1 - 1e-4) & (ratio <= 1.02)).all(), ratio
        assert attack.last_grad_evals > 0


def test_cw_l2_with_eps_and_sweep() -> None:
    model = linear_model(2)
    x, y = inputs(model)
    d = analytic_distance(model, x, y, "l2")
    eps = [0.5 * float(d.min()), 1.1 * float(d.max())]
    advs, ok = CWL2(steps=100, binary_steps=6).sweep(model, x, y, eps)
    assert ok.shape == (2, len(y))
    assert not ok[0].any() and ok[1].all()
    assert in_ball(advs[0], x, eps[0], "l2")
    clipped = CWL2(eps=eps[0], steps=100, binary_steps=6)(model, x, y)
    torch.testing.assert_close(clipped, advs[0])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_finds_the_flip_on_a_linear_model(norm: str) -> None:
    model = linear_model(2)
    x, y = inputs(model, n=6)
    d = analytic_distance(model, x, y, norm)
    # Random search converges more slowly than gradients, and square-shaped L2 proposals are not the optimal
    # direction, so the bar is "all flipped at a modest factor above the largest analytic distance".
    above = float(d.max()) * (1.05 if norm == "linf" else 1.6)
    adv = Square(eps=above, norm=norm, n_queries=300)(model, x, y)
    assert fooled(model, adv, y).all()
    assert in_ball(adv, x, above, norm)
    below = float(d.min()) * 0.97
    adv = Square(eps=below, norm=norm, n_queries=100)(model, x, y)
    assert not fooled(model, adv, y).any() and in_ball(adv, x, below, norm)


def test_targeted_pgd_reaches_the_target() -> None:
    model = linear_model(5, seed=2)
    x, y = inputs(model)
    target = (y + 1) % 5
    adv = PGD(eps=0.5, steps=40, targeted=True)(model, x, y, target=target)
    with torch.no_grad():
        assert (model(adv).argmax(1) == target).all()
    adv = APGD(eps=0.5, steps=40, targeted=True, loss="cw")(model, x, y, target=target)
    with torch.no_grad():
        assert (model(adv).argmax(1) == target).all()
    with pytest.raises(ValueError, match="target"):
        PGD(eps=0.1, targeted=True)(model, x, y)


def test_robust_accuracy_never_increases_with_eps_on_a_linear_model() -> None:
    model = linear_model(4, seed=5)
    x, y = inputs(model, n=32, seed=7)
    for make in (lambda e: PGD(eps=e, steps=20), lambda e: APGD(eps=e, steps=20)):
        accs = [float((~fooled(model, make(e)(model, x, y), y)).float().mean()) for e in (0.0, 0.02, 0.05, 0.1, 0.3)]
        assert all(a >= b for a, b in zip(accs, accs[1:], strict=False)), accs
        assert accs[0] == 1.0 and accs[-1] == 0.0


# ---------------------------------------------------------------------------------------------- the contract
class Quirky(nn.Module):
    """BatchNorm + dropout in train mode, one frozen layer: everything an attack could disturb."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 36, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        self.conv.weight.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))


def all_attacks(eps: float = 0.1) -> dict[str, Attack]:
    return {
        "fgsm": FGSM(eps=eps),
        "pgd": PGD(eps=eps, steps=5),
        "pgd-l2": PGD(eps=eps * 5, norm="l2", steps=5, restarts=2),
        "cw-linf": CWLinf(eps=eps, steps=5),
        "cw-l2": CWL2(steps=5, binary_steps=2),
        "apgd": APGD(eps=eps, steps=5),
        "apgd-t": APGDT(eps=eps, steps=5, n_target_classes=2),
        "square": Square(eps=eps, n_queries=20),
        "square-l2": Square(eps=eps * 5, norm="l2", n_queries=20),
        "pgd-eot": PGD(eps=eps, steps=3, eot=3),
        "apgd-eot": APGD(eps=eps, steps=4, eot=2, chunk_size=5),
        "cw-l2-eot": CWL2(steps=3, binary_steps=1, eot=2),
    }


@pytest.mark.parametrize("name", sorted(all_attacks()))
def test_attacks_restore_mode_flags_and_never_touch_global_rng(name: str) -> None:
    model = Quirky().train()
    model.drop.eval()  # a deliberately mixed state must come back as is
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    stats = model.bn.running_mean.clone()
    x = torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(2))
    y = torch.arange(6) % 5
    rng = torch.get_rng_state()
    attack = all_attacks()[name]
    adv = attack(model, x, y)
    assert torch.equal(rng, torch.get_rng_state()), "the attack used the global RNG"
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert torch.equal(stats, model.bn.running_mean), "BatchNorm statistics moved: not attacked in eval mode"
    assert adv.shape == x.shape and not adv.requires_grad
    assert (adv >= 0).all() and (adv <= 1).all()
    assert attack.last_grad_evals + attack.last_forward_evals > 0


@pytest.mark.parametrize("name", ["pgd", "pgd-l2", "apgd", "apgd-t", "square", "square-l2", "pgd-eot"])
def test_same_seed_same_result(name: str) -> None:
    model = linear_model(5, seed=4)
    x, y = inputs(model, n=6)
    a = all_attacks(0.02)[name](model, x, y)
    b = all_attacks(0.02)[name](model, x, y)
    assert torch.equal(a, b)
    other = all_attacks(0.02)[name]
    other.seed = 12345
    assert not torch.equal(a, other(model, x, y))
    g1, g2 = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    atk = all_attacks(0.02)[name]
    atk.generator = g1
    first = atk(model, x, y)
    atk.generator = g2
    assert torch.equal(first, atk(model, x, y))


def test_eval_mode_restores_on_error() -> None:
    model = Quirky().train()
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not model.training and not model.fc.weight.requires_grad
        raise RuntimeError("boom")
    assert model.training and model.fc.weight.requires_grad and not model.conv.weight.requires_grad


def test_gradient_evaluation_counts() -> None:
    model = linear_model(2)
    x, y = inputs(model)
    tiny = 1e-4  # nobody is fooled, so every step runs on every sample
    pgd = PGD(eps=tiny, steps=7, restarts=2)
    pgd(model, x, y)
    assert pgd.last_grad_evals == 2 * 7 * len(y)
    eot = PGD(eps=tiny, steps=4, eot=3)
    eot(model, x, y)
    assert eot.last_grad_evals == 4 * 3 * len(y)
    sq = Square(eps=tiny, n_queries=10)
    sq(model, x, y)
    assert sq.last_grad_evals == 0 and sq.last_forward_evals == 11 * len(y)  # clean check + start + 9 queries


def test_early_stop_spends_nothing_on_fooled_points() -> None:
    model = linear_model(2)
    x, y = inputs(model)
    pgd = PGD(eps=0.5, alpha=0.5, steps=50)  # one full step reaches the optimal vertex, far past every margin
    adv = pgd(model, x, y)
    assert fooled(model, adv, y).all()
    # At most: the gradient at the start and the one that finds the stepped point fooled; not the 50-step budget.
    assert pgd.last_grad_evals <= 2 * len(y)


def test_transfer_runs_on_the_surrogate_only() -> None:
    surrogate = linear_model(2)
    x, y = inputs(surrogate)

    class Untouchable(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            raise AssertionError("the target must not be queried by a transfer attack")

    inner = PGD(eps=0.2, steps=10)
    transfer = Transfer(attack=inner, surrogate=surrogate)
    adv = transfer(Untouchable(), x, y)
    torch.testing.assert_close(adv, PGD(eps=0.2, steps=10)(surrogate, x, y))
    assert transfer.last_grad_evals == inner.last_grad_evals > 0
    advs, ok = Transfer(attack=PGD(eps=0.2, steps=10), surrogate=surrogate).sweep(surrogate, x, y, [0.0, 0.2])
    assert not ok[0].any() and ok[1].all()


class Quantize(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x * 32) / 32


def test_bpda_breaks_a_non_differentiable_preprocessing() -> None:
    lin = linear_model(2)
    model = nn.Sequential(Quantize(), lin).eval()
    x, y = inputs(lin)
    x = torch.round(x * 32) / 32
    with torch.no_grad():
        y = model(x).argmax(1)
    eps = float(analytic_distance(lin, x, y, "linf").max()) * 1.5
    plain = PGD(eps=eps, steps=20, random_start=False)
    assert not fooled(model, plain(model, x, y), y).any(), "round() has zero gradient: plain PGD cannot move"
    adv = BPDA(attack=PGD(eps=eps, steps=20, random_start=False), modules=Quantize)(model, x, y)
    assert fooled(model, adv, y).all() and in_ball(adv, x, eps, "linf")
    assert isinstance(model[0], Quantize), "the original module must be put back"
    adv2 = BPDA(attack=PGD(eps=eps, steps=20), preprocess=Quantize())(lin, x, y)
    assert fooled(lin, Quantize()(adv2), y).all()
    with pytest.raises(ValueError, match="exactly one"):
        BPDA(attack=PGD(eps=eps))
