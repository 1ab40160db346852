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

from snnas.arch import default_overlap
from snnas.cost._comm import point_bytes
from snnas.cost._liveness import liveness
from snnas.cost._parity import _block_macs, parity_plan
from snnas.cost._profile import PROFILE_RANGES, PROFILES, DeviceProfile, OpShape, get_profile
from snnas.engine import Price, SimulatedTransport, device_entries, simulate_programs
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
    "programs",
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


def _pricer(space: SearchSpace, profile: DeviceProfile, processes: int) -> Price:
    """What one compute op of one device costs on ``profile`` (:meth:`DeviceProfile.op_s`),
    slowed by ``processes / profile.cores`` when more device processes than cores share the
    machine (docs/cost-model.md, "Latency")."""
    arch, net, g = space.arch, space.network, space.groups
    scale = space.parity.bottleneck_scale
    share = max(1.0, processes / profile.cores) if profile.cores else 1.0

    def price(device: int, kind: str, index: int, macs: int = 0) -> float:
        if kind == "stem":
            return share * profile.op_s(OpShape.of_stem(arch), arch.stem_macs())
        if kind == "head":
            return share * profile.op_s(OpShape.of_head(arch), arch.head_macs())
        if kind == "encoder":
            geo = arch.points[index]
            shape = OpShape("encoder", g * geo.channels, geo.channels, h=geo.size, w=geo.size)
            return share * profile.op_s(shape, macs)
        blk = arch.blocks[index]
        k = scale if device >= g else 1  # a parity device: bottleneck_scale times the paths
        mid, paths = blk.mid_width // g * k, net.cardinality // g * k
        shape = OpShape.of_block(arch, index, k)  # the profile's table key (snnas profile)
        block = arch.block_macs(blk) if k == 1 and device < g else _block_macs(blk, mid, paths)
        return share * profile.op_s(shape, block)

    return price


def programs(
    space: SearchSpace, policy: Mapping[str, Any], *, live: bool = True
) -> list[dict[str, Any]]:
    """Every device's program of ``policy`` (the device entries a plan of it has, parity
    devices included): ``snnas.engine.device_entries`` on the policy's liveness and parity
    plan."""
    parity = space.parity.r > 0
    flow = liveness(space, policy, encodings=parity)
    encodings = parity_plan(space, policy).encodings if parity else ()
    return device_entries(space, policy, flow, encodings, live=live)


def simulate(
    space: SearchSpace,
    policy: Mapping[str, Any],
    profile: DeviceProfile,
    *,
    free_links: bool = False,
    live: bool = True,
) -> float:
    """When device 0 finishes the head, in seconds: the engine runs every device's program
    (:func:`programs`, parity devices and their encodings included) on a simulated clock per
    device (``snnas.engine.SimulatedTransport``, module docstring of
    ``snnas/engine/_simulated.py``). ``free_links``: transfers and their software costs take
    no time. With ``live`` (what a plan runs) dead blocks are not computed and dead transfers
    not sent."""
    entries = programs(space, policy, live=live)
    active = sum(1 for e in entries if e["input"] or e["blocks"] or e["receives"])
    price = _pricer(space, profile, active)
    points = [
        {"point": p.index, "send_block": p.block, "aggregate_block": p.aggregate_block,
         "channels": p.channels, "size": p.size}
        for p in space.arch.points
    ]  # fmt: skip

    def transport(clock: dict[int, float]) -> SimulatedTransport:
        if free_links:
            return SimulatedTransport(clock, lambda nbytes: 0.0)
        return SimulatedTransport(clock, profile.transfer_s, profile.send_s, profile.recv_s)

    return simulate_programs(entries, space.arch, points, price, transport)[0]


def latency(space: SearchSpace, policy: Mapping[str, Any], profile: DeviceProfile) -> LatencyReport:
    """Latency estimate for one inference under ``policy`` on devices like ``profile``."""
    arch = space.arch
    total = simulate(space, policy, profile)
    compute_only = simulate(space, policy, profile, free_links=True)
    flow = liveness(space, policy)
    one = _pricer(space, profile, 1)
    single = one(0, "stem", -1, 0) + one(0, "head", -1, 0)
    single += sum(one(0, "block", b, 0) for blocks in flow.live_blocks for b in blocks)
    transfers, overlaps = [], []
    for geo, dec in zip(arch.points, space.resolve(policy), strict=True):
        _, per_sender, _ = point_bytes(space, geo.index, dec)
        transfers.append(profile.transfer_s(per_sender))
        blocks = range(geo.block + 1, geo.aggregate_block + 1)
        overlaps.append(sum(one(0, "block", b, 0) for b in blocks))
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
        dense = SearchSpace(config)
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
