"""Data-parallel training under torchrun: the process group, each rank's shard of a global
batch, batch norm over the global batch, and rank 0 as the only writer.

``torchrun --standalone --nproc-per-node N -m snnas train ...`` starts N processes with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`setup` joins them into one process
group (gloo on CPUs, NCCL on GPUs, each rank on GPU ``LOCAL_RANK``). Every rank loads the
same data in the same seeded order and takes a contiguous shard of every global batch
(:meth:`Dist.shard`), so the global batch, and therefore the run, is the one a single
process trains on: gradients are averaged by ``DistributedDataParallel`` over a loss scaled
to the global mean (:meth:`Dist.loss`), and batch norm normalises with the statistics of
the whole global batch (:func:`global_batch_norm`), as one process does. What remains
different is the order of floating-point sums (docs/supernet.md gives the tolerance).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from snnas.errors import ConfigError

__all__ = ["Dist", "global_batch_norm", "setup"]

#: How long a rank waits for the others at a collective (rank 0 alone evaluates and writes
#: between epochs while the others wait at the next one).
TIMEOUT = datetime.timedelta(hours=2)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise ConfigError(None, name, "a non-negative integer (set by torchrun)", raw)
    return int(raw)


@dataclass(frozen=True)
class Dist:
    """This process's place in the process group (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """Whether there are several processes."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this process writes the run and reports progress (rank 0)."""
        return self.rank == 0

    def check_batch(self, batch_size: int, option: str) -> None:
        """Refuse a global batch that cannot give every rank at least one image."""
        if batch_size < self.world_size:
            raise ConfigError(
                None,
                option,
                f"at least one image per process ({self.world_size} processes)",
                batch_size,
            )

    def shard(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """This rank's contiguous part of a global batch (sizes differ by at most one)."""
        if not self.active:
            return x, y
        parts = self.world_size
        return x.tensor_split(parts)[self.rank], y.tensor_split(parts)[self.rank]

    def loss(self, logits: Tensor, y: Tensor, global_count: int) -> Tensor:
        """Cross-entropy whose gradient, averaged over the ranks by DDP, is the gradient of
        the mean over the global batch of ``global_count`` images."""
        if not self.active:
            return F.cross_entropy(logits, y)
        return F.cross_entropy(logits, y, reduction="sum") * (self.world_size / global_count)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` wrapped in ``DistributedDataParallel`` (itself without torchrun).

        Every policy of the supernet uses every parameter (no unused parameters to look
        for, which DDP would otherwise do at every step)."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index if device.index is not None else self.local_rank]
        return DistributedDataParallel(
            model,
            device_ids=ids if device.type == "cuda" else None,
            find_unused_parameters=False,
        )

    def sum(self, *values: Tensor) -> list[Tensor]:
        """Each tensor summed over the ranks (one collective for all)."""
        if not self.active:
            return list(values)
        flat = torch.cat([v.detach().double().reshape(-1) for v in values])
        dist.all_reduce(flat)
        out, start = [], 0
        for v in values:
            out.append(flat[start : start + v.numel()].reshape(v.shape).to(v.dtype))
            start += v.numel()
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (small picklable objects made by this program:
        a seed, a policy, final metrics)."""
        if not self.active:
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.active:
            dist.barrier()


def setup(device: torch.device) -> Dist:
    """Join the process group torchrun describes (once), or return rank 0 of 1.

    Already initialised (a test, a caller's own launcher): its rank and size. Otherwise
    ``WORLD_SIZE`` > 1 initialises it from the environment: NCCL when ``device`` is a GPU
    (this rank on GPU ``LOCAL_RANK``), gloo on the CPU.
    """
    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Dist()
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not dist.is_available():
        raise ConfigError(None, "WORLD_SIZE", "1 (this torch has no torch.distributed)", world)
    if device.type == "cuda":
        torch.cuda.set_device(local)  # "cuda" is then this rank's GPU
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    return Dist(rank, world, local)


class _SumOverRanks(torch.autograd.Function):
    """A sum over the ranks whose gradient is the sum of the ranks' gradients (every rank's
    loss depends on every rank's contribution)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def _all_reduce(x: Tensor) -> Tensor:
    out: Tensor = _SumOverRanks.apply(x)
    return out


class _GlobalBatchNorm2d(nn.BatchNorm2d):
    """Batch norm with the statistics of the global batch: the per-channel sums, sums of
    squares and counts of every rank's shard are added with a differentiable all-reduce,
    so the forward pass and the gradients are those of one process seeing the whole batch
    (``nn.SyncBatchNorm`` does this on GPUs only). Same parameters, buffers and state-dict
    keys as ``nn.BatchNorm2d``; :func:`global_batch_norm` swaps it in for a training step."""

    def forward(self, input: Tensor) -> Tensor:
        if not self.training:
            return super().forward(input)
        x = input.float()  # statistics in float32 (bfloat16 under autocast on a GPU)
        c = x.shape[1]
        count = x.new_full((1,), x.numel() / c)
        # Two passes, as batch norm's own kernels: the mean, then the squared deviations
        # from it (E[x^2] - E[x]^2 would lose digits to cancellation).
        total = _all_reduce(torch.cat([x.sum((0, 2, 3)), count]))  # (C + 1,) over the ranks
        n = total[-1]
        mean = total[:c] / n  # (C,)
        centred = x - mean[None, :, None, None]  # (B, C, H, W)
        var = _all_reduce((centred * centred).sum((0, 2, 3))) / n  # (C,) biased, as BN uses
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                tracked = self.num_batches_tracked
                if tracked is not None:
                    tracked.add_(1)
                momentum = self.momentum
                if momentum is None:  # a cumulative moving average
                    momentum = 1.0 / float(tracked) if tracked is not None else 0.0
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                if self.running_var is not None:
                    self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]  # (B, C, H, W)
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out.to(input.dtype)


@contextlib.contextmanager
def global_batch_norm(model: nn.Module, ctx: Dist) -> Iterator[None]:
    """Within the block, ``model``'s batch norms in training mode use the global batch's
    statistics (every rank must run the same forward passes); outside it they are plain
    batch norms again (evaluation and recalibration run on one rank)."""
    layers = [m for m in model.modules() if type(m) is nn.BatchNorm2d] if ctx.active else []
    for m in layers:
        m.__class__ = _GlobalBatchNorm2d
    try:
        yield
    finally:
        for m in layers:
            m.__class__ = nn.BatchNorm2d
