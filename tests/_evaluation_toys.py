"""Toy models and data for the evaluation tests: a 4-class linear 'quadrant' classifier whose optimal L-inf
attack is known in closed form, a shattered-gradient variant, and a noisy (randomized) variant."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradguard.threat import threat_model

SIDE = 6  # images are 1 x 6 x 6; class c lights up quadrant c


def templates() -> Tensor:
    """(4, 36) quadrant indicator templates, each averaging its 9 pixels."""
    w = torch.zeros(4, 1, SIDE, SIDE)
    h = SIDE // 2
    for c, (r, q) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        w[c, 0, r * h : (r + 1) * h, q * h : (q + 1) * h] = 1.0 / (h * h)
    return w.flatten(1)


def quadrant_data(n: int = 48, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Background in [0.1, 0.3], the quadrant of the label in [0.6, 0.8]: margin ~0.5 in quadrant means."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = 0.1 + 0.2 * torch.rand(n, 1, SIDE, SIDE, generator=g)
    mask = (templates()[y] > 0).view(n, 1, SIDE, SIDE)
    x = torch.where(mask, x + 0.5, x)
    return x, y


class Quadrant(nn.Module):
    """logits = 10 * (quadrant means); a linear model with parameters (so flag restoration is testable)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(SIDE * SIDE, 4)
        with torch.no_grad():
            self.linear.weight.copy_(10 * templates())
            self.linear.bias.zero_()

    def features(self, x: Tensor) -> Tensor:
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.features(x).flatten(1))


class Shattered(Quadrant):
    """Quantizes its input to 4 levels first: zero input gradient almost everywhere (a masking defence)."""

    def features(self, x: Tensor) -> Tensor:
        return torch.floor(x * 4) / 4


class Noisy(Quadrant):
    """Adds N(0, sigma^2) noise to the input, in eval mode too, from its own generator (never the global RNG)."""

    def __init__(self, sigma: float = 0.3, seed: int = 0) -> None:
        super().__init__()
        self.sigma = sigma
        self.gen = torch.Generator().manual_seed(seed)

    def features(self, x: Tensor) -> Tensor:
        return x + self.sigma * torch.randn(x.shape, generator=self.gen)


class Oracle:
    """The optimal L-inf attack on a Quadrant model, found without gradients: push the best wrong quadrant up and
    the true one down. Optionally only on samples listed in `only` (matched by content) or below `max_eps`."""

    uses_gradients = False

    def __init__(self, eps: float, only: Tensor | None = None, max_eps: float = float("inf")) -> None:
        self.eps = eps
        self.only = only
        self.max_eps = max_eps
        self.seen: list[Tensor] = []

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        self.seen.append(x.clone())
        w = templates()
        best = x.clone()
        with torch.no_grad():
            for j in range(4):
                d = (w[j] - w[y]).sign().view_as(x)
                cand = threat_model("linf", self.eps).project(x + self.eps * d, x)
                fooled = model(cand).argmax(1) != y
                best[fooled] = cand[fooled]
        keep = torch.zeros(len(x), dtype=torch.bool)  # rows left unperturbed
        if self.only is not None:
            keep = ~(x.flatten(1)[:, None, :] == self.only.flatten(1)[None]).all(-1).any(1)
        if self.eps > self.max_eps:
            keep[:] = True
        best[keep] = x[keep]
        return best


class WhiteBoxOracle(Oracle):
    """The same oracle, declared a white-box attack (for aggregation tests)."""

    uses_gradients = True


def distributed_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One Gloo rank of the distributed evaluation test: evaluate its shard, write the gathered result."""
    import json

    import torch.distributed as dist

    from gradguard.attacks import PGD
    from gradguard.evaluation import evaluate

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, y = quadrant_data(30)
        attacks = {"pgd": lambda eps: PGD(eps=eps, steps=5), "oracle": lambda eps: Oracle(eps, only=x[::3])}
        res = evaluate(Shattered(), x, y, attacks, eps=[0.1, 0.4], check_n=8)
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(res.to_dict(), f)
    finally:
        dist.destroy_process_group()


class Sleepy:
    """An attack that only takes time: `seconds` per call, the input returned unchanged."""

    uses_gradients = False

    def __init__(self, eps: float, seconds: float) -> None:
        self.eps = eps
        self.seconds = seconds

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        import time

        time.sleep(self.seconds)
        return x


def timing_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One Gloo rank evaluating with a `Sleepy` attack (0.4 s on each rank's shard)."""
    import json

    import torch.distributed as dist

    from gradguard.evaluation import evaluate

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, y = quadrant_data(8)
        res = evaluate(Quadrant(), x, y, {"sleepy": lambda eps: Sleepy(eps, 0.4)}, eps=[0.1], run_checks=False)
        with open(f"{out_dir}/timing{rank}.json", "w") as f:
            json.dump(res.to_dict(), f)
    finally:
        dist.destroy_process_group()
