"""The ``sgn`` recipe: adversarial training in which the network perturbs its own flow with its own gradient.

One step (see `gradguard.models.sgn` for the taps):

1. forward with the taps recording at the start point x0 (``start``: the clean image, a random point of the ball,
   or the PGD-k point that the ``pgd_at`` recipe trains on, crafted by the same code), in the crafting mode
   (``craft_mode``, eval by default: dropout off, BatchNorm statistics frozen; the start term's gradient is then
   the eval-mode network's),
2. one backward through the network for the loss gradient at every tap; in ``first_order`` mode the same backward
   also yields the clean term's parameter gradients, so the clean pass costs one forward and one backward in all,
3. the response modules turn (activation, gradient) into bounded perturbations (``refine_steps`` extra gradient
   steps may follow at the input),
4. forward on the self-perturbed flow.

The returned loss is ``perturbed CE + clean_weight * CE at x0`` (with ``start = "pgd"`` the second term is PGD-AT's
own loss: the self-gradient modules then ride on ordinary adversarial training, the "architecture" reading).
The backbone descends it; the response modules ascend it, either through a gradient reversal layer on their
parameters (``adversary = "reversal"``: the trainer's optimizer moves them, the sign is flipped) or by their own
Adam optimizer in alternating steps (``"alternating"``: the trainer's backward delivers the gradient at the
perturbation and the recipe takes an ascent step right then). With ``active_inference`` the exported network
keeps the input response active at test time (`gradguard.models.sgn_active`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from gradguard.models.sgn import INPUT_TAP, SelfGradientNetwork
from gradguard.models.sgn_active import ActiveSelfGradientNetwork, activate
from gradguard.threat import ThreatModel
from gradguard.training.craft import craft_in_mode
from gradguard.training.modes import CraftingSettings, mode_only
from gradguard.training.recipe import Recipe, StepContext, StepOutput

__all__ = ["SGNRecipe"]


class SGNConfig(CraftingSettings):
    taps: list[str] = Field(default_factory=lambda: [INPUT_TAP], min_length=1)
    """'input' and/or names of backbone submodules whose outputs are perturbed."""
    response: Literal["learned", "sign"] = "learned"
    adversary: Literal["reversal", "alternating"] = "reversal"
    reversal_scale: float = Field(1.0, ge=0)
    """Gradient reversal factor: the response parameters move by -scale times the backbone's update rule."""
    response_lr: float = Field(1e-3, gt=0)
    """Adam learning rate of the response modules in alternating mode."""
    create_graph: Literal["first_order", "second_order"] = "first_order"
    """first_order detaches the tap gradients; second_order lets the backbone learn through its own gradient."""
    clean_weight: float = Field(0.5, ge=0)
    step_scale: float = Field(1.0, gt=0)
    """Input perturbation = step_scale * eps * direction, then projected (Fast-AT uses 1.25 from a random start)."""
    start: Literal["clean", "random", "pgd"] = "clean"
    """Where the taps record: the clean image, a random point of the ball (Fast-AT style), or the PGD point that
    ``pgd_at`` crafts (``start_steps`` steps of ``start_alpha`` from a random start; each step one more
    forward+backward per batch). ``random_start = true`` is the old spelling of ``start = "random"``."""
    start_steps: int = Field(10, ge=1)
    start_alpha: float | None = Field(None, gt=0)
    """Absolute PGD step for ``start = "pgd"``; None = 2.5 * eps / start_steps (Madry et al.'s rule, as pgd_at)."""
    refine_steps: int = Field(1, ge=0)
    """Projected gradient steps after the response (each one more forward+backward per batch). Default 1: at MNIST
    eps 0.3 the response alone overfit catastrophically on every seed, one refinement step did not (docs/sgn.md)."""
    refine_alpha: float = Field(0.25, gt=0)
    """Refinement step size as a fraction of eps."""
    hidden_rho: float = Field(0.1, ge=0)
    """Hidden-tap bound: ||delta||_2 <= hidden_rho * ||activation||_2 per sample."""
    response_hidden: int = Field(8, ge=1)
    response_layers: int = Field(3, ge=1)
    sharpness: float = Field(10.0, gt=0)
    active_inference: bool = False
    """Export the network with its input response active at test time (`gradguard.models.sgn_active`): it moves
    each input against its own response by ``purify_scale * eps`` (the training eps) before classifying it.
    Training is unchanged; validation and the exported models are the active network. Needs the 'input' tap."""
    purify_scale: float = Field(1.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _random_start_alias(cls, data: Any) -> Any:
        """``random_start`` (bool) is kept as the old spelling of ``start``; both at once must agree."""
        if not isinstance(data, dict) or "random_start" not in data:
            return data
        data = dict(data)
        flag = data.pop("random_start")
        if not isinstance(flag, bool):
            raise ValueError(f"random_start must be true or false, got {flag!r} (the setting is now start = "
                             "'clean' | 'random' | 'pgd')")
        implied = "random" if flag else "clean"
        if data.setdefault("start", implied) != implied:
            raise ValueError(f"random_start = {str(flag).lower()} contradicts start = {data['start']!r}: "
                             "give only start")
        return data

    def start_step_size(self, eps: float) -> float:
        return self.start_alpha if self.start_alpha is not None else 2.5 * eps / self.start_steps

    @model_validator(mode="after")
    def _check(self) -> SGNConfig:
        if self.adversary == "alternating" and self.create_graph == "second_order":
            raise ValueError("adversary='alternating' needs create_graph='first_order'")
        if len(set(self.taps)) != len(self.taps):
            raise ValueError(f"duplicate taps in {self.taps}")
        if self.active_inference and INPUT_TAP not in self.taps:
            raise ValueError(f"active_inference moves the input with its response: taps must include 'input', "
                             f"got {self.taps}")
        return self


class SGNRecipe(Recipe):
    """Self-Gradient Network training; see the module docstring."""

    name: ClassVar[str] = "sgn"
    Config = SGNConfig
    config: SGNConfig  # set by Recipe.__init__

    def __init__(self, config: SGNConfig | None = None) -> None:
        super().__init__(config)
        self._optimizer: torch.optim.Adam | None = None
        self._pending_state: dict[str, Tensor] | None = None
        self._active: ActiveSelfGradientNetwork | None = None
        self._purify_at: tuple[float, str] = (0.0, "linf")

    # -- wrapping ----------------------------------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.Module:
        c = self.config
        if isinstance(model, SelfGradientNetwork):
            return model
        wrapped = SelfGradientNetwork(
            model,
            c.taps,
            response=c.response,
            hidden_rho=c.hidden_rho,
            response_hidden=c.response_hidden,
            response_layers=c.response_layers,
            sharpness=c.sharpness,
        )
        p = next(model.parameters(), None)
        if p is not None:
            wrapped.responses.to(device=p.device, dtype=p.dtype)
        return wrapped

    def unwrap(self, trained: nn.Module) -> nn.Module:
        """The backbone; with ``active_inference``, the backbone behind its purifier (shared modules, no copy)."""
        inner = getattr(trained, "module", trained)  # DistributedDataParallel
        if not isinstance(inner, SelfGradientNetwork):
            return inner
        if not self.config.active_inference:
            return inner.backbone
        if self._active is None or self._active.backbone is not inner.backbone:
            self._active = activate(inner, eps=0.0, scale=self.config.purify_scale)
            self._sync_purifier()
        return self._active

    def _sync_purifier(self) -> None:
        """The active network's purifier follows the last step's threat model (eps 0, the identity, before any)."""
        if self._active is not None:
            self._active.purifier.eps, self._active.purifier.norm = self._purify_at

    def counted(self, trained: nn.Module) -> nn.Module:
        """Training forwards run through the backbone, also when the exported network is the active one."""
        inner = getattr(trained, "module", trained)
        return inner.backbone if isinstance(inner, SelfGradientNetwork) else inner

    # -- the step ----------------------------------------------------------------------------------------------
    def step(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
        sgn = getattr(model, "module", model)
        if not isinstance(sgn, SelfGradientNetwork):
            raise TypeError(f"the sgn recipe trains a SelfGradientNetwork (from recipe.wrap), got {type(sgn).__name__}")
        c = self.config
        threat = ctx.threat
        self._purify_at = (threat.eps, threat.norm)  # the purifier steps by the eps training is at (ramped with it)
        self._sync_purifier()
        second = c.create_graph == "second_order"
        alternating = c.adversary == "alternating"

        # 1. forward with taps at the start point.
        x0 = self._start_point(sgn, x, y, threat, ctx.generator).detach().requires_grad_(True)
        with mode_only(sgn.backbone, c.craft_mode):  # the crafting pass: dropout off in eval mode
            logits0, acts = sgn.tap_forward(x0)
        loss0 = F.cross_entropy(logits0, y)
        tap_tensors = [acts[t] for t in sgn.taps]

        # 2. one backward: tap gradients (+ clean-term parameter gradients in first-order mode).
        params = [p for p in sgn.backbone.parameters() if p.requires_grad]
        use_clean = c.clean_weight > 0
        if second:
            tap_grads = torch.autograd.grad(loss0, tap_tensors, create_graph=True)
            clean_term = loss0
        else:
            wanted = tap_tensors + (params if use_clean else [])
            grads = torch.autograd.grad(loss0, wanted, allow_unused=True)
            tap_grads = tuple(g.detach() for g in grads[: len(tap_tensors)])
            # The clean term's parameter gradient, already computed: hand it to the trainer's backward through a
            # linear surrogate whose gradient is exactly that (value = clean loss, so logs stay meaningful).
            clean_term = loss0.detach()
            if use_clean:
                for p, g in zip(params, grads[len(tap_tensors):], strict=True):
                    if g is not None:
                        clean_term = clean_term + (p * g).sum() - (p.detach() * g).sum()
        grad_at = {t: g for t, g in zip(sgn.taps, tap_grads, strict=True)}
        act_at = {t: (a if second else a.detach()) for t, a in zip(sgn.taps, tap_tensors, strict=True)}
        if INPUT_TAP in act_at:
            act_at[INPUT_TAP] = x0 if second else x0.detach()

        # 3. responses.
        reversal = None if alternating else c.reversal_scale
        x_adv, deltas = sgn.perturbations(x, act_at, grad_at, threat, step_scale=c.step_scale, reversal=reversal)
        if INPUT_TAP not in sgn.taps:
            x_adv = x0.detach()  # hidden taps only: the flow is perturbed where the taps recorded it
        if alternating:
            x_adv, deltas = self._detach_for_ascent(sgn, x_adv, deltas)
        if c.refine_steps and INPUT_TAP in sgn.taps:
            x_adv = self._refine(sgn, x, x_adv, y, deltas, threat)

        # 4. forward on the self-perturbed flow.
        logits_adv = sgn.perturbed_forward(x_adv, deltas)
        loss_adv = F.cross_entropy(logits_adv, y)
        loss = loss_adv + c.clean_weight * clean_term if use_clean else loss_adv
        with torch.no_grad():
            logs = {
                "sgn_clean_loss": float(loss0.detach()),
                "sgn_adv_loss": float(loss_adv.detach()),
                "sgn_clean_acc": float((logits0.argmax(1) == y).float().mean()),
            }
            if INPUT_TAP in sgn.taps:
                logs["sgn_input_dist"] = float(threat.distance(x_adv.detach(), x).mean())
        return StepOutput(loss=loss, logits=logits_adv.detach(), logs=logs)

    def _start_point(self, sgn: SelfGradientNetwork, x: Tensor, y: Tensor, threat: ThreatModel,
                     generator: torch.Generator) -> Tensor:
        """x0: the clean batch, a random point of the ball, or the pgd_at recipe's PGD point (its own code)."""
        c = self.config
        if c.start == "random":
            return threat.random_init(x, generator)
        if c.start == "pgd":
            return craft_in_mode(sgn.backbone, x, y, threat, craft_mode=c.craft_mode, steps=c.start_steps,
                                 alpha=c.start_step_size(threat.eps), random_start=True, generator=generator)
        return x

    def _refine(
        self, sgn: SelfGradientNetwork, x: Tensor, x_adv: Tensor, y: Tensor, deltas: dict[str, Tensor], threat
    ) -> Tensor:
        """Extra projected gradient steps from the response output; the response keeps its gradient path."""
        fixed = {t: d.detach() for t, d in deltas.items()}
        cur = x_adv.detach()
        for _ in range(self.config.refine_steps):
            cur = cur.requires_grad_(True)
            with mode_only(sgn.backbone, self.config.craft_mode):
                loss = F.cross_entropy(sgn.perturbed_forward(cur, fixed), y)
            (g,) = torch.autograd.grad(loss, [cur])
            cur = threat.project(threat.step(cur.detach(), g, self.config.refine_alpha * threat.eps), x).detach()
        # Straight-through: the value is the refined point, the gradient reaches the response output unchanged.
        return threat.project(x_adv + (cur - x_adv.detach()), x)

    # -- alternating ascent ------------------------------------------------------------------------------------
    def _response_optimizer(self, sgn: SelfGradientNetwork) -> torch.optim.Adam | None:
        params = list(sgn.response_parameters())
        if not params:
            return None
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(params, lr=self.config.response_lr, maximize=True)
            if self._pending_state is not None:
                self._optimizer.load_state_dict(_unflatten_adam(self._pending_state, len(params), self._optimizer))
                self._pending_state = None
        return self._optimizer

    def _detach_for_ascent(
        self, sgn: SelfGradientNetwork, x_adv: Tensor, deltas: dict[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Cut the response outputs from the trainer's graph; the gradient arriving there drives an ascent step."""
        opt = self._response_optimizer(sgn)
        live = [x_adv] + [deltas[t] for t in sgn.hidden_taps]
        cut = [t.detach().requires_grad_(True) for t in live]
        if opt is None or not any(t.requires_grad for t in live):
            return cut[0], dict(zip(sgn.hidden_taps, cut[1:], strict=True))
        params = list(sgn.response_parameters())
        arrived: dict[int, Tensor] = {}

        def hook_for(i: int):
            def hook(g: Tensor) -> None:
                arrived[i] = g
                if len(arrived) == len(live):
                    pairs = [(live[j], arrived[j]) for j in range(len(live)) if live[j].requires_grad]
                    ga = torch.autograd.grad(
                        [p[0] for p in pairs], params, [p[1] for p in pairs], allow_unused=True
                    )
                    for p, gp in zip(params, ga, strict=True):
                        p.grad = gp
                    opt.step()
                    opt.zero_grad(set_to_none=True)

            return hook

        for i, t in enumerate(cut):
            t.register_hook(hook_for(i))
        return cut[0], dict(zip(sgn.hidden_taps, cut[1:], strict=True))

    # -- persistence -------------------------------------------------------------------------------------------
    def read_record(self, saved: dict[str, Any]) -> dict[str, Any]:
        """A record from before `start` existed: ``random_start`` was its spelling, and the settings added with it
        are inert at their defaults (start_steps/start_alpha act only with start = "pgd"), so such a run resumes."""
        if "random_start" not in saved:
            return saved
        record = {k: v for k, v in saved.items() if k != "random_start"}
        record["start"] = "random" if saved["random_start"] else "clean"
        defaults = SGNConfig().model_dump()
        for key in ("start_steps", "start_alpha", "active_inference", "purify_scale"):
            record.setdefault(key, defaults[key])
        return record

    def state_dict(self) -> dict[str, Tensor]:
        state = dict(self._pending_state or {}) if self._optimizer is None else _flatten_adam(self._optimizer)
        if self.config.active_inference:  # a resume that takes no step (a finished run) must export the same purifier
            eps, norm = self._purify_at
            state[_PURIFY_KEY] = torch.tensor([eps, float(norm == "l2")], dtype=torch.float64)
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        state = dict(state)
        purify = state.pop(_PURIFY_KEY, None)
        if purify is not None:
            self._purify_at = (float(purify[0]), "l2" if float(purify[1]) else "linf")
            self._sync_purifier()
        if not state:
            return
        if self.config.adversary != "alternating":
            raise ValueError(
                f"sgn recipe with adversary={self.config.adversary!r} carries no state, got {sorted(state)}"
            )
        if self._optimizer is None:
            self._pending_state = dict(state)  # applied when the optimizer is built on the first step
        else:
            n = len(self._optimizer.param_groups[0]["params"])
            self._optimizer.load_state_dict(_unflatten_adam(state, n, self._optimizer))


_PURIFY_KEY = "purify_at"  # (eps, 1.0 for l2) of the last step: the active network's purifier


def _flatten_adam(opt: torch.optim.Adam) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for i, s in opt.state_dict()["state"].items():
        for k, v in s.items():
            out[f"adam.{i}.{k}"] = v.detach().clone() if isinstance(v, Tensor) else torch.tensor(v)
    return out


def _unflatten_adam(flat: dict[str, Tensor], n_params: int, opt: torch.optim.Adam) -> dict[str, Any]:
    state: dict[int, dict[str, Tensor]] = {}
    for key, v in flat.items():
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "adam" or not parts[1].isdigit():
            raise ValueError(f"unexpected sgn recipe state key {key!r}: expected 'adam.<index>.<field>'")
        i = int(parts[1])
        if i >= n_params:
            raise ValueError(f"sgn recipe state names parameter {i} but the response modules have {n_params}")
        state.setdefault(i, {})[parts[2]] = v.detach().clone()  # never share tensors with the caller
    sd = opt.state_dict()
    return {"state": state, "param_groups": sd["param_groups"]}
