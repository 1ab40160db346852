"""Per-device compute, parameters and activation memory of a separable network.

FLOPs are ``2 x`` multiply-accumulates of the convolutions and the classifier; batch norm,
ReLU and additions are left out, as FLOP counts usually do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from snnas.space import SearchSpace

__all__ = ["ComputeReport", "compute"]

_FP32 = 4


@dataclass(frozen=True)
class ComputeReport:
    """Compute and memory of every device for one policy."""

    block_flops: tuple[int, ...]  # per device, per block (same on every device)
    stem_flops: int  # device 0
    head_flops: int  # device 0
    flops_per_device: tuple[int, ...]  # totals
    total_flops: int  # all devices
    params_per_device: tuple[int, ...]
    peak_activation_bytes: tuple[int, ...]  # per device, batch 1, float32
    live_flops_per_device: tuple[int, ...]  # what a plan computes: dead blocks skipped
    skipped_blocks: tuple[tuple[int, ...], ...]  # per device, blocks that cannot reach the head

    @property
    def live_total_flops(self) -> int:
        """All devices' live FLOPs."""
        return sum(self.live_flops_per_device)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        data: dict[str, Any] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()
        }
        data["skipped_blocks"] = [list(b) for b in self.skipped_blocks]
        data["live_total_flops"] = self.live_total_flops
        return data


def compute(space: SearchSpace, policy: Mapping[str, Any]) -> ComputeReport:
    """Compute, parameters and peak activation memory per device under ``policy``."""
    from snnas.cost._liveness import liveness

    arch, g = space.arch, space.groups
    flow = liveness(space, policy)
    decisions = space.resolve(policy)
    block_flops = tuple(2 * arch.block_macs(b) for b in arch.blocks)
    stem = 2 * arch.stem_macs()
    head = 2 * arch.head_macs()

    # Bytes waiting on each device while a block runs: transfers received but not yet added.
    pending = [[0] * arch.num_blocks for _ in range(g)]
    for geo, dec in zip(arch.points, decisions, strict=True):
        n_send = dec.n_send(geo.channels)
        for src, dst in enumerate(dec.perm):
            if src == dst or n_send == 0:
                continue
            for b in range(geo.block + 1, geo.aggregate_block + 1):
                pending[dst][b] += n_send * geo.size**2 * _FP32

    mid = [b.mid_width // g for b in arch.blocks]
    peaks = []
    for d in range(g):
        peak = 0
        for b, blk in zip(range(arch.num_blocks), arch.blocks, strict=True):
            live = blk.in_width * blk.in_size**2  # input, kept for the shortcut
            live += mid[b] * blk.in_size**2 + mid[b] * blk.out_size**2  # bottleneck
            live += blk.out_width * blk.out_size**2 * (2 if blk.projection else 1)
            peak = max(peak, live * _FP32 + pending[d][b])
        peaks.append(peak)

    per_device = tuple(sum(block_flops) + (stem + head if d == 0 else 0) for d in range(g))
    live_per_device = tuple(
        sum(block_flops[b] for b in flow.live_blocks[d]) + (stem + head if d == 0 else 0)
        for d in range(g)
    )
    return ComputeReport(
        block_flops=block_flops,
        stem_flops=stem,
        head_flops=head,
        flops_per_device=per_device,
        total_flops=sum(per_device),
        params_per_device=arch.params_per_device(),
        peak_activation_bytes=tuple(peaks),
        live_flops_per_device=live_per_device,
        skipped_blocks=tuple(flow.skipped_blocks(d) for d in range(g)),
    )
