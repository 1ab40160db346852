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
from pathlib import Path
from typing import Any

from snnas._numbers import Range
from snnas.arch import default_overlap
from snnas.cost._comm import point_bytes
from snnas.cost._liveness import liveness
from snnas.cost._parity import _block_macs, parity_plan
from snnas.engine import Price, SimulatedTransport, device_entries, simulate_programs
from snnas.errors import UsageError, shorten
from snnas.space import SearchSpace
from snnas.space._toml import TomlSource

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


@dataclass(frozen=True, order=True)
class OpShape:
    """The shape of one compute op of one device at batch 1: the key of a profile's latency
    table (as nn-Meter's and Once-for-All's per-kernel lookup tables are keyed by shape).

    ``kind`` is ``"stem"``, ``"block"`` (one device's part of a bottleneck block: 1x1, grouped
    3x3, 1x1 and the shortcut, batch norm folded) or ``"head"`` (pool and classifier).
    """

    kind: str
    c_in: int  # input channels (of one device's stream)
    c_out: int  # output channels
    mid: int = 0  # bottleneck width on the device (blocks)
    groups: int = 1  # groups of the 3x3 convolution on the device (blocks)
    stride: int = 1
    h: int = 0  # input height
    w: int = 0  # input width

    @property
    def key(self) -> str:
        """The table key, e.g. ``block 64-128 m32 g4 s2 32x32``."""
        if self.kind == "block":
            return (
                f"block {self.c_in}-{self.c_out} m{self.mid} g{self.groups} s{self.stride} "
                f"{self.h}x{self.w}"
            )
        return f"{self.kind} {self.c_in}-{self.c_out} {self.h}x{self.w}"


@dataclass(frozen=True)
class DeviceProfile:
    """An edge device and its link.

    Compute is a measured per-shape latency table where the profile has one (``snnas
    profile``), else ``op_overhead_s + FLOPs / flops``. A transfer costs the sender
    ``send_s`` and the receiver ``recv_s`` of software time, and the link ``latency + 8 *
    bytes / bandwidth``.
    """

    name: str
    flops: float  # sustained FLOP/s of the device
    bandwidth_bps: float  # link bandwidth in bits per second
    link_latency_s: float  # fixed cost of one transfer
    source: str  # where the figures come from
    op_overhead_s: float = 0.0  # fixed cost of one compute op not in the table
    send_s: float = 0.0  # software cost of starting one send (sender's time)
    recv_s: float = 0.0  # software cost of taking one receive (receiver's time)
    cores: int | None = None  # cores the device processes share (None: one core each)
    table: tuple[tuple[str, float], ...] = ()  # (OpShape.key, seconds at batch 1)

    def transfer_s(self, nbytes: int) -> float:
        """Seconds to move ``nbytes`` over the link (0 for nothing)."""
        return 0.0 if nbytes == 0 else self.link_latency_s + 8.0 * nbytes / self.bandwidth_bps

    def op_s(self, shape: OpShape, macs: int) -> float:
        """Seconds of one compute op: the table's figure for ``shape``, else the FLOP rate."""
        for key, seconds in self.table:
            if key == shape.key:
                return seconds
        return self.op_overhead_s + 2.0 * macs / self.flops


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


def get_profile(name_or_path: str, option: str = "--device") -> DeviceProfile:
    """A shipped profile by name, or a TOML file with the profile's fields.

    An unknown name is a :class:`UsageError` naming ``option``; a file with a missing, NaN,
    infinite or out-of-range number a :class:`ConfigError` naming the file, line and key.
    """
    if name_or_path in PROFILES:
        return PROFILES[name_or_path]
    path = Path(name_or_path)
    if not path.suffix == ".toml":
        raise UsageError(option, f"one of {', '.join(PROFILES)} or a .toml file", name_or_path)
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
    last = arch.blocks[-1]

    def price(device: int, kind: str, index: int, macs: int = 0) -> float:
        if kind == "stem":
            shape = OpShape("stem", net.input_channels, net.stem_width,
                            h=net.input_size, w=net.input_size)  # fmt: skip
            return share * profile.op_s(shape, arch.stem_macs())
        if kind == "head":
            shape = OpShape("head", last.out_width, net.num_classes,
                            h=last.out_size, w=last.out_size)  # fmt: skip
            return share * profile.op_s(shape, arch.head_macs())
        if kind == "encoder":
            geo = arch.points[index]
            shape = OpShape("encoder", g * geo.channels, geo.channels, h=geo.size, w=geo.size)
            return share * profile.op_s(shape, macs)
        blk = arch.blocks[index]
        k = scale if device >= g else 1  # a parity device: bottleneck_scale times the paths
        mid, paths = blk.mid_width // g * k, net.cardinality // g * k
        shape = OpShape("block", blk.in_width, blk.out_width, mid, paths, blk.stride,
                        blk.in_size, blk.in_size)  # fmt: skip
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
