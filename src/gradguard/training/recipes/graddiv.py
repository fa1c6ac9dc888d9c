"""GradDiv: a base loss (standard, PGD-AT or Adv-BNN's ELBO) plus lambda times a gradient-concentration penalty.

For every input of the batch the randomized model is run on n replicas in ONE forward pass (it draws independently
per input), the per-draw input gradients are taken with `create_graph=True`, and their concentration (see
`gradguard.graddiv`) is added to the base loss. The base cross-entropy reuses the logits of the same n draws.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from gradguard.graddiv import draw_gradients, graddiv_penalty, mean_resultant_length, unit_directions
from gradguard.training.craft import craft_in_mode
from gradguard.training.recipe import Recipe, StepContext, StepOutput

__all__ = ["GradDivRecipe", "craft_pgd", "ramp", "training_set_size"]

Base = Literal["standard", "pgd_at", "elbo", "adv_elbo"]
_ADVERSARIAL_BASES = ("pgd_at", "adv_elbo")


def ramp(weight: float, progress: float, warmup: float) -> float:
    """Linear warm-up of `weight` over the first `warmup` fraction of training (no warm-up when 0)."""
    if warmup <= 0:
        return weight
    return weight * min(1.0, max(0.0, progress) / warmup)


def craft_pgd(
    model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext, *, steps: int, alpha: float | None, eot: int
) -> Tensor:
    """Training-time PGD in the step's threat model (alpha defaults to 2.5 eps / steps), randomness from ctx.

    Every sample is attacked for all `steps` and the last iterate returned (`training.craft.pgd_maximize`), as
    PGD-AT does; the evaluation `attacks.PGD` would leave samples misclassified at their clean point untouched
    (early in training, almost all of them). Crafted in eval mode with frozen parameters, restored afterwards.
    """
    alpha = alpha if alpha is not None else 2.5 * ctx.threat.eps / steps
    return craft_in_mode(model, x, y, ctx.threat, craft_mode="eval", steps=steps, alpha=alpha, random_start=True,
                         generator=ctx.generator, eot=eot)


def training_set_size(configured: int | None, ctx: StepContext) -> int:
    """N_train for the ELBO's KL / N_train: the size of the data the trainer feeds (`ctx.n_train`).

    A hand-set `configured` value is accepted only where it agrees with the data (a mismatch would scale the KL
    wrongly without a word), and is needed only when the caller of `step` does not know the data's size."""
    if ctx.n_train is None:
        if configured is None:
            raise ValueError("recipe_args.n_train: the step context does not carry the training-set size, so set "
                             "n_train to the number of training images")
        return configured
    if configured is not None and configured != ctx.n_train:
        raise ValueError(f"recipe_args.n_train = {configured} disagrees with the training set's {ctx.n_train} "
                         f"images (data.train_subset / val_size): drop n_train, it is read from the data")
    return ctx.n_train


def elbo_kl(model: nn.Module, kl_weight: float, n_train: int) -> Tensor:
    """Adv-BNN's KL term kl_weight * KL(q || p) / N_train (zero for a model without Bayesian layers)."""
    from gradguard.models import kl_divergence

    return kl_weight * kl_divergence(model) / n_train


class GradDivRecipe(Recipe):
    name: ClassVar[str] = "graddiv"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        #: "eot" is gradguard's extension beyond the GradDiv paper (`graddiv.eot_energy_share`).
        regularizer: Literal["mrl", "cos", "kappa", "det", "eot"] = "mrl"
        lam: float = Field(1.0, ge=0.0, description="weight of the GradDiv term")
        n_draws: int = Field(4, ge=2, description="sample models per input (replicas in one batched pass)")
        warmup: float = Field(0.0, ge=0.0, le=1.0, description="fraction of training over which lam ramps up")
        det_ridge: float = Field(1e-3, gt=0.0, description="ridge added to the Gram matrix for 'det'")
        base: Base = "standard"
        #: where the GradDiv term is taken for adversarial bases: on the PGD examples or the clean inputs.
        graddiv_on: Literal["adv", "clean"] = "adv"
        pgd_steps: int = Field(10, ge=1)
        pgd_alpha: float | None = Field(None, gt=0.0, description="None: 2.5 * eps / pgd_steps")
        pgd_eot: int = Field(1, ge=1, description="EOT draws per PGD gradient while crafting")
        kl_weight: float = Field(1.0, ge=0.0, description="ELBO bases: weight of KL / n_train")
        n_train: int | None = Field(None, ge=1, description="ELBO bases: None reads the training-set size from "
                                    "the data; a set value must agree with it")

    config: Config  # set by Recipe.__init__ (validated settings; defaults when none are given)

    def wrap(self, model: nn.Module) -> nn.Module:
        from gradguard.models import is_randomized

        if not is_randomized(model):
            raise ValueError(
                "recipe 'graddiv' needs a randomized model (set [model] randomization, e.g. 'noise' or 'bayes'): "
                "the draws of a deterministic model all share one gradient, so there is nothing to scatter"
            )
        return model

    def step(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
        cfg = self.config
        lam = ramp(cfg.lam, ctx.progress, cfg.warmup)
        adversarial = cfg.base in _ADVERSARIAL_BASES
        x_base = x
        if adversarial:
            x_base = craft_pgd(model, x, y, ctx, steps=cfg.pgd_steps, alpha=cfg.pgd_alpha, eot=cfg.pgd_eot)
        x_reg = x_base if (adversarial and cfg.graddiv_on == "adv") else x

        grads, logits, loss = draw_gradients(
            model, x_reg, y, cfg.n_draws, create_graph=lam > 0, retain_graph=x_reg is x_base
        )
        if x_reg is x_base:
            base = loss.mean()  # CE averaged over the same n draws
            report_logits = logits.mean(1)
        else:
            report_logits = model(x_base)
            base = F.cross_entropy(report_logits, y)

        logs: dict[str, float] = {"graddiv_lam": lam, "base_loss": base.item()}
        total = base
        if cfg.base in ("elbo", "adv_elbo"):
            kl = elbo_kl(model, cfg.kl_weight, training_set_size(cfg.n_train, ctx))
            total = total + kl
            logs["kl_term"] = float(kl.detach())
        if lam > 0:
            penalty = graddiv_penalty(cfg.regularizer, grads, ridge=cfg.det_ridge)
            total = total + lam * penalty
            logs["graddiv_penalty"] = penalty.item()
        with torch.no_grad():
            logs["graddiv_mrl"] = mean_resultant_length(unit_directions(grads.detach())).mean().item()
        return StepOutput(loss=total, logits=report_logits.detach(), logs=logs)
