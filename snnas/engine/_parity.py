"""A parity device's program and the degraded rules as the engine applies them (docs/plan.md,
"Parity devices"; the design: docs/parity.md).

:func:`run_parity_device` runs a parity device (a generator like
:func:`~snnas.engine.run_device` that also yields its stream at every point: what its
stand-ins are cut from), :class:`Erasure` is one degraded rule of a plan (``parity.rules``).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from snnas.engine._engine import FaultPolicy, Route, Transport
from snnas.engine._program import WIRE_DTYPES, DeviceCompute, Receive, Send, transfer_tag
from snnas.errors import PlanError

__all__ = [
    "Erasure",
    "ErasureFault",
    "ParityCompute",
    "ParityNet",
    "encoder_update",
    "imputed",
    "run_parity_device",
    "standin_payload",
]


@dataclass(frozen=True)
class Erasure:
    """One degraded rule of a plan (``parity.rules``): data device ``device`` unavailable from
    transmission point ``from_point`` on, as the engine applies it."""

    device: int
    from_point: int
    answer_by: int
    standins: Mapping[tuple[int, int], Mapping[str, Any]]  # (point or -1, dst) -> stand-in

    @classmethod
    def from_json(cls, rule: Mapping[str, Any]) -> Erasure:
        """From a rule of the plan."""
        table = {(s["point"], s["dst"]): s for s in rule["standins"]}
        return cls(rule["device"], rule["from_point"], rule["answer_by"], table)

    def missing(self, src: int, point: int | None) -> bool:
        """Whether ``src``'s transfer at ``point`` (None: the stem) never arrives."""
        if src != self.device:
            return False
        return self.from_point == 0 if point is None else point >= self.from_point

    def standin(self, point: int | None, dst: int) -> Mapping[str, Any] | None:
        """What replaces the missing transfer to ``dst`` (None: ``dst`` stands in itself)."""
        return self.standins.get((-1 if point is None else point, dst))

    def sends(self, device: int, point: int | None) -> list[Mapping[str, Any]]:
        """The stand-ins ``device`` sends at ``point`` (None: its stem output)."""
        key = -1 if point is None else point
        return [s for (q, _), s in self.standins.items() if q == key and s["by"] == device]


def imputed(impute: Mapping[str, Tensor], point: int, device: int, channels: int,
            size: int, dtype: str) -> Tensor:  # fmt: skip
    """``impute{point}[device][:channels]`` as a payload (1, channels, H, W) in the wire dtype
    (what a receiver adds for a missing payload nobody stands in for, (P2))."""
    mean = impute[f"impute{point}"][device, :channels]
    return mean.view(1, channels, 1, 1).expand(1, channels, size, size).to(WIRE_DTYPES[dtype])


def standin_payload(state: Tensor, standin: Mapping[str, Any]) -> Tensor:
    """What a parity device sends for a stand-in: its stream's first channels."""
    return state[:, : standin["channels"]].to(WIRE_DTYPES[standin["dtype"]]).contiguous()


def encoder_update(enc_entry: Mapping[str, Any], enc: Tensor, width: int,
                   weights: Mapping[str, Tensor]) -> Tensor:  # fmt: skip
    """(P1): what the encodings of one point add to the parity stream, (B, w, H, W).
    ``enc`` (B, G, m, H, W) holds every data device's encoding (zeros: sent nothing)."""
    q, m = enc_entry["point"], enc_entry["channels"]
    if enc_entry["encoder"] == "concat":
        add = torch.einsum("cgm,bgmhw->bchw", weights[f"encoder.{q}.weight"], enc)
    elif enc_entry["encoder"] == "sum":
        add = F.pad(torch.einsum("g,bgmhw->bmhw", weights[f"encoder.{q}.sum"], enc),
                    (0, 0, 0, 0, 0, width - m))  # fmt: skip
    else:  # mirror: only what the shadowed data device receives
        add = enc.new_zeros(enc.shape[0], width, *enc.shape[-2:])
    mirror = enc_entry["mirror"]
    if mirror is not None:
        n = mirror["channels"]
        payload = F.pad(enc[:, mirror["from"], : min(m, n)], (0, 0, 0, 0, 0, width - min(m, n)))
        add = add + payload
    return add


class ParityCompute(DeviceCompute, Protocol):
    """What a parity device computes with: a data device's operations and its encoders."""

    def run_encoder(self, enc_entry: Mapping[str, Any], enc: Tensor, width: int) -> Tensor:
        """What the encodings of one point add to the parity stream (:func:`encoder_update`)."""


