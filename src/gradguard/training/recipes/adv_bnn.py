"""Adv-BNN (Liu et al., ICLR 2019): a Bayesian network trained on the ELBO, optionally on PGD examples.

loss = mean over n draws of CE(model(x_adv or x), y) + kl_weight * KL(q || p) / N_train.
The model must carry Bayesian layers (`gradguard.models.randomize(model, "bayes")`) for the KL to be non-zero.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from gradguard.draws import forward_replicas
from gradguard.training.recipe import Recipe, StepContext, StepOutput
from gradguard.training.recipes.graddiv import craft_pgd, elbo_kl, training_set_size

__all__ = ["AdvBNNRecipe"]


class AdvBNNRecipe(Recipe):
    name: ClassVar[str] = "adv_bnn"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        adversarial: bool = Field(True, description="CE on PGD examples (Adv-BNN) instead of clean inputs (BNN)")
        pgd_steps: int = Field(10, ge=1)
        pgd_alpha: float | None = Field(None, gt=0.0, description="None: 2.5 * eps / pgd_steps")
        pgd_eot: int = Field(1, ge=1, description="EOT draws per PGD gradient while crafting")
        n_draws: int = Field(1, ge=1, description="weight samples per input for the CE (independent draws)")
        kl_weight: float = Field(1.0, ge=0.0, description="1.0 is the true ELBO; Adv-BNN tunes it")
        n_train: int | None = Field(None, ge=1, description="None reads the training-set size (dividing the KL) "
                                    "from the data; a set value must agree with it")

    config: Config  # set by Recipe.__init__ (validated settings; defaults when none are given)

    def step(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
        cfg = self.config
        x_in = x
        if cfg.adversarial:
            x_in = craft_pgd(model, x, y, ctx, steps=cfg.pgd_steps, alpha=cfg.pgd_alpha, eot=cfg.pgd_eot)
        n = cfg.n_draws
        logits = forward_replicas(model, x_in.repeat_interleave(n, dim=0), n) if n > 1 else model(x_in)
        ce = F.cross_entropy(logits, y.repeat_interleave(n, dim=0) if n > 1 else y)
        kl = elbo_kl(model, cfg.kl_weight, training_set_size(cfg.n_train, ctx))
        report = logits.view(x.shape[0], n, -1).mean(1)
        return StepOutput(
            loss=ce + kl,
            logits=report.detach(),
            logs={"ce": ce.item(), "kl_term": float(kl.detach())},
        )
