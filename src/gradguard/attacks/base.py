"""Common plumbing of every attack: the `Attack` base class (`eval_mode` lives in `gradguard.module_state`).

An attack is built with keyword hyperparameters and called as ``attack(model, x, y) -> x_adv``. The base class
owns what every attack must get right and nobody should re-implement: putting the model in eval mode and freezing
its parameters (restoring both afterwards, advertorch-style), a private random generator (the global RNG is never
touched), EOT-batched gradients, and counting the gradient and forward evaluations spent.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import TypedDict

import torch
from torch import Tensor

from gradguard.gradients import forward_scores, input_gradient
from gradguard.inputs import check_attack_inputs, check_eps, check_label_range, explain_index_error
from gradguard.layout import channels_last_input, is_layout_error, wants_channels_last
from gradguard.losses import LossFn, success
from gradguard.module_state import Model, eval_mode
from gradguard.threat import Norm, ThreatModel, normalize_norm, threat_model

__all__ = ["Attack", "AttackOptions", "eval_mode", "Model"]


class AttackOptions(TypedDict, total=False):
    """The keywords every attack takes besides its own hyperparameters; the defaults are `Attack.__init__`'s.

    An attack declares ``**options: Unpack[AttackOptions]`` and hands them to the base class, so the options live
    here once while a type checker still sees each keyword (``PGD(eps=0.3, eot="20")`` is a type error).
    """

    targeted: bool  # aim at a `target` given at call time (the targeted form of the loss)
    eot: int  # gradients and predictions averaged over this many draws of a randomized model
    chunk_size: int | None  # rows per forward pass (None: automatic)
    seed: int | None  # the private generator's seed (None: fresh OS entropy)
    generator: torch.Generator | None  # or a generator of the caller's, advanced by every call
    channels_last: bool | None  # feed channels-last inputs (None: for conv nets on CPU)


def _bshape(v: Tensor, like: Tensor) -> Tensor:
    """View a per-sample vector so it broadcasts against a batch shaped like `like`."""
    return v.view(-1, *([1] * (like.dim() - 1)))


class _Best:
    """Per-sample best point with priority (success, loss), kept for an active subset and merged globally."""

    def __init__(self, x: Tensor) -> None:
        n = x.shape[0]
        self.x = x.clone()
        self.loss = torch.full((n,), float("-inf"), device=x.device, dtype=x.dtype)
        self.ok = torch.zeros(n, dtype=torch.bool, device=x.device)

    @staticmethod
    def better(ok: Tensor, loss: Tensor, best_ok: Tensor, best_loss: Tensor, first: bool) -> Tensor:
        """Rows where (ok, loss) beats (best_ok, best_loss); with `first` a success is never replaced."""
        same = ok == best_ok
        if first:
            same = same & ~best_ok
        return (ok & ~best_ok) | (same & (loss > best_loss))

    def merge(self, idx: Tensor, x: Tensor, loss: Tensor, ok: Tensor, first: bool) -> None:
        upd = self.better(ok, loss, self.ok[idx], self.loss[idx], first)
        rows = idx[upd]
        self.x[rows] = x[upd]
        self.loss[rows] = loss[upd]
        self.ok[rows] = ok[upd]


class Attack:
    """Base class: keyword hyperparameters in, ``__call__(model, x, y, target=None) -> x_adv`` out.

    Subclasses implement `_perturb(model, x, y, target)` and use `self._grad` / `self._scores` so that EOT,
    chunking and evaluation counting happen in one place. After a call, `last_grad_evals` is the number of
    per-sample input gradients computed (every EOT draw counted), `last_forward_evals` the number of per-sample
    forward-only evaluations (draws counted), and `last_wall_s` the wall time.
    """

    name = "attack"
    uses_gradients = True
    #: Whether `eps` may be a tensor of shape (N,), one radius per sample (the attack's maths reads it per row).
    per_sample_eps = False
    #: Minimal-perturbation attacks (CW-L2) are run once and clipped to every epsilon of a sweep.
    minimal = False

    def __init__(
        self,
        *,
        eps: float | Tensor | None = None,
        norm: str = "linf",
        targeted: bool = False,
        eot: int = 1,
        chunk_size: int | None = None,
        seed: int | None = 0,
        generator: torch.Generator | None = None,
        channels_last: bool | None = None,
    ) -> None:
        if int(eot) < 1:
            raise ValueError(f"eot must be >= 1, got {eot}")
        check_eps(eps)  # PGD(eps="0.3") is a mistake, not a radius
        self.norm = norm  # the setter normalises the spelling
        self.eps: float | Tensor | None = eps if eps is None or isinstance(eps, Tensor) else float(eps)
        self._check_per_sample_eps()
        if self.eps is not None:
            threat_model(norm, self.eps)  # validates norm and eps early, with a clear message
        self.targeted = bool(targeted)
        self.eot = int(eot)
        self.chunk_size = chunk_size
        self.seed = seed
        self.generator = generator
        self.channels_last = channels_last
        self.last_grad_evals = 0
        self.last_forward_evals = 0
        self.last_wall_s = 0.0
        self._gen: torch.Generator | None = None
        self._channels_last = False  # this call's layout choice, set by __call__

    # ----------------------------------------------------------------------------------------------- public API
    def __repr__(self) -> str:
        keys = ("eps", "norm", "steps", "n_queries", "alpha", "restarts", "loss", "eot", "targeted")
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in keys if hasattr(self, k))
        return f"{type(self).__name__}({args})"

    def settings(self) -> dict[str, object]:
        """The attributes a record keeps (the evaluator filters private and per-call ones), the norm included."""
        return {**vars(self), "norm": self.norm}

    @property
    def norm(self) -> Norm:
        """The canonical norm ("linf" or "l2"), whatever spelling was passed in or assigned later."""
        return self._norm

    @norm.setter
    def norm(self, value: str) -> None:
        self._norm: Norm = normalize_norm(value)

    @property
    def threat(self) -> ThreatModel:
        if self.eps is None:
            raise ValueError(f"{type(self).__name__} needs eps")
        return threat_model(self.norm, self.eps)

    def __call__(self, model: Model, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> Tensor:
        """Adversarial examples for `x` (labels `y`), within this attack's ball and the [0, 1] box."""
        if self.targeted and target is None and not self._picks_targets():
            raise ValueError(f"{type(self).__name__}(targeted=True) needs target= (a class per sample)")
        self._label_max = check_attack_inputs(x, y, self.eps, target=target, model=model)  # before any work
        self._check_per_sample_eps(x.shape[0])
        t0 = time.perf_counter()
        self._start(x.device)
        start_state = self._gen.get_state()  # type: ignore[union-attr]  # a passed-in generator is advanced
        x = x.detach()
        y = y.detach()
        target = None if target is None else target.detach()
        self._channels_last = self._use_channels_last(model, x)
        try:
            with eval_mode(model):
                if x.shape[0] == 0:
                    return x.clone()
                try:
                    x_adv = self._perturb(model, x, y, target)
                except RuntimeError as err:
                    if not (self._channels_last and self.channels_last is None and is_layout_error(err)):
                        raise
                    # The automatic choice met a model that needs NCHW activations (e.g. `x.view(n, -1)` after a
                    # multi-channel conv). Start over in the model's own layout, from the same seed.
                    warnings.warn(
                        f"{type(self).__name__}: the model failed on channels-last activations ({err}); rerunning "
                        "the attack in its own layout (pass channels_last=False to skip the attempt)",
                        stacklevel=2,
                    )
                    self._channels_last = False
                    self._start(x.device)
                    self._gen.set_state(start_state)  # type: ignore[union-attr]
                    x_adv = self._perturb(model, x, y, target)
        except (IndexError, RuntimeError) as exc:
            explain_index_error(model, x, y, exc)  # a label >= the model's outputs, said as such
            raise
        finally:
            self._gen = None
            self._channels_last = False
            self.last_wall_s = time.perf_counter() - t0
        return x_adv.detach()

    def sweep(
        self, model: Model, x: Tensor, y: Tensor, epsilons: Sequence[float], *, target: Tensor | None = None
    ) -> tuple[list[Tensor], Tensor]:
        """Foolbox-style: adversarials for every epsilon and a success tensor of shape (len(epsilons), N).

        Success uses this attack's own prediction (k draws when eot > 1); an evaluator may re-check it with its
        own m-draw protocol. Minimal-perturbation attacks run once and are clipped to each epsilon.
        """
        advs: list[Tensor] = []
        saved = self.eps
        grad_evals = forward_evals = 0
        try:
            if self.minimal:
                self.eps = None
                base = self(model, x, y, target=target)
                grad_evals, forward_evals = self.last_grad_evals, self.last_forward_evals
                for e in epsilons:
                    advs.append(threat_model(self.norm, float(e)).project(base, x))
            else:
                for e in epsilons:
                    self.eps = float(e)
                    advs.append(self(model, x, y, target=target))
                    grad_evals += self.last_grad_evals
                    forward_evals += self.last_forward_evals
        finally:
            self.eps = saved
        with eval_mode(model):
            self._gen = self._make_generator(x.device)
            ok = torch.stack([self._success(self._scores(model, a), y, target) for a in advs])
            self._gen = None
        self.last_grad_evals, self.last_forward_evals = grad_evals, forward_evals
        return advs, ok

    # ------------------------------------------------------------------------------------------ for subclasses
    def _takes_per_sample_eps(self) -> bool:
        return self.per_sample_eps

    def _check_per_sample_eps(self, n: int | None = None) -> None:
        """A tensor eps only where the attack reads it per sample, shaped (N,) for a batch of N."""
        eps = self.eps
        if not isinstance(eps, Tensor):
            return
        name = type(self).__name__
        if not self._takes_per_sample_eps():
            raise ValueError(f"{name} takes one eps for the whole batch (a number), got a tensor of shape "
                             f"{tuple(eps.shape)}; FGSM, PGD, CWLinf, APGD, APGDT and CWL2 take one per sample")
        if eps.dim() != 1 or (n is not None and eps.shape[0] != n):
            expected = "(N,)" if n is None else f"({n},) for a batch of {n}"
            raise ValueError(f"{name}: a per-sample eps must have shape {expected}, got {tuple(eps.shape)}")

    def _perturb(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _picks_targets(self) -> bool:
        """True for attacks that choose their own target classes (APGD-T)."""
        return False

    def _start(self, device: torch.device) -> None:
        """Reset the per-call counters and take this call's generator."""
        self.last_grad_evals = 0
        self.last_forward_evals = 0
        self._gen = self._make_generator(device)

    def _use_channels_last(self, model: Model, x: Tensor) -> bool:
        return wants_channels_last(model, x) if self.channels_last is None else bool(self.channels_last)

    def _in_layout(self, model: Model) -> Model:
        """The model as this call runs it: fed channels-last inputs when the call chose that layout."""
        return channels_last_input(model, self._channels_last)

    def _make_generator(self, device: torch.device) -> torch.Generator:
        if self.generator is not None:
            return self.generator
        g = torch.Generator(device=device)
        if self.seed is None:
            g.seed()  # fresh entropy from the OS, still without touching the global RNG
        else:
            g.manual_seed(int(self.seed))
        return g

    @property
    def gen(self) -> torch.Generator:
        if self._gen is None:
            raise RuntimeError("the attack's generator is only available during a call")
        return self._gen

    def _grad(
        self, model: Model, x: Tensor, y: Tensor, loss_fn: LossFn, target: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(grad, per-sample loss, scores) at `x`, EOT-averaged, counted."""
        self.last_grad_evals += x.shape[0] * self.eot
        return input_gradient(  # type: ignore[return-value]
            self._in_layout(model), x, y, loss_fn, eot=self.eot, chunk_size=self.chunk_size, target=target,
            return_scores=True,
        )

    def _scores(self, model: Model, x: Tensor) -> Tensor:
        """Prediction scores at `x` (k-draw averaged softmax when eot > 1), counted."""
        self.last_forward_evals += x.shape[0] * self.eot
        return forward_scores(self._in_layout(model), x, eot=self.eot, chunk_size=self.chunk_size)[0]

    def _scores_loss(
        self, model: Model, x: Tensor, y: Tensor, loss_fn: LossFn, target: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """(scores, per-sample loss) at `x` without gradients, counted."""
        self.last_forward_evals += x.shape[0] * self.eot
        s, loss = forward_scores(
            self._in_layout(model), x, eot=self.eot, chunk_size=self.chunk_size, y=y, loss_fn=loss_fn,
            target=target,
        )
        assert loss is not None
        return s, loss

    def _success(self, scores: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """Untargeted: prediction left `y`; targeted (user-given `target`): prediction reached it."""
        # a label >= n_classes would make every point look fooled (an int compare: no device sync per step)
        check_label_range(getattr(self, "_label_max", y), scores.shape[-1])
        return success(scores, y, target if self.targeted else None)

    def _trusts_clean_check(self) -> bool:
        """Whether a clean point this attack sees as fooled may stand as its result.

        Only with one deterministic draw. Under EOT the check is a noisy k-draw estimate: kept with priority, the
        clean point would shadow every adversarial point found later, and the evaluator's m-draw prediction could
        still classify it correctly. PGD, APGD, APGD-T and Square all ask here.
        """
        return self.eot == 1

    def _clean_start(
        self, model: Model, x: Tensor, y: Tensor, loss_fn: LossFn, target: Tensor | None
    ) -> _Best:
        """Best points seeded with the clean inputs when the clean check is trusted, so that a point already
        misclassified needs no attack; under EOT nothing is seeded (`_trusts_clean_check`)."""
        best = _Best(x)
        if self._trusts_clean_check():
            scores, loss = self._scores_loss(model, x, y, loss_fn, target if self.targeted else None)
            every = torch.arange(x.shape[0], device=x.device)
            best.merge(every, x, loss, self._success(scores, y, target), first=True)
        return best

    def _to_attack(self, done: Tensor) -> Tensor:
        """Indices of the samples a (re)start must attack.

        With one draw (`eot == 1`) a point already misclassified needs no work. With EOT the success check is itself
        a noisy k-draw estimate: a point it calls fooled may still be classified correctly by the evaluator's m-draw
        prediction, so every point is attacked and the best point per sample decides.
        """
        if not self._trusts_clean_check():
            return torch.arange(done.shape[0], device=done.device)
        return (~done).nonzero().squeeze(1)
