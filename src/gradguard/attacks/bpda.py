"""BPDA attack wrapper (Athalye et al., ICML 2018): attack through non-differentiable parts of a model.

During the attack, every submodule of the model matched by `modules` (a type, tuple of types or predicate) is
replaced by a `BPDAWrapper` whose forward is the original module and whose backward is `approx` (identity by
default); after the attack the original modules are put back. Alternatively `preprocess` names a function applied
to inputs before the model (e.g. JPEG or bit-depth reduction done outside it); it is applied exactly in the
forward pass and approximated in the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import Tensor, nn

from gradguard.attacks.base import Attack, Model
from gradguard.attacks.wrapping import WrappingAttack
from gradguard.gradients import BPDAWrapper, bpda

__all__ = ["BPDA"]

Matcher = type | tuple[type, ...] | Callable[[nn.Module], bool]


def _matches(m: nn.Module, modules: Matcher) -> bool:
    if isinstance(modules, type | tuple):
        return isinstance(m, modules)
    return bool(modules(m))


@contextmanager
def _bypassed(model: nn.Module, modules: Matcher, approx: Callable[[Tensor], Tensor] | None) -> Iterator[None]:
    """Every submodule of `model` matched by `modules` swapped for a `BPDAWrapper` inside the block, put back
    afterwards (also on error)."""
    swapped = [(parent, name, child) for parent in list(model.modules())
               for name, child in list(parent.named_children()) if _matches(child, modules)]
    if not swapped:
        raise ValueError(f"BPDA: no submodule of {type(model).__name__} matches {modules!r}")
    try:
        for parent, name, child in swapped:
            setattr(parent, name, BPDAWrapper(child, approx))
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


class BPDA(WrappingAttack):
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
        # the inner attack's draws and layout choice rule
        super().__init__(attack=attack, eot=attack.eot, channels_last=attack.channels_last)
        self.modules = modules
        self.preprocess = preprocess
        self.approx = approx

    def _perturb(self, model: Model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if self.preprocess is not None:
            pre = bpda(self.preprocess, self.approx)
            run = self._in_layout(model)  # the inner attack sees a plain function: this call picks the layout

            def attacked(z: Tensor) -> Tensor:
                return run(pre(z))

            return self._run_inner(attacked, x, y, target)
        if not isinstance(model, nn.Module):
            raise TypeError("BPDA(modules=...) needs an nn.Module model")
        assert self.modules is not None  # __init__ takes exactly one of modules and preprocess
        with _bypassed(model, self.modules, self.approx):
            return self._run_inner(model, x, y, target)
