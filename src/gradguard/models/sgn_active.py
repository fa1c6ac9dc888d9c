"""SGN response modules active at inference: the trained network consults its own input gradient at test time.

The other reading of the SGN abstract's "architecture". At test time the network

1. predicts a label for x (the backbone's own argmax: the true label is unknown),
2. takes the cross-entropy gradient at x for that label,
3. maps (x, normalized gradient) with the trained input response module to the direction that would *raise* its
   loss (what the module learned to do during training) and moves x against it:
   ``x' = project(x - scale * eps * u)`` in the eps-ball around x and the [0, 1] box,
4. classifies x' with the backbone.

Steps 1-3 are one named submodule, `SelfGradientPurifier`, so that ``BPDA(attack=..., modules=SelfGradientPurifier)``
can replace it with the identity on the backward pass. For ordinary white-box attacks the gradient through it is
the true one: when the input requires grad, step 2 keeps its graph (``create_graph``). Gradient masking is the
first suspect for any gain from such a step; `gradguard.evaluation.bypass` is the evaluation that checks it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradguard.models.sgn import INPUT_TAP, LearnedResponse, SelfGradientNetwork, SignResponse, normalize_per_sample
from gradguard.threat import threat_model

__all__ = ["INFERENCE_KIND", "ActiveSelfGradientNetwork", "SelfGradientPurifier", "activate", "with_inference"]

INFERENCE_KIND = "self-gradient-purifier"


class SelfGradientPurifier(nn.Module):
    """x -> x moved against the response direction at the classifier's own prediction (steps 1-3 above).

    The classifier is held by reference, not as a submodule: its weights belong to the enclosing network once.
    """

    _classifier: nn.Module

    def __init__(self, response: nn.Module, classifier: nn.Module, *, eps: float, norm: str = "linf",
                 scale: float = 1.0) -> None:
        super().__init__()
        self.response = response
        self.__dict__["_classifier"] = classifier  # not registered: no second copy in state_dict or modules()
        self.eps = float(eps)
        self.norm = norm
        self.scale = float(scale)

    def extra_repr(self) -> str:
        return f"eps={self.eps:g}, norm={self.norm}, scale={self.scale:g}"

    def forward(self, x: Tensor) -> Tensor:
        if self.eps <= 0 or self.scale == 0:
            return x
        # An attack differentiates through us: give it the true gradient. Under no_grad (predictions, BPDA's forward)
        # nobody will, so the step's own graph is dropped.
        keep_graph = x.requires_grad and torch.is_grad_enabled()
        with torch.enable_grad():  # predictions run under no_grad; this step needs a gradient regardless
            xg = x if keep_graph else x.detach().requires_grad_(True)
            logits = self._classifier(xg)
            loss = F.cross_entropy(logits, logits.argmax(1).detach(), reduction="sum")
            (grad,) = torch.autograd.grad(loss, [xg], create_graph=keep_graph)
            u = self.response(xg, normalize_per_sample(grad), self.norm)
            out = threat_model(self.norm, self.eps).project(xg - (self.scale * self.eps) * u, xg)
        return out if keep_graph else out.detach()


class ActiveSelfGradientNetwork(nn.Module):
    """``backbone(purifier(x))``: what `gradguard eval --checkpoint` rebuilds from an export's ``inference`` record."""

    def __init__(self, backbone: nn.Module, purifier: SelfGradientPurifier) -> None:
        super().__init__()
        self.backbone = backbone
        self.purifier = purifier

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(self.purifier(x))

    def inference_record(self) -> dict[str, Any]:
        """JSON that `with_inference` rebuilds this wrapper from (the exported model's ``inference`` field)."""
        p = self.purifier
        record: dict[str, Any] = {"kind": INFERENCE_KIND, "eps": p.eps, "norm": p.norm, "scale": p.scale}
        if isinstance(p.response, LearnedResponse):
            convs = list(p.response.convs)
            record.update(response="learned", response_layers=len(convs), sharpness=p.response.sharpness,
                          response_hidden=convs[0].out_channels if len(convs) > 1 else 8)
        else:
            record["response"] = "sign"
        return record


def activate(sgn: SelfGradientNetwork, *, eps: float, norm: str = "linf", scale: float = 1.0
             ) -> ActiveSelfGradientNetwork:
    """The active network of a trained SGN: its backbone and its input response module, shared, not copied."""
    if INPUT_TAP not in sgn.taps:
        raise ValueError(f"active inference moves the input: the SGN needs the 'input' tap, it has {sgn.taps}")
    response = sgn.responses[INPUT_TAP]
    return ActiveSelfGradientNetwork(sgn.backbone, SelfGradientPurifier(response, sgn.backbone, eps=eps, norm=norm,
                                                                          scale=scale))


def with_inference(backbone: nn.Module, record: dict[str, Any]) -> ActiveSelfGradientNetwork:
    """Rebuild the untrained active network an ``inference`` record describes (weights are loaded afterwards)."""
    if record.get("kind") != INFERENCE_KIND:
        raise ValueError(f"unknown inference kind {record.get('kind')!r}: expected {INFERENCE_KIND!r}")
    if record.get("response", "learned") == "learned":
        response: nn.Module = LearnedResponse(int(record.get("response_hidden", 8)),
                                              float(record.get("sharpness", 10.0)),
                                              int(record.get("response_layers", 3)))
    else:
        response = SignResponse()
    purifier = SelfGradientPurifier(response, backbone, eps=float(record["eps"]), norm=str(record.get("norm", "linf")),
                                    scale=float(record.get("scale", 1.0)))
    return ActiveSelfGradientNetwork(backbone, purifier)
