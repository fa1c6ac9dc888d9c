"""Attacks that run another attack (Transfer, BPDA): the inner attack's eps follows the wrapper's, its work is
the wrapper's.

A sweep sets `eps` on the wrapper only; the inner attack is run at that radius and handed back with its own eps
untouched, also on error, and the gradient and forward evaluations it spent are reported as this call's.
"""

from __future__ import annotations

from torch import Tensor

from gradguard.attacks.base import Attack, Model

__all__ = ["WrappingAttack"]


class WrappingAttack(Attack):
    """Base class of an attack built around `attack`; subclasses call `_run_inner` from `_perturb`."""

    def __init__(self, *, attack: Attack, eot: int = 1, channels_last: bool | None = None) -> None:
        """eps, norm and targeted are the inner attack's; `eot`: the draws a sweep scores the result with."""
        self.attack = attack
        super().__init__(
            eps=attack.eps, norm=attack.norm, targeted=attack.targeted, eot=eot, channels_last=channels_last
        )

    def _takes_per_sample_eps(self) -> bool:
        return self.attack._takes_per_sample_eps()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(attack={self.attack!r})"

    def _run_inner(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """The inner attack's result on `model` at this wrapper's eps; the inner eps is restored afterwards."""
        saved = self.attack.eps
        self.attack.eps = self.eps
        try:
            x_adv = self.attack(model, x, y, target=target)
        finally:
            self.attack.eps = saved
        self.last_grad_evals = self.attack.last_grad_evals
        self.last_forward_evals = self.attack.last_forward_evals
        return x_adv
