"""Attacks on a small network trained in a second on the offline 8x8 digits: relative strength and monotonicity,
and cross-checks against torchattacks 3.5.1 (`scripts/setup.sh` installs it without its dependencies; skipped
when absent on a workstation, a failure under CI=true)."""

from __future__ import annotations

import importlib
import os

import pytest
import torch
from torch import Tensor, nn

from gradguard.attacks import APGD, APGDT, CWL2, PGD, Square


def _digits() -> tuple[Tensor, Tensor]:
    try:
        from gradguard.data import load  # the data package's own offline loader, when it is there

        return load("digits", "train").tensors()
    except (ImportError, AttributeError):
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
        return x, torch.tensor(d.target, dtype=torch.int64)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads; on a shared 2-core machine they only contend."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, Tensor, Tensor]:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train()
    finally:
        torch.set_num_threads(saved)


def _train() -> tuple[nn.Module, Tensor, Tensor]:
    x, y = _digits()
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    x, y = x[perm], y[perm]
    n_train = int(0.75 * len(y))
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * x.shape[-1] ** 2, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )  # fmt: skip
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.01 if p.dim() == 1 else (2.0 / p[0].numel()) ** 0.5))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    xtr, ytr = x[:n_train], y[:n_train]
    for _ in range(10):
        order = torch.randperm(n_train, generator=g)
        for i in range(0, n_train, 64):
            b = order[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xtr[b]), ytr[b]).backward()
            opt.step()
    net.eval()
    xte, yte = x[n_train:][:200], y[n_train:][:200]
    with torch.no_grad():
        acc = (net(xte).argmax(1) == yte).float().mean()
    assert acc > 0.9, f"the toy network should learn digits (test accuracy {acc:.3f})"
    return net, xte, yte


def robust_acc(model: nn.Module, x_adv: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def worst_case(model: nn.Module, advs: list[Tensor], y: Tensor) -> float:
    """Robust accuracy when a point counts as robust only if every attack failed on it."""
    with torch.no_grad():
        ok = torch.stack([model(a).argmax(1) == y for a in advs]).all(0)
    return float(ok.float().mean())


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_apgd_at_least_as_strong_as_pgd(trained, norm: str, eps: float) -> None:
    """APGD as AutoAttack uses it (CE, then targeted DLR, per-sample worst case) beats PGD-40 outright; APGD-CE
    alone is within one point of it. On this net the single-attack gap is seed noise either way (measured at
    linf 0.1: APGD-CE 0.557/0.543/0.550 vs PGD-40 0.553/0.547/0.550 for seeds 0/1/2), and torchattacks' APGD gives
    the same 0.557/0.543, so asking APGD-CE alone to win every seed would test luck, not the algorithm."""
    model, x, y = trained
    pgd = robust_acc(model, PGD(eps=eps, norm=norm, steps=40)(model, x, y), y)
    apgd_ce = APGD(eps=eps, norm=norm, steps=100)(model, x, y)
    apgd_t = APGDT(eps=eps, norm=norm, steps=50, n_target_classes=3)(model, x, y)
    assert robust_acc(model, apgd_ce, y) <= pgd + 0.01
    assert worst_case(model, [apgd_ce, apgd_t], y) <= pgd


def test_robust_accuracy_never_increases_with_eps(trained) -> None:
    model, x, y = trained
    grid = [0.0, 0.05, 0.1, 0.2, 0.5]
    for make in (
        lambda e: PGD(eps=e, steps=20),
        lambda e: APGD(eps=e, steps=25),
        lambda e: Square(eps=e, n_queries=100),
    ):
        accs = [robust_acc(model, make(e)(model, x, y), y) for e in grid]
        assert all(a >= b for a, b in zip(accs, accs[1:], strict=False)), accs
        assert accs[0] > 0.9 and accs[-1] < 0.05, accs


def test_sweep_success_is_monotone_in_eps(trained) -> None:
    model, x, y = trained
    eps = [0.25, 0.5, 1.0, 2.0]
    _, ok = CWL2(steps=50, binary_steps=4).sweep(model, x[:100], y[:100], eps)
    assert ok.shape == (4, 100)
    assert (ok[1:].int() >= ok[:-1].int()).all()  # a minimal attack clipped to growing balls
    _, ok = PGD(eps=0.1, steps=10).sweep(model, x[:100], y[:100], [0.0, 0.1, 0.3])
    assert not ok[0][(model(x[:100]).argmax(1) == y[:100])].any()
    assert ok[2].float().mean() >= ok[1].float().mean()


# -------------------------------------------------------------------------------- torchattacks cross-checks
REFERENCE_VERSION = "3.5.1"  # the pin of scripts/setup.sh


def _torchattacks():
    """torchattacks, or a skip; under CI=true a failure, so that the cross-checks cannot silently stop running."""
    try:
        ta = importlib.import_module("torchattacks")
    except ImportError as err:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but torchattacks is not installed ({err}): the cross-checks must run in CI; "
                        f"scripts/setup.sh installs torchattacks=={REFERENCE_VERSION} with --no-deps")
        pytest.skip("torchattacks is not installed (bash scripts/setup.sh installs it)")
    assert ta.__version__ == REFERENCE_VERSION, f"cross-checks are calibrated on {REFERENCE_VERSION}: {ta.__version__}"
    return ta


