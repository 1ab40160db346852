"""Latency model: compute plus transfers, with alpha overlapping a transfer with compute.

Per-device latency = compute (``FLOPs / FLOP/s``) plus the part of every transfer that is not
hidden: a transfer sent after block ``b`` leaves when the sender's link is free and takes
``latency + 8 * bytes / bandwidth`` seconds; the receiver waits for it only when it reaches the
block where the transfer is added (``Architecture.aggregation_block``: ``b + alpha - 1`` by
default, never past the stage's last block).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from snnas.cost._profile import PROFILE_RANGES, PROFILES, DeviceProfile, OpShape, get_profile
from snnas.space import SearchSpace

__all__ = [
    "PROFILES",
    "PROFILE_RANGES",
    "DeviceProfile",
    "LatencyReport",
    "OpShape",
    "alpha_scan",
    "get_profile",
    "latency",
    "simulate",
]


@dataclass(frozen=True)
class LatencyReport:
    """Estimated latency of one inference (batch 1) under a policy and a profile.

    Figures are for the live schedule (dead blocks and transfers pruned, as a plan runs it);
    ``raw_latency_s`` runs every block and transfer.
    """

    profile: str
    latency_s: float  # device 0 finishes the head
    compute_only_s: float  # the same with free, instant transfers
    exposed_transfer_s: float  # latency_s - compute_only_s
    single_device_s: float  # the whole (live) separable network computed on one device
    speedup: float  # single_device_s / latency_s
    raw_latency_s: float  # every block and every transfer, live or not
    point_transfer_s: tuple[float, ...]  # per point, one sender's transfer time
    point_overlap_s: tuple[float, ...]  # per point, compute available to hide it

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}


def simulate(
    space: SearchSpace,
    policy: Mapping[str, Any],
    profile: DeviceProfile,
    *,
    free_links: bool = False,
    live: bool = True,
) -> float:
    """When device 0 finishes the head, in seconds.

    Every device follows the forward pass's order within a block (``snnas/arch.py``): compute
    the block, wait for and add the transfers due now that were sent earlier, send its own,
    then wait for and add the transfers sent in this block. A link carries one transfer at a
    time and a sender does not wait for its transfer to arrive. With ``live`` (what a plan
    runs) dead blocks cost nothing and dead transfers are not sent.
    """
    from snnas.cost._comm import stem_bytes
    from snnas.cost._liveness import liveness

    arch, g = space.arch, space.groups
    flow = liveness(space, policy)
    transfers = flow.live_transfers if live else flow.transfers
    computes = (
        [set(flow.live_blocks[d]) for d in range(g)]
        if live
        else [set(range(arch.num_blocks)) for _ in range(g)]
    )
    cost = [2 * arch.block_macs(b) / profile.flops for b in arch.blocks]

    def transfer_s(nbytes: int) -> float:
        return 0.0 if free_links else profile.transfer_s(nbytes)

    clock = [0.0] * g
    link_free = [0.0] * g
    clock[0] = link_free[0] = 2 * arch.stem_macs() / profile.flops
    receivers = flow.stem_receivers if live else tuple(range(1, g))
    for d in receivers:  # device 0 sends the stem's output to each device in turn
        link_free[0] += transfer_s(stem_bytes(space))
        clock[d] = link_free[0]
    sends: dict[int, list[Any]] = {}
    for t in transfers:
        sends.setdefault(t.send_block, []).append(t)
    due: dict[int, list[tuple[int, float]]] = {}  # block -> (receiver, arrival), sent earlier
    for blk in arch.blocks:
        b = blk.index
        for d in range(g):
            if b in computes[d]:
                clock[d] += cost[b]
        for dst, arrival in due.pop(b, []):
            clock[dst] = max(clock[dst], arrival)
        same_block = []
        for t in sends.get(b, []):
            start = max(clock[t.src], link_free[t.src])
            link_free[t.src] = done = start + transfer_s(t.bytes)
            if t.same_block:
                same_block.append((t.dst, done))
            else:
                due.setdefault(t.aggregate_block, []).append((t.dst, done))
        for dst, arrival in same_block:
            clock[dst] = max(clock[dst], arrival)
    return clock[0] + 2 * arch.head_macs() / profile.flops


def latency(space: SearchSpace, policy: Mapping[str, Any], profile: DeviceProfile) -> LatencyReport:
    """Latency estimate for one inference under ``policy`` on devices like ``profile``."""
    from snnas.cost._comm import point_bytes
    from snnas.cost._liveness import liveness

    arch = space.arch
    total = simulate(space, policy, profile)
    compute_only = simulate(space, policy, profile, free_links=True)
    flow = liveness(space, policy)
    live_flops = sum(
        2 * arch.block_macs(arch.blocks[b]) for blocks in flow.live_blocks for b in blocks
    )
    single = (live_flops + 2 * arch.stem_macs() + 2 * arch.head_macs()) / profile.flops
    transfers, overlaps = [], []
    for geo, dec in zip(arch.points, space.resolve(policy), strict=True):
        _, per_sender, _ = point_bytes(space, geo.index, dec)
        transfers.append(profile.transfer_s(per_sender))
        blocks = range(geo.block + 1, geo.aggregate_block + 1)
        overlaps.append(sum(2 * arch.block_macs(arch.blocks[b]) for b in blocks) / profile.flops)
    return LatencyReport(
        profile=profile.name,
        latency_s=total,
        compute_only_s=compute_only,
        exposed_transfer_s=total - compute_only,
        single_device_s=single,
        speedup=single / total,
        raw_latency_s=simulate(space, policy, profile, live=False),
        point_transfer_s=tuple(transfers),
        point_overlap_s=tuple(overlaps),
    )


def alpha_scan(
    space: SearchSpace, profile: DeviceProfile, dtype: str = "float32"
) -> list[dict[str, Any]]:
    """The paper's Fig. 5 for one profile: for every alpha, the worst ratio of the compute
    that can hide a transfer to the transfer's time, under a dense policy (every device sends
    its whole stream, ``dtype`` on the wire, to the next device).

    Alpha takes its default overlap, ``alpha - 1`` blocks. ``hidden`` is true when every
    transfer that overlaps compute (it is added at least one block after it is sent) fits
    under that compute, and there is at least one such transfer. Transfers added in the block
    that sent them (all of them at alpha = 1, the synchronous case; those sent at a stage's
    last block otherwise) are never hidden; they are left out of the criterion and counted in
    ``latency_s`` and ``exposed_transfer_s``.
    """
    from snnas.arch import default_overlap
    from snnas.space import SearchSpace as _Space

    rows = []
    shift = tuple((i + 1) % space.groups for i in range(space.groups))
    for alpha in range(1, space.arch.num_blocks + 1):
        specs = tuple(
            replace(
                s,
                fixed={"permutation": shift, "sparsity": 100.0, "dtype": dtype}[s.kind],
                choices=({"permutation": shift, "sparsity": 100.0, "dtype": dtype}[s.kind],),
            )
            for s in space.config.decisions
            if s.kind in ("permutation", "sparsity", "dtype")  # the data network only
        )
        split = replace(space.split, alpha=alpha, overlap=default_overlap(space.network, alpha))
        no_parity = replace(space.config.parity, r=0)
        config = replace(space.config, split=split, decisions=specs, parity=no_parity)
        dense = _Space(config)
        report = latency(dense, {}, profile)
        ratios = [
            o / t
            for o, t in zip(report.point_overlap_s, report.point_transfer_s, strict=True)
            if o > 0 and t > 0
        ]
        worst: float | None = min(ratios) if ratios else None
        rows.append(
            {
                "alpha": alpha,
                "points": dense.num_points,
                "worst_compute_to_transfer": worst,
                "hidden": worst is not None and worst >= 1.0,
                "latency_s": report.latency_s,
                "exposed_transfer_s": report.exposed_transfer_s,
            }
        )
    return rows


def min_hiding_alpha(rows: list[dict[str, Any]]) -> int | None:
    """Smallest alpha of :func:`alpha_scan` whose transfers are all hidden, if any."""
    return next((r["alpha"] for r in rows if r["hidden"]), None)
