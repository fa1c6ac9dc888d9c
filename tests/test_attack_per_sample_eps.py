"""Per-sample eps: ``attack(eps=tensor_of_shape_N)`` gives each sample its own budget, as if each were attacked
alone with its number; attacks whose maths takes one radius say so, and a wrong shape is named."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from gradguard.attacks import APGD, APGDT, BPDA, CWL2, FAB, FGSM, PGD, CWLinf, Square, Transfer
from gradguard.threat import L2Ball, LinfBall, threat_model

N = 6


def linear_model(n_classes: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, n_classes)).eval()


def batch(seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 0.5 + 0.1 * torch.randn(N, 1, 4, 4, generator=g), torch.randint(0, 4, (N,), generator=g)


def radii(norm: str) -> Tensor:
    """Budgets from none to more than enough, one per sample."""
    top = 0.3 if norm == "linf" else 1.5
    return torch.linspace(0.0, top, N)


def distance(x_adv: Tensor, x: Tensor, norm: str) -> Tensor:
    d = (x_adv - x).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("make", [
    lambda eps, norm: FGSM(eps=eps, norm=norm),
    lambda eps, norm: PGD(eps=eps, norm=norm, steps=15, random_start=False),
    lambda eps, norm: CWL2(eps=eps, steps=15, binary_steps=2) if norm == "l2" else CWLinf(eps=eps, steps=15,
                                                                                         random_start=False),
], ids=["FGSM", "PGD-no-random-start", "CWL2-or-CWLinf"])
def test_one_call_equals_one_call_per_sample(make, norm):
    model, (x, y) = linear_model(), batch()
    eps = radii(norm)
    together = make(eps, norm)(model, x, y)
    alone = torch.cat([make(float(e), norm)(model, x[i:i + 1], y[i:i + 1]) for i, e in enumerate(eps)])
    torch.testing.assert_close(together, alone)
    assert (distance(together, x, norm) <= eps + 1e-6).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("make", [
    lambda eps, norm: PGD(eps=eps, norm=norm, steps=15, restarts=2),
    lambda eps, norm: APGD(eps=eps, norm=norm, steps=20, restarts=2),
    lambda eps, norm: APGD(eps=eps, norm=norm, steps=20, loss="dlr", eot=2),
    lambda eps, norm: APGDT(eps=eps, norm=norm, steps=10, n_target_classes=3),
], ids=["PGD", "APGD-CE", "APGD-DLR-eot", "APGDT"])
def test_each_row_equals_the_whole_batch_attacked_at_its_eps(make, norm):
    """Random starts draw the batch's noise from one generator, so sample i alone would get other draws; the same
    seed over the whole batch gives every row the draws it gets in the per-sample call."""
    model, (x, y) = linear_model(), batch()
    eps = radii(norm)
    together = make(eps, norm)(model, x, y)
    for i, e in enumerate(eps):
        torch.testing.assert_close(together[i], make(float(e), norm)(model, x, y)[i])
    assert (distance(together, x, norm) <= eps + 1e-6).all()
    torch.testing.assert_close(together[0], x[0])  # eps 0: nowhere to go


def test_wrappers_hand_a_per_sample_eps_to_their_inner_attack():
    model, (x, y) = linear_model(), batch()
    eps = radii("linf")
    expect = PGD(eps=eps, steps=10)(model, x, y)
    torch.testing.assert_close(Transfer(attack=PGD(eps=eps, steps=10), surrogate=model)(nn.Identity(), x, y), expect)
    torch.testing.assert_close(BPDA(attack=PGD(eps=eps, steps=10), preprocess=lambda z: z)(model, x, y), expect)


@pytest.mark.parametrize("make", [lambda e: Square(eps=e), lambda e: FAB(eps=e)], ids=["Square", "FAB"])
def test_attacks_with_one_radius_refuse_a_tensor_by_name(make):
    with pytest.raises(ValueError, match=r"(Square|FAB) takes one eps for the whole batch .* shape \(6,\)"):
        make(radii("linf"))


def test_a_tensor_set_later_is_refused_at_call_time():
    model, (x, y) = linear_model(), batch()
    for attack in (Square(eps=0.1, n_queries=5), Transfer(attack=FAB(eps=0.1), surrogate=model)):
        attack.eps = radii("linf")  # as a sweep would set it
        with pytest.raises(ValueError, match=f"{type(attack).__name__} takes one eps for the whole batch"):
            attack(model, x, y)


def test_a_wrong_shape_is_named():
    model, (x, y) = linear_model(), batch()
    with pytest.raises(ValueError, match=r"PGD: a per-sample eps must have shape \(6,\) for a batch of 6, got \(5,\)"):
        PGD(eps=torch.full((5,), 0.1))(model, x, y)
    with pytest.raises(ValueError, match=r"APGD: a per-sample eps must have shape \(N,\), got \(2, 3\)"):
        APGD(eps=torch.full((2, 3), 0.1))
    with pytest.raises(ValueError, match="finite numbers >= 0"):
        FGSM(eps=torch.tensor([0.1, -0.1]))
    with pytest.raises(TypeError, match="floating-point"):
        FGSM(eps=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"eps must be in \[0, 1\] for linf"):
        FGSM(eps=torch.tensor([0.1, 2.0]))


def test_a_per_sample_ball_follows_its_rows():
    ball = threat_model("linf", torch.tensor([0.1, 0.2, 0.3]))
    assert isinstance(ball, LinfBall) and ball.per_sample
    with pytest.raises(TypeError, match="one radius per sample"):
        ball.eps  # noqa: B018
    x = torch.full((3, 2), 0.5)
    torch.testing.assert_close(ball.project(x + 1.0, x), torch.tensor([[0.6, 0.6], [0.7, 0.7], [0.8, 0.8]]))
    sub = ball.subset(torch.tensor([False, True, True]))
    torch.testing.assert_close(sub.radii(x[1:]), torch.tensor([0.2, 0.3]))
    assert sub.contains(x[1:] + 0.25, x[1:]).tolist() == [False, True]
    l2 = L2Ball(torch.tensor([1.0, 2.0]))
    assert l2.distance(l2.random_init(torch.zeros(2, 50) + 0.5), torch.zeros(2, 50) + 0.5)[0] <= 1.0 + 1e-6
    assert threat_model("l2", 0.5).subset(torch.tensor([0])).eps == 0.5  # a shared radius is untouched


def test_the_refusal_names_exactly_the_attacks_that_take_per_sample_eps():
    import gradguard.attacks as attacks

    with pytest.raises(ValueError) as err:
        Square(eps=radii("linf"))
    named = set(str(err.value).split("; ")[-1].replace(" and ", ", ").removesuffix(" take one per sample").split(", "))
    public = [getattr(attacks, n) for n in attacks.__all__]
    takers = {c.__name__ for c in public if isinstance(c, type) and issubclass(c, attacks.Attack) and c.per_sample_eps}
    assert named == takers == {"FGSM", "PGD", "CWLinf", "APGD", "APGDT", "CWL2"}


def test_a_per_sample_ball_refuses_a_batch_of_another_size():
    """(3,) radii against one row would broadcast to three rows without a word."""
    ball = threat_model("linf", torch.tensor([0.1, 0.2, 0.3]))
    x = torch.full((1, 2), 0.5)
    for use in (lambda: ball.project(x + 1.0, x), lambda: ball.random_init(x), lambda: ball.contains(x, x)):
        with pytest.raises(ValueError, match="meets a batch of 1 rows"):
            use()
