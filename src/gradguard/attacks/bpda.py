"""BPDA attack wrapper (Athalye et al., ICML 2018): attack through non-differentiable parts of a model.

During the attack, every submodule of the model matched by `modules` (a type, tuple of types or predicate) is
replaced by a `BPDAWrapper` whose forward is the original module and whose backward is `approx` (identity by
default); after the attack the original modules are put back. Alternatively `preprocess` names a function applied
to inputs before the model (e.g. JPEG or bit-depth reduction done outside it); it is applied exactly in the
forward pass and approximated in the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from gradguard.attacks.base import Attack, Model
from gradguard.gradients import BPDAWrapper, bpda

__all__ = ["BPDA"]

Matcher = type | tuple[type, ...] | Callable[[nn.Module], bool]


def _matches(m: nn.Module, modules: Matcher) -> bool:
    if isinstance(modules, type | tuple):
        return isinstance(m, modules)
    return bool(modules(m))


class BPDA(Attack):
    """``BPDA(attack=PGD(eps=0.3), modules=Quantize, approx=None)`` or ``BPDA(attack=..., preprocess=fn)``."""

    name = "bpda"

    def __init__(
        self,
        *,
        attack: Attack,
        modules: Matcher | None = None,
        preprocess: Callable[[Tensor], Tensor] | None = None,
        approx: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if (modules is None) == (preprocess is None):
            raise ValueError("BPDA needs exactly one of modules= (submodules to bypass) or preprocess= (a function)")
        super().__init__(
            eps=attack.eps, norm=attack.norm, targeted=attack.targeted, eot=attack.eot,
            channels_last=attack.channels_last,  # the inner attack's choice rules
        )
        self.attack = attack
        self.modules = modules
        self.preprocess = preprocess
        self.approx = approx

    def __repr__(self) -> str:
        return f"BPDA(attack={self.attack!r})"

    def _perturb(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        saved = self.attack.eps
        self.attack.eps = self.eps
        swapped: list[tuple[nn.Module, str, nn.Module]] = []
        try:
            if self.preprocess is not None:
                pre = bpda(self.preprocess, self.approx)
                run = self._in_layout(model)  # the inner attack sees a plain function: this call picks the layout

                def attacked(z: Tensor) -> Tensor:
                    return run(pre(z))

                x_adv = self.attack(attacked, x, y, target=target)
            else:
                if not isinstance(model, nn.Module):
                    raise TypeError("BPDA(modules=...) needs an nn.Module model")
                for parent in list(model.modules()):
                    for name, child in list(parent.named_children()):
                        if _matches(child, self.modules):  # type: ignore[arg-type]
                            swapped.append((parent, name, child))
                if not swapped:
                    raise ValueError(f"BPDA: no submodule of {type(model).__name__} matches {self.modules!r}")
                for parent, name, child in swapped:
                    setattr(parent, name, BPDAWrapper(child, self.approx))
                x_adv = self.attack(model, x, y, target=target)
        finally:
            for parent, name, child in swapped:
                setattr(parent, name, child)
            self.attack.eps = saved
        self.last_grad_evals = self.attack.last_grad_evals
        self.last_forward_evals = self.attack.last_forward_evals
        return x_adv
