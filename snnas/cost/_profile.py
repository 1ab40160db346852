"""Device profiles: what the cost model knows of an edge device and its link, and their file.

A profile has a sustained FLOP/s, a link (bandwidth and latency per transfer), the software
cost of one send and of one receive, the cores the device processes share and, when it was
measured (``snnas profile``), a latency table per op shape at batch 1, as nn-Meter's and
Once-for-All's lookup tables are. The TOML file format is documented field by field in
``docs/cost-model.md`` ("Device profiles"); :func:`get_profile` reads it, checking every
number, and :func:`profile_toml` writes it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from snnas._numbers import Range
from snnas.arch import Architecture
from snnas.errors import ConfigError, UsageError, shorten
from snnas.space._toml import TomlSource

__all__ = [
    "PROFILES",
    "PROFILE_FORMAT",
    "PROFILE_RANGES",
    "DeviceProfile",
    "OpShape",
    "OpStats",
    "get_profile",
    "profile_name",
    "profile_toml",
    "read_profile",
]

#: The ``format`` a profile file may declare (files without it are read as this format).
PROFILE_FORMAT = "snnas-profile-v1"

_BLOCK_KEY = re.compile(r"block (\d+)-(\d+) m(\d+) g(\d+) s(\d+) (\d+)x(\d+)")
_OTHER_KEY = re.compile(r"(stem|head) (\d+)-(\d+) (\d+)x(\d+)")
_KEY_WORDS = "'block C_IN-C_OUT mMID gGROUPS sSTRIDE HxW' or 'stem|head C_IN-C_OUT HxW'"
#: Largest channel count and spatial size a key may name (the DSL's limits, docs/dsl.md).
_MAX_CHANNELS = 1 << 20
_MAX_SIZE = 4096


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

    @property
    def projection(self) -> bool:
        """Whether a block's shortcut is a 1x1 convolution (shape change), not identity."""
        return self.kind == "block" and (self.c_in != self.c_out or self.stride != 1)

    @classmethod
    def parse(cls, key: str) -> OpShape | None:
        """The shape a table key names, or ``None`` when ``key`` is not one (wrong words,
        a zero or huge size, a bottleneck not divisible by its groups, leading zeros)."""
        if m := _BLOCK_KEY.fullmatch(key):
            c_in, c_out, mid, groups, stride, h, w = map(int, m.groups())
            shape = cls("block", c_in, c_out, mid, groups, stride, h, w)
            if not (1 <= groups <= mid and mid % groups == 0 and 1 <= stride <= 8):
                return None
        elif m := _OTHER_KEY.fullmatch(key):
            c_in, c_out, h, w = map(int, m.groups()[1:])
            shape = cls(m.group(1), c_in, c_out, h=h, w=w)
        else:
            return None
        channels = (shape.c_in, shape.c_out, *((shape.mid,) if shape.kind == "block" else ()))
        if not all(1 <= c <= _MAX_CHANNELS for c in channels):
            return None
        if not (1 <= shape.h <= _MAX_SIZE and 1 <= shape.w <= _MAX_SIZE):
            return None
        return shape if shape.key == key else None  # one spelling per shape

    @classmethod
    def of_stem(cls, arch: Architecture) -> OpShape:
        """The stem, as device 0 (or a parity device) runs it."""
        net = arch.network
        size = net.input_size
        return cls("stem", net.input_channels, net.stem_width, h=size, w=size)

    @classmethod
    def of_block(cls, arch: Architecture, block: int, scale: int = 1) -> OpShape:
        """One device's part of ``block`` (a parity device: ``scale`` times the bottleneck),
        as ``snnas/plan/_program.py``'s ``DeviceNet`` runs it."""
        geo = arch.blocks[block]
        mid = geo.mid_width // arch.groups * scale
        groups = arch.network.cardinality // arch.groups * scale
        size = geo.in_size
        return cls("block", geo.in_width, geo.out_width, mid, groups, geo.stride, size, size)

    @classmethod
    def of_head(cls, arch: Architecture) -> OpShape:
        """Global average pooling and the classifier on device 0's final stream."""
        net = arch.network
        size = arch.blocks[-1].out_size
        return cls("head", net.stage_widths[-1], net.num_classes, h=size, w=size)

    def macs(self) -> int:
        """Multiply-accumulates of the op (convolutions and the classifier, as
        ``Architecture`` counts them)."""
        hw_in = self.h * self.w
        if self.kind == "stem":
            return 9 * self.c_in * self.c_out * hw_in
        if self.kind == "head":
            return self.c_in * self.c_out
        out = (self.h // self.stride) * (self.w // self.stride)
        macs = self.c_in * self.mid * hw_in  # conv1
        macs += 9 * (self.mid // self.groups) * self.mid * out  # conv2, grouped
        macs += self.mid * self.c_out * out  # conv3
        if self.projection:
            macs += self.c_in * self.c_out * out  # shortcut
        return macs


@dataclass(frozen=True)
class OpStats:
    """How one table entry was measured: timed runs, their mean and standard deviation."""

    count: int
    mean_s: float
    std_s: float


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
    # How each table entry was measured (same keys as ``table``; empty for a hand-made one).
    stats: tuple[tuple[str, OpStats], ...] = field(default=(), compare=False)

    @cached_property
    def _seconds(self) -> dict[str, float]:
        return dict(self.table)

    def transfer_s(self, nbytes: int) -> float:
        """Seconds to move ``nbytes`` over the link (0 for nothing)."""
        return 0.0 if nbytes == 0 else self.link_latency_s + 8.0 * nbytes / self.bandwidth_bps

    def op_s(self, shape: OpShape, macs: int) -> float:
        """Seconds of one compute op: the table's figure for ``shape``, else the FLOP rate."""
        seconds = self._seconds.get(shape.key)
        if seconds is not None:
            return seconds
        return self.op_overhead_s + 2.0 * macs / self.flops

    def to_json(self) -> dict[str, Any]:
        """JSON form (the table as ``{key: seconds}``)."""
        return {
            "name": self.name,
            "source": self.source,
            "flops": self.flops,
            "bandwidth_bps": self.bandwidth_bps,
            "link_latency_s": self.link_latency_s,
            "op_overhead_s": self.op_overhead_s,
            "send_s": self.send_s,
            "recv_s": self.recv_s,
            "cores": self.cores,
            "table": dict(self.table),
        }


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


_SECONDS = Range(0, 3600)
#: The documented range of a profile file's numbers (docs/cost-model.md).
PROFILE_RANGES: dict[str, Range] = {
    "flops": Range(0, 1e18, low_open=True),  # FLOP/s
    "bandwidth_bps": Range(0, 1e15, low_open=True),  # bits per second
    "link_latency_s": _SECONDS,  # seconds per transfer
    "op_overhead_s": _SECONDS,  # seconds per op outside the table
    "send_s": _SECONDS,  # seconds of the sender's time per send
    "recv_s": _SECONDS,  # seconds of the receiver's time per receive
    "ops.seconds": Range(0, 3600, low_open=True),  # one op at batch 1 (the median)
    "ops.mean": Range(0, 3600, low_open=True),
    "ops.std": _SECONDS,
}
_CORES = (1, 1 << 16)
_COUNT = (1, 10**9)
_MAX_OPS = 100_000
_TOP_KEYS = (
    "format",
    "name",
    "source",
    "flops",
    "bandwidth_bps",
    "link_latency_s",
    "op_overhead_s",
    "send_s",
    "recv_s",
    "cores",
    "ops",
)
_OP_KEYS = ("key", "seconds", "count", "mean", "std")


def get_profile(name_or_path: str, option: str = "--profile") -> DeviceProfile:
    """A shipped profile by name, or a profile file (``.toml``, see :func:`read_profile`).

    An unknown name is a :class:`UsageError` naming ``option``; a bad file a
    :class:`ConfigError` naming the file, line and key.
    """
    if name_or_path in PROFILES:
        return PROFILES[name_or_path]
    if Path(name_or_path).suffix != ".toml":
        raise UsageError(option, f"one of {', '.join(PROFILES)} or a .toml file", name_or_path)
    return read_profile(name_or_path)


class _OpsLines:
    """Line numbers of ``[[ops]]`` entries and their keys, for messages."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        header = re.compile(r"^\s*\[\[\s*ops\s*\]\]\s*(#.*)?$")
        self.headers = [i for i, line in enumerate(self.lines) if header.match(line)]

    def line(self, index: int, name: str | None) -> int | None:
        if index >= len(self.headers):
            return None  # an inline array: no line per entry
        start = self.headers[index]
        if name is not None:
            assign = re.compile(rf"^\s*[\"']?{re.escape(name)}[\"']?\s*=")
            for i in range(start + 1, len(self.lines)):
                if self.lines[i].lstrip().startswith("["):
                    break
                if assign.match(self.lines[i]):
                    return i + 1
        return start + 1


def read_profile(path: str | Path) -> DeviceProfile:
    """Read a profile file: every number range- and finiteness-checked, unknown keys and
    duplicated keys or ops refused, each with a :class:`ConfigError` naming the file, the
    line and the key (docs/cost-model.md, "Device profiles")."""
    src = TomlSource.from_path(path)
    data = src.data
    src.check_keys(data, "", _TOP_KEYS)
    src.get_str(data, "", "format", default=PROFILE_FORMAT, choices=(PROFILE_FORMAT,))

    def number(name: str, default: float | None = None) -> float:
        return src.get_number(data, "", name, default=default, valid=PROFILE_RANGES[name])

    flops = number("flops")
    bandwidth = number("bandwidth_bps")
    latency = number("link_latency_s", 0.0)
    overhead, send, recv = (
        number("op_overhead_s", 0.0),
        number("send_s", 0.0),
        number("recv_s", 0.0),
    )
    cores: int | None = None
    if "cores" in data:
        cores = src.get_int(data, "", "cores", minimum=_CORES[0], maximum=_CORES[1])
    name = src.get_str(data, "", "name", default=Path(path).stem, max_length=100)
    source = src.get_str(data, "", "source", default=shorten(str(path), 200), multiline=True)
    table, stats = _read_ops(src, data.get("ops", []))
    return DeviceProfile(
        name, flops, bandwidth, latency, source, overhead, send, recv, cores, table, stats
    )


def _read_ops(
    src: TomlSource, ops: object
) -> tuple[tuple[tuple[str, float], ...], tuple[tuple[str, OpStats], ...]]:
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise src.error("ops", "an array of tables ([[ops]] entries)", src.found(ops))
    if len(ops) > _MAX_OPS:
        raise src.error("ops", f"at most {_MAX_OPS:,} entries", f"<{len(ops):,} entries>")
    where = _OpsLines(src.text)
    table: list[tuple[str, float]] = []
    stats: list[tuple[str, OpStats]] = []
    first: dict[str, int] = {}
    for i, op in enumerate(ops):

        def fail(name: str | None, expected: str, found: object, i: int = i) -> ConfigError:
            key = f"ops[{i}].{name}" if name else f"ops[{i}]"
            return ConfigError(src.path, key, expected, found, line=where.line(i, name))

        for name in op:
            if name not in _OP_KEYS:
                unknown = f"<unknown key {shorten(name, 100, quote=True)}>"
                raise fail(name, f"one of {', '.join(_OP_KEYS)}", unknown)
        if "key" not in op:
            raise fail("key", f"an op shape, {_KEY_WORDS}", "<missing>")
        key = op["key"]
        if not isinstance(key, str):
            raise fail("key", f"an op shape, {_KEY_WORDS}", src.found(key))
        shape = OpShape.parse(key)
        if shape is None:
            raise fail("key", f"an op shape, {_KEY_WORDS}", src.found(key))
        if key in first:
            raise fail("key", f"each op shape once (first at ops[{first[key]}])", key)
        first[key] = i
        values: dict[str, float] = {}
        for name in ("seconds", "mean", "std"):
            valid = PROFILE_RANGES[f"ops.{name}"]
            if name not in op:
                if name == "seconds":
                    raise fail(name, valid.describe(), "<missing>")
                continue
            problem = valid.problem(op[name])
            if problem is not None:
                raise fail(name, problem, _number_found(src, op[name]))
            values[name] = float(op[name])
        table.append((key, values["seconds"]))
        if "count" in op:
            count = op["count"]
            problem = Range(*_COUNT, integer=True).problem(count)
            if problem is not None:
                raise fail("count", problem, _number_found(src, count))
            mean = values.get("mean", values["seconds"])
            stats.append((key, OpStats(int(count), mean, values.get("std", 0.0))))
    return tuple(table), tuple(stats)


def _number_found(src: TomlSource, value: object) -> object:
    """A number as itself; anything else as ``<a string: '4'>``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return src.found(value)


def profile_name(text: str) -> str:
    """A profile name from free text (a file name): printable, at most 100 characters, as
    :func:`read_profile` accepts; ``"profile"`` when nothing is left."""
    return "".join(ch for ch in text if ch.isprintable())[:100] or "profile"


def _toml_str(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL must be escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def profile_toml(profile: DeviceProfile, comment: str = "") -> str:
    """The profile as a TOML file that :func:`read_profile` reads back to an equal profile
    (floats written with ``repr``: exact)."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines += [
        f"format = {_toml_str(PROFILE_FORMAT)}",
        f"name = {_toml_str(profile.name)}",
        f"source = {_toml_str(profile.source)}",
        f"flops = {profile.flops!r}  # FLOP/s fitted to the table: op_overhead_s + FLOPs / flops",
        f"bandwidth_bps = {profile.bandwidth_bps!r}",
        f"link_latency_s = {profile.link_latency_s!r}",
        f"op_overhead_s = {profile.op_overhead_s!r}",
        f"send_s = {profile.send_s!r}",
        f"recv_s = {profile.recv_s!r}",
    ]
    if profile.cores is not None:
        lines.append(f"cores = {profile.cores}")
    stats = dict(profile.stats)
    for key, seconds in profile.table:
        lines += ["", "[[ops]]", f"key = {_toml_str(key)}", f"seconds = {seconds!r}  # median"]
        if key in stats:
            s = stats[key]
            lines += [f"count = {s.count}", f"mean = {s.mean_s!r}", f"std = {s.std_s!r}"]
    return "\n".join(lines) + "\n"
