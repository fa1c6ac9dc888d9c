"""The ``free_at`` recipe: "Adversarial Training for Free!" (Shafahi et al., NeurIPS 2019).

Each batch is replayed ``m`` times (the trainer calls `step` ``replays`` times, each followed by an optimizer step).
One backward gives both the parameter gradient and the input gradient; the input gradient updates a perturbation
that persists across replays *and* batches: delta <- clip(delta + step * sign(g), -eps, eps), step = eps. Published
settings: m = 8 on CIFAR-10 with the epoch count divided by m (set ``train.epochs`` accordingly). The update runs in a
gradient hook during the trainer's backward, so after every optimizer step the recipe state (delta) is complete and a
checkpoint resumes exactly.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from gradguard.training.recipe import Recipe, StepContext, StepOutput

__all__ = ["FreeATRecipe", "FreeATConfig"]


class FreeATConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    m: int = Field(8, ge=1)  # replays of each batch
    step_ratio: float = Field(1.0, gt=0)  # delta step = step_ratio * eps (Shafahi et al.: eps)


def _project_delta(delta: Tensor, norm: str, eps: float) -> Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    flat = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (delta.dim() - 1)))
    return delta * (eps / flat).clamp(max=1.0)


def _step_delta(delta: Tensor, grad: Tensor, norm: str, alpha: float) -> Tensor:
    if norm == "linf":
        return delta + alpha * grad.sign()
    g = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
    return delta + alpha * grad / g


class FreeATRecipe(Recipe):
    name: ClassVar[str] = "free_at"
    Config = FreeATConfig
    config: FreeATConfig

    def __init__(self, config: FreeATConfig | None = None) -> None:
        super().__init__(config)
        self.replays = self.config.m
        self.delta: Tensor | None = None

    def _delta_for(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        if self.delta is None or self.delta.shape[1:] != x.shape[1:]:
            self.delta = torch.zeros_like(x)
        self.delta = self.delta.to(device=x.device, dtype=x.dtype)
        if self.delta.shape[0] < n:  # a bigger batch than before: new rows start at zero
            pad = torch.zeros((n - self.delta.shape[0], *x.shape[1:]), device=x.device, dtype=x.dtype)
            self.delta = torch.cat([self.delta, pad])
        return self.delta[:n]

    def step(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
        eps, norm = ctx.threat.eps, ctx.threat.norm
        n = x.shape[0]
        d = _project_delta(self._delta_for(x), norm, eps).clone().requires_grad_(True)
        alpha = self.config.step_ratio * eps

        def update(grad: Tensor) -> None:
            with torch.no_grad():
                new = _project_delta(_step_delta(d.detach(), grad, norm, alpha), norm, eps)
                assert self.delta is not None
                self.delta[:n] = new

        d.register_hook(update)
        logits = model((x + d).clamp(0.0, 1.0))
        loss = F.cross_entropy(logits, y)
        return StepOutput(loss=loss, logits=logits)

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.delta is None else {"delta": self.delta.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        unknown = set(state) - {"delta"}
        if unknown:
            raise ValueError(f"recipe 'free_at' state has unknown keys {sorted(unknown)}")
        self.delta = state["delta"].clone() if "delta" in state else None
