"""Communication accounting: bytes a policy sends against a ring all-reduce baseline.

Definitions (``docs/cost-model.md``):

* At transmission point ``p`` every device ``i`` with ``s(i) != i`` sends
  ``N_send * H * W * bytes(dtype)`` bytes, ``N_send = floor(channels * level / 100)`` and
  ``channels`` the device's residual-stream width at the point.
* Baseline: the plain ResNeXt split over G devices by paths all-reduces every block's output
  with a ring all-reduce, which moves ``2 (G - 1) / G`` of the output's float32 size per
  device: ``2 (G - 1) * C_out * H * W * 4`` bytes per block over all devices.
* The stem output (``stem_width * H * W`` float32) is sent from device 0 to the ``G - 1``
  others before the first block, by both the separable network and the baseline. It is
  reported as its own line; ``ratio`` leaves it out and ``ratio_with_stem`` adds it to both.
* Live bytes count only the payloads that can reach the head (``_liveness.py``): what a plan
  sends. ``live_ratio`` is their share of the same baseline; the search charges these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from snnas.space import PointPolicy, SearchSpace, senders

__all__ = ["CommReport", "PointBytes", "baseline_block_bytes", "communication", "stem_bytes"]

_FP32 = 4


@dataclass(frozen=True)
class PointBytes:
    """Bytes of one transmission point."""

    point: int
    block: int
    perm: tuple[int, ...]
    sparsity: float
    dtype: str
    channels: int  # stream width of one device at the point
    n_send: int  # channels each sender sends
    size: int  # height = width
    senders: int  # devices with s(i) != i
    bytes_per_sender: int
    bytes: int  # all senders together
    baseline_bytes: int  # ring all-reduce of the blocks since the previous point
    live_senders: int  # senders whose payload can reach the head
    live_bytes: int  # their bytes


@dataclass(frozen=True)
class CommReport:
    """Bytes of a policy and of the baseline, per point and in total."""

    points: tuple[PointBytes, ...]
    stem_bytes: int
    policy_bytes: int
    baseline_bytes: int
    live_policy_bytes: int  # payloads that can reach the head
    live_stem_bytes: int  # the stem sent only to devices with live blocks

    @property
    def ratio(self) -> float:
        """Policy bytes over baseline bytes, stem excluded on both sides."""
        return self.policy_bytes / self.baseline_bytes

    @property
    def live_ratio(self) -> float:
        """Live policy bytes over baseline bytes, stem excluded on both sides."""
        return self.live_policy_bytes / self.baseline_bytes

    @property
    def ratio_with_stem(self) -> float:
        """The same with the stem broadcast added to both sides."""
        return (self.policy_bytes + self.stem_bytes) / (self.baseline_bytes + self.stem_bytes)

    @property
    def ratio_stem_policy_only(self) -> float:
        """The stem broadcast added to the policy side only (one reading of the paper)."""
        return (self.policy_bytes + self.stem_bytes) / self.baseline_bytes

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "points": [
                {
                    **{k: v for k, v in vars(p).items() if k != "perm"},
                    "perm": list(p.perm),
                    "ratio": p.bytes / p.baseline_bytes if p.baseline_bytes else None,
                }
                for p in self.points
            ],
            "stem_bytes": self.stem_bytes,
            "policy_bytes": self.policy_bytes,
            "baseline_bytes": self.baseline_bytes,
            "live_policy_bytes": self.live_policy_bytes,
            "live_stem_bytes": self.live_stem_bytes,
            "ratio": self.ratio,
            "live_ratio": self.live_ratio,
            "ratio_with_stem": self.ratio_with_stem,
            "ratio_stem_policy_only": self.ratio_stem_policy_only,
        }


def baseline_block_bytes(space: SearchSpace, block_index: int) -> int:
    """Ring all-reduce bytes (all devices) of one block's float32 output in the baseline."""
    block = space.arch.blocks[block_index]
    g = space.groups
    return 2 * (g - 1) * block.out_width * block.out_size**2 * _FP32


def point_bytes(space: SearchSpace, point: int, decision: PointPolicy) -> tuple[int, int, int]:
    """(n_send, bytes per sender, senders) of one point under one decision."""
    geo = space.arch.points[point]
    n_send = decision.n_send(geo.channels)
    per_sender = n_send * geo.size * geo.size * decision.bytes_per_element
    return n_send, per_sender, senders(decision.perm)


def communication(space: SearchSpace, policy: Mapping[str, Any]) -> CommReport:
    """Bytes sent by ``policy`` against the all-reduce baseline."""
    from snnas.cost._liveness import liveness

    decisions = space.resolve(policy)
    live = liveness(space, policy)
    rows = []
    previous = -1
    for geo, dec in zip(space.arch.points, decisions, strict=True):
        n_send, per_sender, count = point_bytes(space, geo.index, dec)
        base = sum(baseline_block_bytes(space, b) for b in range(previous + 1, geo.block + 1))
        previous = geo.block
        live_here = [t for t in live.live_transfers if t.point == geo.index]
        rows.append(
            PointBytes(
                geo.index,
                geo.block,
                dec.perm,
                dec.sparsity,
                dec.dtype,
                geo.channels,
                n_send,
                geo.size,
                count,
                per_sender,
                per_sender * count,
                base,
                len(live_here),
                sum(t.bytes for t in live_here),
            )
        )
    baseline = sum(baseline_block_bytes(space, b.index) for b in space.arch.blocks)
    per_device_stem = stem_bytes(space)
    return CommReport(
        tuple(rows),
        (space.groups - 1) * per_device_stem,
        sum(r.bytes for r in rows),
        baseline,
        sum(r.live_bytes for r in rows),
        len(live.stem_receivers) * per_device_stem,
    )


def stem_bytes(space: SearchSpace) -> int:
    """Bytes of the stem's output sent to one other device (float32)."""
    net = space.network
    return net.stem_width * net.input_size**2 * _FP32
