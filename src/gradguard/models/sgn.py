"""Self-Gradient Networks: a wrapper that lets a network perturb its own flow with its own gradient.

Our reading of the SGN abstract. A *tap* is a place in the network's flow: the input image (tap ``"input"``) or the
output of a named submodule of the backbone. During training the wrapper

1. runs the backbone once, recording the activation at every tap,
2. takes the loss gradient at every tap (one backward through itself),
3. maps (activation, per-sample-normalized gradient) to a bounded perturbation with a small *response module* per
   tap: at the input the perturbation stays in the threat model's ball and the [0, 1] box, at hidden taps
   ``||delta||_2 <= rho * ||activation||_2`` per sample,
4. runs the backbone again with the perturbations injected at the taps.

The backbone minimizes the loss of step 4, the response modules maximize it (see `GradientReversal` and the recipe
in `gradguard.training.recipes.sgn`). Outside that procedure the wrapper is inert: ``forward`` is exactly the
backbone's forward, in train and eval mode alike, so an attack on the wrapper attacks a plain network and no
gradient masking can come from the taps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, cast

import torch
from torch import Tensor, nn
from torch.func import functional_call

from gradguard.threat import ThreatModel

__all__ = [
    "INPUT_TAP",
    "GradientReversal",
    "LearnedResponse",
    "SelfGradientNetwork",
    "SignResponse",
    "normalize_per_sample",
    "reverse_gradient",
]

INPUT_TAP = "input"
ResponseKind = Literal["learned", "sign"]
_TINY = 1e-12


def _view(v: Tensor, like: Tensor) -> Tensor:
    """Shape a per-sample vector (N,) to broadcast against `like`."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def normalize_per_sample(t: Tensor) -> Tensor:
    """Divide each sample by its mean absolute entry, so typical entries are O(1) whatever the loss scale."""
    scale = t.flatten(1).abs().mean(1).clamp_min(_TINY)
    return t / _view(scale, t)


