"""Data-parallel training on `torch.distributed` (torchrun): NCCL on GPUs, Gloo on CPU.

Gradients are averaged with one explicit all-reduce after the trainer's backward rather than by wrapping the model
in `DistributedDataParallel`: attack-crafting recipes run extra forward/backward passes through the model inside a
step, which DDP's reducer would take for training iterations. Every rank walks the same global batch order and takes
its contiguous slice of each global batch (the equivalent of a DistributedSampler over the in-memory loader), so N
ranks see exactly the samples one process would, and the weighted all-reduce makes the update the same.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from gradguard.errors import UserError

__all__ = ["DeviceUnavailableError", "DistInfo", "launched_rank", "setup", "teardown", "shard", "allreduce_grads",
           "broadcast_module", "all_sum"]


class DeviceUnavailableError(UserError, RuntimeError):
    """The config asks for a device this machine does not have (a RuntimeError, as before, for old callers)."""


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(f"train.device = {requested!r} but CUDA is not available on this machine")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 when not launched by torchrun), known before `setup`."""
    return int(os.environ.get("RANK", "0"))


def setup(requested_device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else a single-process DistInfo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = launched_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _pick_device(requested_device, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(minutes=30))
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def shard(x: Tensor, info: DistInfo) -> tuple[int, int]:
    """[start, stop) of this rank's contiguous slice of a global batch of len(x) rows."""
    n = x.shape[0]
    bounds = [n * r // info.world_size for r in range(info.world_size + 1)]
    return bounds[info.rank], bounds[info.rank + 1]


def allreduce_grads(params: list[nn.Parameter], local_n: int, global_n: int, extra: Tensor) -> Tensor:
    """Average gradients over ranks weighted by local batch size; `extra` (e.g. the loss) is reduced the same way.

    Each rank's gradient is that of its local mean loss, so sum_r (n_r / N) g_r is the gradient of the global mean.
    Returns the reduced `extra`.
    """
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads] + [extra.detach().float().reshape(-1).to(
        grads[0].device if grads else extra.device)])
    flat.mul_(local_n / global_n)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        k = g.numel()
        g.copy_(flat[offset: offset + k].view_as(g))
        offset += k
    return flat[offset:].view_as(extra)


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Make every rank start from rank `src`'s parameters and buffers."""
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=src)


def all_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few scalars over ranks (identity when not distributed)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()
