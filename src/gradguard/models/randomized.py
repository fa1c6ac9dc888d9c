"""Randomized networks by module surgery on any model: `randomize(model, kind, **settings)`.

Kinds (defaults in `KINDS`, reasons in docs/models.md):
- "noise": Gaussian noise before every conv (Random Self-Ensemble); `init_std` before the first conv, in pixel
  units of the [0, 1] input (RSE fed unnormalized images), `inner_std` before the others;
- "pni": parametric noise injection on the weights of every conv/linear layer (learnable layer-wise alpha);
- "bayes": mean-field Gaussian weights in every conv/linear layer with a KL to N(0, sigma_0^2) (Adv-BNN);
- "resize-pad": random resize and pad of the input (Xie et al. 2018), placed right after Normalize;
- "dropout": dropout before every linear layer, kept on at test time (the model's own train-time Dropout layers
  are replaced so inputs are not dropped twice).

Randomness is on in eval mode too and independent per input of a batch (except `per_sample=False`), from the
generator given to `set_generator`, else the global RNG. `freeze(model, seed)` gives a deterministic sample model.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gradguard.models.bayesian import BayesLayer, kl_divergence
from gradguard.models.normalization import Normalize
from gradguard.models.random_layers import GaussianNoise, RandomDropout, RandomLayer, RandomResizePad, mix_seed
from gradguard.models.weight_noise import PNILayer

__all__ = ["KINDS", "randomize", "freeze", "set_generator", "is_randomized", "kl_divergence", "random_layers"]

KINDS: dict[str, dict[str, Any]] = {
    "noise": {"init_std": 0.2, "inner_std": 0.1},
    "pni": {"alpha": 0.25, "per_sample": True},
    "bayes": {"sigma_0": 0.08, "init_s": 0.08, "per_sample": True},
    "resize-pad": {"ratio": 0.1, "keep_size": True, "mode": "bilinear"},
    "dropout": {"p": 0.5},
}


def random_layers(model: nn.Module) -> list[RandomLayer]:
    """The randomized layers of `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, RandomLayer)]


def is_randomized(model: nn.Module) -> bool:
    """True when `model` has a randomized layer that is not frozen (its outputs are random)."""
    return any(not m.frozen for m in random_layers(model))


def set_generator(model: nn.Module, generator: torch.Generator | None) -> nn.Module:
    """Make every randomized layer of `model` draw from `generator` (None: the global RNG); returns `model`.

    A generator on the model's device avoids a host-to-device copy per draw. Copies of the model (`deepcopy`,
    `freeze`) get a clone of the generator's state, not the same generator.
    """
    for m in random_layers(model):
        m.generator = generator
    return model


def freeze(model: nn.Module, seed: int) -> nn.Module:
    """A copy of `model` fixed to one draw of its randomness: a deterministic sample model.

    Every randomized layer uses a fixed draw derived from (seed, layer index), shared by all inputs, so the copy
    gives the same output for the same input on every call and whatever batch the input is in (in eval mode:
    BatchNorm in train mode mixes the batch). Different seeds give different sample models.
    """
    frozen = copy.deepcopy(model)
    for i, layer in enumerate(random_layers(frozen)):
        layer.generator = None
        layer.freeze_to(mix_seed(int(seed), "layer", i))
    return frozen


def randomize(model: nn.Module, kind: str, **settings: Any) -> nn.Module:
    """A randomized copy of `model` (the argument is not changed). See the module docstring for the kinds.

    The copy records what was done in `.randomization` (a list of {"kind", **settings}) so checkpoints can
    rebuild it.
    """
    key = kind.lower().replace("_", "-")
    if key not in KINDS:
        raise ValueError(f"unknown randomization {kind!r}: expected one of {list(KINDS)}")
    unknown = sorted(set(settings) - set(KINDS[key]))
    if unknown:
        raise ValueError(f"randomization {key!r} has no setting(s) {unknown}: its settings are {KINDS[key]}")
    full = {**KINDS[key], **settings}
    new = copy.deepcopy(model)
    new = _SURGERY[key](new, full)
    # A plain attribute: nn.Module's __setattr__ stub admits only tensors and modules.
    new.randomization = [*getattr(model, "randomization", []), {"kind": key, **full}]  # type: ignore[assignment]
    return new


# --- surgery -----------------------------------------------------------------------------------------------

def _replace(model: nn.Module, match: Callable[[nn.Module], bool], make: Callable[[nn.Module, int], nn.Module]) -> int:
    """Replace every submodule for which `match` holds by `make(module, index)`; returns how many."""
    targets = [(name, m) for name, m in model.named_modules() if name and match(m)]
    for i, (name, m) in enumerate(targets):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(m, i))
    return len(targets)


def _need(count: int, what: str, kind: str) -> None:
    if count == 0:
        raise ValueError(f"randomization {kind!r} found no {what} in the model to act on")


def _is_weight_layer(m: nn.Module) -> bool:
    return type(m) in (nn.Conv2d, nn.Linear)


def _noise(model: nn.Module, s: dict[str, Any]) -> nn.Module:
    norm = next((m for m in model.modules() if isinstance(m, Normalize)), None)
    scale = None if norm is None else 1.0 / norm.std.flatten()

    def make(conv: nn.Module, i: int) -> nn.Module:
        noise = GaussianNoise(s["init_std"], scale) if i == 0 else GaussianNoise(s["inner_std"])
        return nn.Sequential(OrderedDict([("noise", noise), ("conv", conv)]))

    _need(_replace(model, lambda m: type(m) is nn.Conv2d, make), "Conv2d layer", "noise")
    return model


def _pni(model: nn.Module, s: dict[str, Any]) -> nn.Module:
    n = _replace(model, _is_weight_layer, lambda m, i: PNILayer(m, s["alpha"], s["per_sample"]))  # type: ignore[arg-type]
    _need(n, "Conv2d/Linear layer", "pni")
    return model


def _bayes(model: nn.Module, s: dict[str, Any]) -> nn.Module:
    n = _replace(model, _is_weight_layer,
                 lambda m, i: BayesLayer(m, s["sigma_0"], s["init_s"], s["per_sample"]))  # type: ignore[arg-type]
    _need(n, "Conv2d/Linear layer", "bayes")
    return model


def _resize_pad(model: nn.Module, s: dict[str, Any]) -> nn.Module:
    layer = RandomResizePad(s["ratio"], s["keep_size"], s["mode"])
    children = list(model.named_children())
    if isinstance(model, nn.Sequential) and children and isinstance(children[0][1], Normalize):
        # keep Normalize first (the zoo contract); padding zeros are then the dataset mean colour, as Xie et al.
        # padded zeros in their [-1, 1] input space
        model._modules = OrderedDict([children[0], ("resize_pad", layer), *children[1:]])
        return model
    return nn.Sequential(OrderedDict([("resize_pad", layer), ("net", model)]))


def _dropout(model: nn.Module, s: dict[str, Any]) -> nn.Module:
    _replace(model, lambda m: type(m) is nn.Dropout, lambda m, i: nn.Identity())
    n = _replace(model, lambda m: type(m) is nn.Linear,
                 lambda m, i: nn.Sequential(OrderedDict([("dropout", RandomDropout(s["p"])), ("linear", m)])))
    _need(n, "Linear layer", "dropout")
    return model


_SURGERY: dict[str, Callable[[nn.Module, dict[str, Any]], nn.Module]] = {
    "noise": _noise, "pni": _pni, "bayes": _bayes, "resize-pad": _resize_pad, "dropout": _dropout,
}
