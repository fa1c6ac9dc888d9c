"""Layers whose randomness is part of the model: active in train *and* eval mode, drawn independently for each
input of a batch (so EOT and GradDiv can replicate an input k times in one batch and get k draws), taken from a
`torch.Generator` when one is set (`set_generator`), else from the global RNG.

A layer can be *frozen* to a seed: it then uses one fixed draw, shared by every input and every call, so the
model becomes one deterministic sample model (`freeze`). Frozen draws come from a local CPU generator seeded
from (seed, layer, name), cast to the input's dtype and device and cached, so they do not depend on the batch,
the device or the call order.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RandomLayer", "GaussianNoise", "RandomDropout", "RandomResizePad", "mix_seed"]


def mix_seed(seed: int, *salt: object) -> int:
    """A stable 63-bit seed from a user seed and a salt (layer index, tensor name): different salts give
    unrelated streams, the same inputs always the same stream (unlike Python's randomized `hash`)."""
    text = ":".join(str(s) for s in (seed, *salt)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


class RandomLayer(nn.Module):
    """Base of every randomized layer: owns the generator, the frozen seed and the draw helpers."""

    def __init__(self) -> None:
        super().__init__()
        self.generator: torch.Generator | None = None
        self.frozen_seed: int | None = None
        self._frozen_cache: dict[tuple, Tensor] = {}

    @property
    def frozen(self) -> bool:
        return self.frozen_seed is not None

    def freeze_to(self, seed: int | None) -> None:
        """Fix this layer's draw to `seed` (None: back to fresh draws)."""
        self.frozen_seed = None if seed is None else int(seed)
        self._frozen_cache = {}

    def draw(self, name: str, shape: tuple[int, ...], like: Tensor, *, batch: int | None,
             dist: str = "normal") -> Tensor:
        """Standard normal (or uniform [0, 1)) noise of `(batch, *shape)`, one independent draw per input.

        `batch=None` asks for one draw of `shape` (shared by the batch). Frozen layers return their fixed draw
        with a leading dimension of 1 (or none when batch is None), which broadcasts over the batch.
        """
        if self.frozen_seed is not None:
            full = tuple(shape) if batch is None else (1, *shape)
            key = (name, full, like.device, like.dtype, dist)
            cached = self._frozen_cache.get(key)
            if cached is None:
                local = torch.Generator().manual_seed(mix_seed(self.frozen_seed, name))
                raw = torch.randn(full, generator=local) if dist == "normal" else torch.rand(full, generator=local)
                cached = raw.to(device=like.device, dtype=like.dtype)
                self._frozen_cache[key] = cached
            return cached
        full = tuple(shape) if batch is None else (batch, *shape)
        g = self.generator
        device = like.device if g is None else g.device
        fn = torch.randn if dist == "normal" else torch.rand
        out = fn(full, generator=g, device=device, dtype=like.dtype)
        return out if out.device == like.device else out.to(like.device)

    def _extra(self) -> str:
        return f", frozen_seed={self.frozen_seed}" if self.frozen else ""


class GaussianNoise(RandomLayer):
    """Adds N(0, std^2) noise to its input (Random Self-Ensemble, Liu et al. 2018).

    `channel_scale` (a per-channel factor, e.g. 1 / dataset std) lets the first layer's std be stated in pixel
    units although the layer sits after the model's Normalize.
    """

    channel_scale: Tensor | None

    def __init__(self, std: float, channel_scale: Tensor | None = None) -> None:
        super().__init__()
        if std < 0:
            raise ValueError(f"GaussianNoise: std must be >= 0, got {std}")
        self.std = float(std)
        scale = None if channel_scale is None else channel_scale.detach().clone().reshape(1, -1, 1, 1)
        self.register_buffer("channel_scale", scale, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.std == 0:
            return x
        noise = self.draw("noise", tuple(x.shape[1:]), x, batch=x.shape[0])
        sigma: Tensor | float = self.std
        if self.channel_scale is not None and x.dim() == 4:
            sigma = self.std * self.channel_scale.to(x.dtype)
        return x + sigma * noise

    def extra_repr(self) -> str:
        scaled = ", per-channel scale" if self.channel_scale is not None else ""
        return f"std={self.std}{scaled}{self._extra()}"


class RandomDropout(RandomLayer):
    """Inverted dropout that stays on at test time (MC dropout as a randomized defence)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"RandomDropout: p must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0:
            return x
        u = self.draw("mask", tuple(x.shape[1:]), x, batch=x.shape[0], dist="uniform")
        return x * (u >= self.p).to(x.dtype) / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}{self._extra()}"


class RandomResizePad(RandomLayer):
    """Random resizing and padding (Xie et al. 2018), per input, in one batched `grid_sample`.

    Each input of side S is resized to a random integer side r in [S, floor(S * (1 + ratio))] and placed at a
    random integer offset on a zero canvas of side P = floor(S * (1 + ratio)). With `keep_size=True` the canvas is
    then sampled back at S x S (the same affine map, so one resampling), which lets models with a fixed flatten
    size (SmallCNN, LeNet) use it; `keep_size=False` returns the P x P canvas as in the paper.
    """

    def __init__(self, ratio: float = 0.1, keep_size: bool = True, mode: str = "bilinear") -> None:
        super().__init__()
        if ratio <= 0:
            raise ValueError(f"RandomResizePad: ratio must be > 0, got {ratio}")
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"RandomResizePad: mode must be 'bilinear' or 'nearest', got {mode!r}")
        self.ratio = float(ratio)
        self.keep_size = bool(keep_size)
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"RandomResizePad expects (N, C, H, W) images, got {tuple(x.shape)}")
        n, c, h, w = x.shape
        ph, pw = int(h * (1 + self.ratio)), int(w * (1 + self.ratio))
        u = self.draw("geometry", (3,), x, batch=n, dist="uniform").float().expand(n, 3)
        # side r in {S, ..., P}, offsets in {0, ..., P - r}; one resize factor for both axes
        rh = h + torch.floor(u[:, 0] * (ph - h + 1)).clamp(max=ph - h)
        rw = torch.round(rh * w / h)
        oy = torch.floor(u[:, 1] * (ph - rh + 1)).clamp(max=ph - rh)
        ox = torch.floor(u[:, 2] * (pw - rw + 1)).clamp(max=pw - rw)
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=torch.float32)
        theta[:, 0, 0] = pw / rw
        theta[:, 0, 2] = (pw - 2 * ox) / rw - 1
        theta[:, 1, 1] = ph / rh
        theta[:, 1, 2] = (ph - 2 * oy) / rh - 1
        out_h, out_w = (h, w) if self.keep_size else (ph, pw)
        grid = F.affine_grid(theta, [n, c, out_h, out_w], align_corners=False).to(x.dtype)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode="zeros", align_corners=False)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, keep_size={self.keep_size}, mode={self.mode!r}{self._extra()}"
