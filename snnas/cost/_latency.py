"""Latency model: compute plus transfers, with alpha overlapping a transfer with compute.

Per-device latency = compute (``FLOPs / FLOP/s``) plus the part of every transfer that is not
hidden: a transfer sent after block ``b`` leaves when the sender's link is free and takes
``latency + 8 * bytes / bandwidth`` seconds; the receiver waits for it only when it reaches the
block where the transfer is aggregated (``b + alpha``, or the last block).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from snnas._numbers import Range
from snnas.errors import UsageError, shorten
from snnas.space import SearchSpace
from snnas.space._toml import TomlSource

__all__ = [
    "PROFILES",
    "PROFILE_RANGES",
    "DeviceProfile",
    "LatencyReport",
    "alpha_scan",
    "get_profile",
    "latency",
]


@dataclass(frozen=True)
class DeviceProfile:
    """An edge device and its link."""

    name: str
    flops: float  # sustained FLOP/s of the device
    bandwidth_bps: float  # link bandwidth in bits per second
    link_latency_s: float  # fixed cost of one transfer
    source: str  # where the figures come from

    def transfer_s(self, nbytes: int) -> float:
        """Seconds to move ``nbytes`` over the link (0 for nothing)."""
        return 0.0 if nbytes == 0 else self.link_latency_s + 8.0 * nbytes / self.bandwidth_bps


PROFILES: dict[str, DeviceProfile] = {
    "rpi3b+": DeviceProfile(
        name="rpi3b+",
        flops=1.7e8,
        bandwidth_bps=300e6,
        link_latency_s=0.5e-3,
        source="Raspberry Pi 3B+ as given in Lin & Wang, Section 4.6 (1.7e8 FLOP/s, 300 Mbps); "
        "the 0.5 ms per-transfer latency is our assumption for a switched Ethernet LAN.",
    ),
    "a57x4": DeviceProfile(
        name="a57x4",
        flops=2.3e9,
        bandwidth_bps=1e9,
        link_latency_s=0.2e-3,
        source="Quad-core ARM Cortex-A57 board as on NVIDIA's Jetson Nano module data sheet "
        "(4 cores at 1.43 GHz, Gigabit Ethernet). Peak fp32 NEON throughput is 4 cores x "
        "1.43e9 Hz x 8 FLOP/cycle = 45.8 GFLOP/s; we assume 5% of peak sustained for small "
        "batch-1 convolutions (2.3e9 FLOP/s). The 0.2 ms latency is our assumption.",
    ),
}


#: The documented range of a profile file's numbers (docs/cost-model.md).
PROFILE_RANGES: dict[str, Range] = {
    "flops": Range(0, 1e18, low_open=True),  # FLOP/s
    "bandwidth_bps": Range(0, 1e15, low_open=True),  # bits per second
    "link_latency_s": Range(0, 3600),  # seconds per transfer
}


def get_profile(name_or_path: str) -> DeviceProfile:
    """A shipped profile by name, or a TOML file with the profile's fields.

    An unknown name is a :class:`UsageError`; a file with a missing, NaN, infinite or
    out-of-range number a :class:`ConfigError` naming the file, line and key.
    """
    if name_or_path in PROFILES:
        return PROFILES[name_or_path]
    path = Path(name_or_path)
    if not path.suffix == ".toml":
        raise UsageError("--device", f"one of {', '.join(PROFILES)} or a .toml file", name_or_path)
    src = TomlSource.from_path(path)
    data = src.data
    src.check_keys(data, "", ("name", "flops", "bandwidth_bps", "link_latency_s", "source"))
    flops = src.get_number(data, "", "flops", valid=PROFILE_RANGES["flops"])
    bw = src.get_number(data, "", "bandwidth_bps", valid=PROFILE_RANGES["bandwidth_bps"])
    lat = src.get_number(
        data, "", "link_latency_s", default=0.0, valid=PROFILE_RANGES["link_latency_s"]
    )
    name = src.get_str(data, "", "name", default=path.stem, max_length=100)
    source = src.get_str(data, "", "source", default=shorten(str(path), 200), multiline=True)
    return DeviceProfile(name, flops, bw, lat, source)


@dataclass(frozen=True)
class LatencyReport:
    """Estimated latency of one inference (batch 1) under a policy and a profile."""

    profile: str
    latency_s: float  # device 0 finishes the head
    compute_only_s: float  # the same with free, instant transfers
    exposed_transfer_s: float  # latency_s - compute_only_s
    single_device_s: float  # the whole separable network computed on one device
    speedup: float  # single_device_s / latency_s
    point_transfer_s: tuple[float, ...]  # per point, one sender's transfer time
    point_overlap_s: tuple[float, ...]  # per point, compute available to hide it

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}


def _simulate(
    space: SearchSpace, policy: Mapping[str, Any], profile: DeviceProfile, free_links: bool
) -> float:
    """Event simulation in lockstep over blocks; returns when device 0 finishes."""
    from snnas.cost._comm import point_bytes

    arch, g = space.arch, space.groups
    decisions = space.resolve(policy)
    flops = [2 * arch.block_macs(b) for b in arch.blocks]
    clock = [0.0] * g
    link_free = [0.0] * g
    net = space.network
    stem_bytes = net.stem_width * net.input_size**2 * 4
    clock[0] = 2 * arch.stem_macs() / profile.flops
    link_free[0] = clock[0]
    for d in range(1, g):  # device 0 sends the stem output to every other device in turn
        arrival = link_free[0] + (0.0 if free_links else profile.transfer_s(stem_bytes))
        link_free[0] = arrival
        clock[d] = arrival
    # arrivals[block] -> list of (receiver, arrival time)
    arrivals: dict[int, list[tuple[int, float]]] = {}
    by_block = {p.block: p for p in arch.points}
    for blk in arch.blocks:
        for d in range(g):
            clock[d] += flops[blk.index] / profile.flops
        geo = by_block.get(blk.index)
        if geo is not None:  # send after this block
            dec = decisions[geo.index]
            n_send, per_sender, _ = point_bytes(space, geo.index, dec)
            for src, dst in enumerate(dec.perm):
                if src == dst or n_send == 0:
                    continue
                start = max(clock[src], link_free[src])
                done = start + (0.0 if free_links else profile.transfer_s(per_sender))
                link_free[src] = done
                arrivals.setdefault(geo.aggregate_block, []).append((dst, done))
        for dst, arrived in arrivals.pop(blk.index, []):
            clock[dst] = max(clock[dst], arrived)
    return clock[0] + 2 * arch.head_macs() / profile.flops


def latency(space: SearchSpace, policy: Mapping[str, Any], profile: DeviceProfile) -> LatencyReport:
    """Latency estimate for one inference under ``policy`` on devices like ``profile``."""
    from snnas.cost._comm import point_bytes

    arch = space.arch
    total = _simulate(space, policy, profile, free_links=False)
    compute_only = _simulate(space, policy, profile, free_links=True)
    all_flops = arch.groups * sum(2 * arch.block_macs(b) for b in arch.blocks)
    single = (all_flops + 2 * arch.stem_macs() + 2 * arch.head_macs()) / profile.flops
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
        point_transfer_s=tuple(transfers),
        point_overlap_s=tuple(overlaps),
    )


def alpha_scan(
    space: SearchSpace, profile: DeviceProfile, dtype: str = "float32"
) -> list[dict[str, Any]]:
    """The paper's Fig. 5 for one profile: for every alpha, the worst ratio of the compute
    that can hide a transfer to the transfer's time, under a dense policy (every device sends
    its whole stream, ``dtype`` on the wire, to the next device).

    ``hidden`` is true when every transfer that overlaps compute (it is added at least one
    block after it is sent) fits under that compute, and there is at least one such transfer.
    Transfers sent after a stage's last block are added at once and never hidden; they are
    left out of the criterion and counted in ``latency_s`` and ``exposed_transfer_s``.
    """
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
        )
        config = replace(space.config, split=replace(space.split, alpha=alpha), decisions=specs)
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
