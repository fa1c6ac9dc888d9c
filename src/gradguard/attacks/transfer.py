"""Transfer attack: craft adversarials with any attack on a surrogate model, then hand them to the target.

The target is never differentiated (nor even run, except by the evaluator), which makes this the black-box check
for defences whose own gradients are unreliable.
"""

from __future__ import annotations

from torch import Tensor

from gradguard.attacks.base import Attack, Model

__all__ = ["Transfer"]


class Transfer(Attack):
    """``Transfer(attack=PGD(eps=0.3), surrogate=other_model)``; ``transfer(target_model, x, y) -> x_adv``."""

    name = "transfer"
    uses_gradients = False

    def __init__(self, *, attack: Attack, surrogate: Model) -> None:
        # channels_last=False: the target is never run here, so its weights are left alone.
        super().__init__(eps=attack.eps, norm=attack.norm, targeted=attack.targeted, channels_last=False)
        self.attack = attack
        self.surrogate = surrogate

    def __repr__(self) -> str:
        return f"Transfer(attack={self.attack!r})"

    def _perturb(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        saved = self.attack.eps
        self.attack.eps = self.eps  # a sweep sets eps on the wrapper; the inner attack follows
        try:
            x_adv = self.attack(self.surrogate, x, y, target=target)
        finally:
            self.attack.eps = saved
        # The work was spent on the surrogate; report it (the target saw no queries).
        self.last_grad_evals = self.attack.last_grad_evals
        self.last_forward_evals = self.attack.last_forward_evals
        return x_adv
