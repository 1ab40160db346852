"""What the parity devices send, receive and compute, without torch (docs/parity.md).

This is the interface a plan and a runtime build on. Devices are numbered ``0..G-1`` (data)
and ``G..G+r-1`` (parity device ``k`` is device ``G + k``; it shadows data device ``k``).

Normal operation (:func:`parity_plan`): the source sends the raw image to every parity
device; at every protected point (``encode`` > 0) every data device sends every parity device
the first ``m`` channels of its stream after the point's block, in the point's wire dtype
(:class:`EncodingTransfer`), added after the point's aggregation block like any payload.
Parity devices send nothing.

Degraded operation (:func:`degraded_rule`): data device ``j`` unavailable from point ``p``
on. At every point ``q >= p``, each payload and encoding ``j`` would have sent is replaced by
a :class:`StandIn`: sent by parity device ``G + j`` (its own stream's first channels) when
``j < r``, otherwise the receiver adds the imputation constant ``impute{q}[j]`` (the training
mean of each channel of ``j``'s stream, shipped with the parity weights). If ``j = 0`` and
``p = 0`` parity device ``G`` also sends its stem output to the data devices (device 0 never
computed it). The answer comes from parity device ``G`` when ``j = 0`` or when the trained
``answers`` say so, else from data device 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from snnas.arch import BlockGeometry
from snnas.space import DTYPES, SearchSpace

__all__ = [
    "DegradedRule",
    "EncodingTransfer",
    "ParityCost",
    "ParityPlan",
    "StandIn",
    "degraded_rule",
    "parity_plan",
]

_FP32 = 4


@dataclass(frozen=True)
class EncodingTransfer:
    """One data device's encoding to one parity device at one point (normal operation)."""

    point: int
    src: int  # data device
    dst: int  # parity device (G + k)
    send_block: int  # sent after this block (the stream that also feeds the point's payloads)
    aggregate_block: int  # added to the parity stream after this block
    channels: int  # the first ``channels`` channels of the sender's stream
    size: int  # height = width
    dtype: str  # wire dtype (the point's)
    bytes: int  # per image


@dataclass(frozen=True)
class StandIn:
    """What replaces one payload or encoding of an unavailable device (degraded operation)."""

    point: int
    missing: int  # the unavailable data device
    dst: int  # who would have received it (data device, or parity device G + k)
    channels: int  # channels of the replaced transfer
    by: int | None  # the parity device that sends the stand-in; None: dst adds impute{point}
    dtype: str
    bytes: int  # bytes the stand-in moves (0 for an imputation constant)


@dataclass(frozen=True)
class DegradedRule:
    """What happens when data device ``device`` is unavailable from point ``from_point`` on."""

    device: int
    from_point: int
    standins: tuple[StandIn, ...]
    stem_by: int | None  # parity device that sends the stem output (device 0 lost at point 0)
    stem_to: tuple[int, ...]  # data devices it sends it to
    answer_by: int  # data device 0, or parity device G

    @property
    def bytes(self) -> int:
        """Bytes the stand-ins and the stem move per image."""
        return sum(s.bytes for s in self.standins)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "device": self.device,
            "from_point": self.from_point,
            "answer_by": self.answer_by,
            "stem_by": self.stem_by,
            "stem_to": list(self.stem_to),
            "standins": [vars(s) for s in self.standins],
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class ParityCost:
    """The parity lines of ``snnas cost``: per image, normal operation unless stated."""

    r: int
    image_bytes: int  # the raw image to every parity device (float32)
    encoding_bytes: int  # all encodings to all parity devices
    encoding_bytes_per_point: tuple[int, ...]
    flops_per_parity: tuple[int, ...]  # stem, blocks, encoders, head (parity device 0)
    params_per_parity: tuple[int, ...]
    extra_data_flops: tuple[int, ...]  # per data device: blocks computed only for encodings
    extra_data_blocks: tuple[tuple[int, ...], ...]
    degraded_bytes: tuple[int, ...]  # per unavailable data device, from point 0: stand-ins

    @property
    def bytes(self) -> int:
        """Extra bytes per image in normal operation."""
        return self.image_bytes + self.encoding_bytes

    @property
    def flops(self) -> int:
        """Extra FLOPs per image in normal operation (parity devices and data devices)."""
        return sum(self.flops_per_parity) + sum(self.extra_data_flops)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        data: dict[str, Any] = {
            k: [list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, tuple) else v
            for k, v in vars(self).items()
        }
        data["bytes"] = self.bytes
        data["flops"] = self.flops
        return data


