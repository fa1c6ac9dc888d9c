"""Transfer attack: craft adversarials with any attack on a surrogate model, then hand them to the target.

The target is never differentiated (nor even run, except by the evaluator), which makes this the black-box check
for defences whose own gradients are unreliable.
"""

from __future__ import annotations

from torch import Tensor

from gradguard.attacks.base import Attack, Model
from gradguard.attacks.wrapping import WrappingAttack

__all__ = ["Transfer"]


class Transfer(WrappingAttack):
    """``Transfer(attack=PGD(eps=0.3), surrogate=other_model)``; ``transfer(target_model, x, y) -> x_adv``."""

    name = "transfer"
    uses_gradients = False

    def __init__(self, *, attack: Attack, surrogate: Model) -> None:
        # channels_last=False: the target is never run here, so its weights are left alone.
        super().__init__(attack=attack, channels_last=False)
        self.surrogate = surrogate

    def _perturb(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        # The work is spent on the surrogate and reported as this call's (the target saw no queries).
        return self._run_inner(self.surrogate, x, y, target)