class ParityNet:
    """A parity device's layers (a :class:`DeviceCompute`) with its encoder weights."""

    def __init__(self, net: DeviceCompute, weights: Mapping[str, Tensor]) -> None:
        self.net, self.weights = net, weights

    def run_stem(self, x: Tensor) -> Tensor:
        """The stem."""
        return self.net.run_stem(x)

    def run_block(self, b: int, x: Tensor) -> Tensor:
        """Block ``b``."""
        return self.net.run_block(b, x)

    def run_head(self, x: Tensor) -> Tensor:
        """The head."""
        return self.net.run_head(x)

    def run_encoder(self, enc_entry: Mapping[str, Any], enc: Tensor, width: int) -> Tensor:
        """:func:`encoder_update` with this device's weights."""
        return encoder_update(enc_entry, enc, width, self.weights)


def run_parity_device(
    net: ParityCompute,
    entry: Mapping[str, Any],
    points: Sequence[Mapping[str, Any]],
    groups: int,
    image: Tensor,
) -> Generator[tuple[str, Any, Any], Tensor | None, Tensor | None]:
    """A parity device on one batch: yields ``("state", point, stream)`` at the stem
    (point None) and at every transmission point (what its stand-ins are cut from; resume
    with None) and ``("recv", Receive, None)`` for every encoding (resume with the tensor);
    returns the answer (parity device 0) or None."""
    receives = [Receive.from_json(r) for r in entry["receives"]]
    encoders = {e["point"]: e for e in entry["encoders"]}
    blocks = set(entry["blocks"])
    y = net.run_stem(image)
    yield ("state", None, y)

    def encodings(q: int) -> Generator[tuple[str, Any, Any], Tensor | None, Tensor]:
        e, p = encoders[q], points[q]
        enc = y.new_zeros(y.shape[0], groups, e["channels"], p["size"], p["size"])
        for r in (r for r in receives if r.point == q):
            got = yield ("recv", r, None)
            if got is None:
                raise PlanError(f"the engine resumed parity receive {r.point} without a payload")
            enc[:, r.src, : r.channels[1]] = got.to(torch.float32)
        return net.run_encoder(e, enc, p["channels"])

    for b in range(max(blocks, default=-1) + 1):
        if b in blocks:
            y = net.run_block(b, y)
        for q, e in encoders.items():
            if e["after_block"] == b and e["send_block"] < b:
                y = y + (yield from encodings(q))
        for p in points:
            if p["send_block"] == b:
                yield ("state", p["point"], y)
                e = encoders.get(p["point"])
                if e is not None and e["after_block"] == b:
                    y = y + (yield from encodings(p["point"]))
    if not entry["head"]:
        return None
    return net.run_head(y)


class ErasureFault(FaultPolicy):
    """A degraded rule applied to every device of one process (``plan verify``): the
    unavailable device's payloads from its point on never leave it; each receiver adds the
    rule's stand-in instead (sent by a parity device, imputed, or its own stream)."""

    def __init__(self, erasure: Erasure | None, impute: Mapping[str, Tensor]) -> None:
        self.erasure, self.impute = erasure, impute
        self.states: dict[int, dict[int | None, Tensor]] = {}

    def post(self, device: int, send: Send, image: int) -> bool:
        """A payload of the unavailable device from its point on never leaves it."""
        return self.erasure is None or not self.erasure.missing(device, send.point)

    def route(self, device: int, receive: Receive, image: int) -> Route:
        """The sender, or the rule's stand-in for a missing payload."""
        r, erasure = receive, self.erasure
        if erasure is None or not erasure.missing(r.src, r.point):
            return (r.src, r.tag)
        s = erasure.standin(r.point, device)
        if s is None:  # a parity device in its own data device's slot: its own stream
            spec = {"channels": r.channels[1], "dtype": r.wire_dtype}
            return standin_payload(self.states[device][r.point], spec)
        if s["by"] is None:
            if r.point is None:
                raise PlanError(f"the rule imputes device {r.src}'s stem copy: nothing to impute")
            return imputed(self.impute, r.point, r.src, s["channels"], r.shape[1], r.wire_dtype)
        return (s["by"], transfer_tag("standin", r.point))

    def on_state(
        self, device: int, point: int | None, tensor: Tensor, image: int, transport: Transport
    ) -> None:
        """Keep the stream; send the stand-ins the rule asks of this device."""
        self.states.setdefault(device, {})[point] = tensor
        erasure = self.erasure
        if erasure is None or (point is None and erasure.from_point != 0):
            return
        for s in erasure.sends(device, point):
            tag = transfer_tag("standin", point)
            transport.send_tagged(device, s["dst"], tag, standin_payload(tensor, s), image)
