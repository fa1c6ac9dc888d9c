"""input_gradient: plain autograd agreement, EOT = mean of per-draw gradients, chunking, BPDA."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from gradguard.draws import draw_mode
from gradguard.gradients import BPDAWrapper, bpda, forward_scores, input_gradient
from gradguard.losses import ce, get_loss


def _net(seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 5))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net.eval()


class NoisyNet(nn.Module):
    """Adds Gaussian noise (own generator) to every input row, independently per row, and records it."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.net = _net(seed)
        self.generator = torch.Generator().manual_seed(99)
        self.drawn: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        noise = 0.3 * torch.randn(x.shape, generator=self.generator)
        self.drawn.append(noise)
        return self.net(x + noise)


def _data(n: int = 6) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 5, (n,), generator=g)


def test_plain_gradient_matches_autograd() -> None:
    net, (x, y) = _net(), _data()
    grad, loss = input_gradient(net, x, y, "ce")
    xr = x.clone().requires_grad_(True)
    ref_loss = nn.functional.cross_entropy(net(xr), y, reduction="none")
    (ref,) = torch.autograd.grad(ref_loss.sum(), xr)
    torch.testing.assert_close(grad, ref)
    torch.testing.assert_close(loss, ref_loss.detach())
    assert not grad.requires_grad and not loss.requires_grad


@pytest.mark.parametrize("chunk_size", [None, 7, 1])
def test_eot_equals_mean_of_per_draw_gradients(chunk_size: int | None) -> None:
    k = 5
    model, (x, y) = NoisyNet(), _data()
    assert draw_mode(model, x) == "per-sample"  # the one probe (a call of 2 rows), cached for this model object
    model.drawn.clear()
    grad, loss = input_gradient(model, x, y, "ce", eot=k, chunk_size=chunk_size)
    # One batched pass per chunk, never k passes: the number of forward calls only depends on chunking.
    rows_per_call = [d.shape[0] for d in model.drawn]
    assert sum(rows_per_call) == x.shape[0] * k
    if chunk_size is None:
        assert len(model.drawn) == 1
    noise = torch.cat(model.drawn).view(x.shape[0], k, *x.shape[1:])  # row i*k + j is draw j of sample i
    grads, losses = [], []
    for j in range(k):
        xj = x.clone().requires_grad_(True)
        lj = ce(model.net(xj + noise[:, j]), y)
        grads.append(torch.autograd.grad(lj.sum(), xj)[0])
        losses.append(lj.detach())
    torch.testing.assert_close(grad, torch.stack(grads).mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, torch.stack(losses).mean(0), rtol=1e-5, atol=1e-6)
    # The draws really differ, so the test could fail if averaging were wrong.
    assert (grads[0] - grads[1]).abs().max() > 1e-3


def test_chunking_does_not_change_a_deterministic_gradient() -> None:
    net, (x, y) = _net(), _data(9)
    full = input_gradient(net, x, y, "dlr", eot=3)
    for chunk in (1, 4, 8, 100):
        part = input_gradient(net, x, y, "dlr", eot=3, chunk_size=chunk)
        torch.testing.assert_close(part[0], full[0])
        torch.testing.assert_close(part[1], full[1])
    torch.testing.assert_close(full[0], input_gradient(net, x, y, "dlr")[0], rtol=1e-5, atol=1e-7)


def test_targeted_loss_and_scores() -> None:
    net, (x, y) = _net(), _data()
    t = (y + 1) % 5
    grad, loss, scores = input_gradient(net, x, y, get_loss("ce", targeted=True), target=t, return_scores=True)
    torch.testing.assert_close(loss, -ce(net(x), t).detach())
    torch.testing.assert_close(scores, net(x).detach())
    model = NoisyNet()
    _, _, probs = input_gradient(model, x, y, "ce", eot=4, return_scores=True)
    torch.testing.assert_close(probs.sum(1), torch.ones(x.shape[0]))
    s, l2 = forward_scores(net, x, eot=2, y=y, loss_fn="ce")
    torch.testing.assert_close(l2, ce(net(x), y).detach())


def test_create_graph_allows_double_backprop() -> None:
    net, (x, y) = _net(), _data()
    grad, _ = input_gradient(net, x, y, "ce", create_graph=True)
    assert grad.requires_grad
    penalty = grad.square().sum()
    penalty.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_bpda_identity_and_approximation() -> None:
    quantize = BPDAWrapper(lambda z: torch.round(z * 4) / 4)
    x = torch.tensor([0.1, 0.3, 0.6], requires_grad=True)
    out = quantize(x)
    torch.testing.assert_close(out.detach(), torch.tensor([0.0, 0.25, 0.5]))
    (g,) = torch.autograd.grad((out * torch.tensor([1.0, 2.0, 3.0])).sum(), x)
    torch.testing.assert_close(g, torch.tensor([1.0, 2.0, 3.0]))  # identity backward
    f = bpda(lambda z: torch.round(z * 4) / 4, approx=lambda z: 2 * z)
    (g2,) = torch.autograd.grad(f(x).sum(), x)
    torch.testing.assert_close(g2, torch.full((3,), 2.0))
    torch.testing.assert_close(f(x).detach(), out.detach())
    with pytest.raises(ValueError, match="eot"):
        input_gradient(_net(), *_data(), "ce", eot=0)