@dataclass(frozen=True)
class ParityPlan:
    """Normal operation of the parity devices of one policy."""

    groups: int
    r: int
    image_bytes: int  # per parity device
    encodings: tuple[EncodingTransfer, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "groups": self.groups,
            "r": self.r,
            "parity_devices": [self.groups + k for k in range(self.r)],
            "shadows": {str(self.groups + k): k for k in range(self.r)},
            "image_bytes": self.image_bytes,
            "encodings": [vars(e) for e in self.encodings],
        }


def _image_bytes(space: SearchSpace) -> int:
    net = space.network
    return net.input_channels * net.input_size**2 * _FP32


def parity_plan(space: SearchSpace, policy: Mapping[str, Any]) -> ParityPlan:
    """Every encoding of ``policy`` in normal operation (module docstring): every data device
    to every parity device, or with the ``mirror`` encoder only the senders of the payloads
    the shadowed devices receive (``min(m, n)`` channels)."""
    g, r = space.groups, space.parity.r
    encodings = []
    decisions = space.resolve(policy)
    for geo, dec, choice in zip(
        space.arch.points, decisions, space.resolve_parity(policy), strict=True
    ):
        m = choice.m_send(geo.channels)
        if m == 0:
            continue
        pairs: list[tuple[int, int, int]] = []  # (sender, parity device, channels)
        if choice.encoder == "mirror":
            n = dec.n_send(geo.channels)
            for src, dst in enumerate(dec.perm):
                if dst != src and dst < r and n > 0:
                    pairs.append((src, g + dst, min(m, n)))
        else:
            pairs = [(i, g + k, m) for k in range(r) for i in range(g)]
        for src, dst, channels in pairs:
            nbytes = channels * geo.size**2 * DTYPES[choice.dtype]
            encodings.append(
                EncodingTransfer(
                    geo.index, src, dst, geo.block, geo.aggregate_block, channels, geo.size,
                    choice.dtype, nbytes,
                )
            )  # fmt: skip
    return ParityPlan(g, r, _image_bytes(space) if r else 0, tuple(encodings))


def degraded_rule(
    space: SearchSpace,
    policy: Mapping[str, Any],
    device: int,
    from_point: int,
    answers: Sequence[bool] | None = None,
) -> DegradedRule:
    """What replaces data device ``device``'s transfers from ``from_point`` on, and who
    answers (``answers[j]``: parity device G answers when j is unavailable; device 0 always;
    without ``answers`` only device 0's loss makes the parity device answer).
    """
    g, r = space.groups, space.parity.r
    if r < 1:
        raise ValueError(f"space {space.name!r} has no parity devices")
    if not 0 <= device < g or not 0 <= from_point < space.num_points:
        raise ValueError(f"no erasure position ({device}, {from_point})")
    by = g + device if device < r else None
    standins = []
    decisions = space.resolve(policy)
    for geo, dec in zip(space.arch.points, decisions, strict=True):
        if geo.index < from_point:
            continue
        n = dec.n_send(geo.channels)
        dst = dec.perm[device]
        if dst != device and n > 0:
            size = n * geo.size**2 * dec.bytes_per_element
            standins.append(
                StandIn(geo.index, device, dst, n, by, dec.dtype, size if by is not None else 0)
            )
    for e in parity_plan(space, policy).encodings:
        if e.point >= from_point and e.src == device and e.dst != by:
            size = e.bytes if by is not None else 0  # imputed by the receiver: nothing moves
            standins.append(StandIn(e.point, device, e.dst, e.channels, by, e.dtype, size))
    standins.sort(key=lambda s: (s.point, s.dst))
    stem_to: tuple[int, ...] = ()
    stem_by = None
    if device == 0 and from_point == 0:
        stem_by, stem_to = g, tuple(range(1, g))
        net = space.network
        stem = net.stem_width * net.input_size**2 * _FP32
        standins.extend(StandIn(-1, 0, d, net.stem_width, g, "float32", stem) for d in stem_to)
    wants = answers[device] if answers is not None else False
    answer_by = g if device == 0 or wants else 0
    return DegradedRule(device, from_point, tuple(standins), stem_by, stem_to, answer_by)


def _block_params(block: BlockGeometry, mid: int, paths: int) -> int:
    params = block.in_width * mid + 2 * mid  # conv1, bn1
    params += 9 * mid * (mid // paths) + 2 * mid  # conv2 (grouped), bn2
    params += mid * block.out_width + 2 * block.out_width  # conv3, bn3
    if block.projection:
        params += block.in_width * block.out_width + 2 * block.out_width
    return params


def _block_macs(block: BlockGeometry, mid: int, paths: int) -> int:
    in_hw, out_hw = block.in_size**2, block.out_size**2
    macs = block.in_width * mid * in_hw  # conv1
    macs += 9 * (mid // paths) * mid * out_hw  # conv2
    macs += mid * block.out_width * out_hw  # conv3
    if block.projection:
        macs += block.in_width * block.out_width * out_hw
    return macs