def _l2(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(_TINY)


class GradientReversal(torch.autograd.Function):
    """Identity forward, gradient times ``-scale`` backward: the min-max game in one backward pass."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: Tensor, scale: float = 1.0) -> Tensor:
    return GradientReversal.apply(x, scale)


class SignResponse(nn.Module):
    """No parameters: the steepest-ascent direction of the tap's norm (the FGSM-like ablation).

    Returns a direction ``u`` with ``||u||_inf <= 1`` (linf: ``sign(g)``) or ``||u||_2 = 1`` (l2: ``g / ||g||``).
    """

    def forward(self, act: Tensor, grad_n: Tensor, norm: str) -> Tensor:
        if norm == "linf":
            return grad_n.sign()
        return grad_n / _view(_l2(grad_n), grad_n)


class LearnedResponse(nn.Module):
    """A small convolutional map from (activation, normalized gradient) to a perturbation direction.

    It works channel by channel with shared weights (each channel of the tap is a 2-channel image: activation and
    gradient), so one module fits a tap of any width and needs no shape probing. The last layer starts at zero, so
    at step 0 the direction is the gradient's: ``tanh(sharpness * g)`` for linf (``sign(g)`` where ``|g|`` is large,
    smaller where it is small, so softer than FGSM at first), ``g / ||g||`` for l2; training moves it from there.
    """

    def __init__(self, hidden: int = 8, sharpness: float = 10.0, layers: int = 3) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"LearnedResponse needs at least 1 layer, got {layers}")
        self.sharpness = float(sharpness)
        chans = [2] + [hidden] * (layers - 1) + [1]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans[:-1], chans[1:], strict=True))
        last = cast(nn.Conv2d, self.convs[-1])
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def residual(self, act: Tensor, grad_n: Tensor) -> Tensor:
        """The learned correction, same shape as the tap; (N, D) taps are treated as (N, D, 1, 1) pixels."""
        shape = act.shape
        if act.dim() == 2:
            act, grad_n = act[:, :, None, None], grad_n[:, :, None, None]
        elif act.dim() != 4:
            raise ValueError(f"a learned response supports (N, C, H, W) or (N, D) taps, got shape {tuple(shape)}")
        n, c, h, w = act.shape
        z = torch.stack([act, grad_n], dim=2).reshape(n * c, 2, h, w)
        for i, conv in enumerate(self.convs):
            z = conv(z)
            if i < len(self.convs) - 1:
                z = torch.relu(z)
        return z.reshape(shape)

    def forward(self, act: Tensor, grad_n: Tensor, norm: str) -> Tensor:
        r = self.residual(act, grad_n)
        if norm == "linf":
            return torch.tanh(self.sharpness * grad_n + r)
        u = grad_n + r
        return u / _view(_l2(u), u)


def _module_key(tap: str) -> str:
    return tap.replace(".", "__")


class SelfGradientNetwork(nn.Module):
    """Wrap `backbone` with gradient taps and one response module per tap.

    ``forward`` is the backbone's forward, always. Training goes through `tap_forward`, `perturbations` and
    `perturbed_forward` (orchestrated by the ``sgn`` recipe).
    """

    def __init__(
        self,
        backbone: nn.Module,
        taps: Sequence[str] = (INPUT_TAP,),
        *,
        response: ResponseKind = "learned",
        hidden_rho: float = 0.1,
        response_hidden: int = 8,
        response_layers: int = 3,
        sharpness: float = 10.0,
    ) -> None:
        super().__init__()
        if not taps:
            raise ValueError("SelfGradientNetwork needs at least one tap")
        if len(set(taps)) != len(taps):
            raise ValueError(f"duplicate taps in {list(taps)}")
        if response not in ("learned", "sign"):
            raise ValueError(f"unknown response {response!r}: expected 'learned' or 'sign'")
        if hidden_rho < 0:
            raise ValueError(f"hidden_rho must be >= 0, got {hidden_rho}")
        names = dict(backbone.named_modules())
        for tap in taps:
            if tap != INPUT_TAP and (tap not in names or tap == ""):
                known = [n for n in names if n]
                raise ValueError(f"tap {tap!r} is not a submodule of the backbone: expected 'input' or one of {known}")
        self.backbone = backbone
        self.taps = list(taps)
        self.response_kind = response
        self.hidden_rho = float(hidden_rho)
        self.responses = nn.ModuleDict(
            {
                _module_key(t): (
                    LearnedResponse(response_hidden, sharpness, response_layers) if response == "learned"
                    else SignResponse()
                )
                for t in self.taps
            }
        )

    # -- inference ------------------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Exactly the backbone: taps are inactive outside the SGN training step."""
        return self.backbone(x)

    # -- training mechanics ---------------------------------------------------------------------------------------
    @property
    def hidden_taps(self) -> list[str]:
        return [t for t in self.taps if t != INPUT_TAP]

    def response_parameters(self) -> Iterator[nn.Parameter]:
        return self.responses.parameters()

    @contextmanager
    def _hooks(self, fn_for_tap) -> Iterator[None]:
        modules = dict(self.backbone.named_modules())
        handles = [modules[t].register_forward_hook(fn_for_tap(t)) for t in self.hidden_taps]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def tap_forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Backbone forward recording the activation at every tap (the input tap is `x` itself)."""
        acts: dict[str, Tensor] = {}
        if INPUT_TAP in self.taps:
            acts[INPUT_TAP] = x

        def record(tap: str):
            def hook(_m: nn.Module, _i: object, out: Tensor) -> None:
                if not isinstance(out, Tensor):
                    raise TypeError(f"tap {tap!r} must output a tensor, got {type(out).__name__}")
                if tap in acts:
                    raise ValueError(f"tap {tap!r} runs more than once per forward: tap a module used once")
                acts[tap] = out

            return hook

        with self._hooks(record):
            logits = self.backbone(x)
        return logits, acts

    def perturbed_forward(self, x_adv: Tensor, hidden_deltas: dict[str, Tensor]) -> Tensor:
        """Backbone forward on `x_adv` with ``hidden_deltas[tap]`` added to each hidden tap's output."""

        def inject(tap: str):
            def hook(_m: nn.Module, _i: object, out: Tensor) -> Tensor:
                return out + hidden_deltas[tap]

            return hook

        with self._hooks(inject):
            return self.backbone(x_adv)

    def direction(self, tap: str, act: Tensor, grad: Tensor, norm: str, reversal: float | None) -> Tensor:
        """The response module's direction at `tap`; with `reversal`, its parameters see a reversed gradient."""
        module = self.responses[_module_key(tap)]
        act_in = act if tap == INPUT_TAP else normalize_per_sample(act)
        grad_n = normalize_per_sample(grad)
        if reversal is None:
            return module(act_in, grad_n, norm)
        params = {n: reverse_gradient(p, reversal) for n, p in module.named_parameters()}
        return functional_call(module, params, (act_in, grad_n, norm))

    def perturbations(
        self,
        x: Tensor,
        acts: dict[str, Tensor],
        grads: dict[str, Tensor],
        threat: ThreatModel,
        *,
        step_scale: float = 1.0,
        reversal: float | None = 1.0,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Bounded perturbations from the response modules.

        Returns ``x_adv`` (in the ball around the clean `x` and in the box; ``acts["input"]`` may be a random start
        inside the ball) and the additive deltas for the hidden taps (``||delta||_2 <= hidden_rho * ||act||_2``).
        """
        x_adv = x
        if INPUT_TAP in self.taps:
            x0 = acts[INPUT_TAP]
            u = self.direction(INPUT_TAP, x0, grads[INPUT_TAP], threat.norm, reversal)
            x_adv = threat.project(x0 + (step_scale * threat.eps) * u, x)
        deltas: dict[str, Tensor] = {}
        for tap in self.hidden_taps:
            act = acts[tap]
            u = self.direction(tap, act, grads[tap], "l2", reversal)
            deltas[tap] = u * _view(self.hidden_rho * _l2(act.detach()), act)
        return x_adv, deltas