def test_cross_check_reference_is_there_under_ci(monkeypatch) -> None:
    """The guard itself: with the reference missing, CI=true fails instead of skipping."""

    def missing(name: str):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run in CI"):
        _torchattacks()
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        _torchattacks()


# One run of a random-start attack on 200 points moves by +-1.5 points from seed to seed (measured: PGD-20 at
# linf 0.1 gives 0.56..0.59 over seeds 0-5, for us and for torchattacks alike), more than the one-point margin the
# check allows. So the deterministic variant is compared run to run, and random starts by their mean over seeds.
SEEDS = (0, 1, 2)


@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_pgd_not_weaker_than_torchattacks(trained, eps: float) -> None:
    ta = _torchattacks()
    model, x, y = trained
    settings = {"eps": eps, "alpha": eps / 8, "steps": 20}
    theirs_det = robust_acc(model, ta.PGD(model, random_start=False, **settings)(x, y), y)
    ours_det = robust_acc(model, PGD(random_start=False, **settings)(model, x, y), y)
    # the same deterministic algorithm: the same number, within a point (measured equal: 0.88 and 0.57)
    assert abs(ours_det - theirs_det) <= 0.01, (ours_det, theirs_det)
    theirs, ours = [], []
    for seed in SEEDS:
        with torch.random.fork_rng():  # torchattacks draws from the global RNG
            torch.manual_seed(seed)
            theirs.append(robust_acc(model, ta.PGD(model, random_start=True, **settings)(x, y), y))
        ours.append(robust_acc(model, PGD(seed=seed, **settings)(model, x, y), y))
    assert sum(ours) / len(ours) <= sum(theirs) / len(theirs) + 0.01, (ours, theirs)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_apgd_not_weaker_than_torchattacks(trained, norm: str, eps: float) -> None:
    ta = _torchattacks()
    model, x, y = trained
    ta_norm = "Linf" if norm == "linf" else "L2"
    for loss in ("ce", "dlr"):
        theirs, ours = [], []
        for seed in SEEDS:
            with torch.random.fork_rng():  # torchattacks' APGD reseeds the global RNG
                attack = ta.APGD(model, norm=ta_norm, eps=eps, steps=50, loss=loss, seed=seed)
                theirs.append(robust_acc(model, attack(x, y), y))
            ours.append(robust_acc(model, APGD(eps=eps, norm=norm, steps=50, loss=loss, seed=seed)(model, x, y), y))
        assert sum(ours) / len(ours) <= sum(theirs) / len(theirs) + 0.01, (loss, ours, theirs)


def test_square_not_weaker_than_torchattacks(trained) -> None:
    """Measured 2026-12-02 at linf 0.1, 300 queries: ours 0.585/0.620, theirs 0.690/0.650 for seeds 0/1 (ours
    draws its windows per sample, theirs one per batch)."""
    ta = _torchattacks()
    model, x, y = trained
    theirs, ours = [], []
    for seed in SEEDS[:2]:
        with torch.random.fork_rng():  # torchattacks' Square draws from the global RNG
            torch.manual_seed(seed)
            theirs.append(robust_acc(model, ta.Square(model, norm="Linf", eps=0.1, n_queries=300, seed=seed)(x, y), y))
        ours.append(robust_acc(model, Square(eps=0.1, n_queries=300, seed=seed)(model, x, y), y))
    assert sum(ours) / len(ours) <= sum(theirs) / len(theirs) + 0.01, (ours, theirs)
