"""A device's part of a plan as a program: the order of its operations and their execution.

Every device follows the forward pass's order (``snnas/arch.py``): within block ``b`` it
computes the block, adds what arrived for ``b`` from earlier blocks, sends, then adds what
was sent to it in block ``b``. :func:`device_ops` lists those operations from a device entry
(a plan's, or :func:`snnas.engine.device_entries`'s); :func:`run_device` executes them as a
generator that yields every send and every receive to the engine (``snnas.engine.run``),
which moves the tensors through a transport. What computes is any :class:`DeviceCompute`:
the device's own convolutions (``snnas.plan.DeviceNet``) or a simulated clock
(:class:`snnas.engine.SimulatedNet`).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from snnas.errors import PlanError
from snnas.space import DTYPES

__all__ = [
    "ENCODING_TAG",
    "STANDIN_TAG",
    "WIRE_DTYPES",
    "DeviceCompute",
    "Op",
    "Program",
    "Receive",
    "Send",
    "add_payload",
    "device_ops",
    "payload",
    "run_device",
    "transfer_tag",
]

WIRE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
if set(WIRE_DTYPES) != set(DTYPES):  # pragma: no cover - a programming error, caught at import
    raise ImportError(f"wire dtypes {sorted(WIRE_DTYPES)} differ from the space's {sorted(DTYPES)}")

#: Tags within an image: 0 the stem's copy, ``1 + point`` a payload, ``ENCODING_TAG + 1 +
#: point`` an encoding to a parity device, ``STANDIN_TAG + 1 + point`` a parity device's
#: stand-in (``STANDIN_TAG``: its stem output), all below ``1 << 12``.
ENCODING_TAG = 1 << 10
STANDIN_TAG = 1 << 11

#: What a device program yields: ("send", Send, tensor), ("recv", Receive, None) or, on a
#: parity device, ("state", point, stream).
Request = tuple[str, Any, Any]
#: A device program: a generator of requests, resumed with a payload after a receive.
Program = Generator[Request, "Tensor | None", "Tensor | None"]


def transfer_tag(kind: str, point: int | None) -> int:
    """The message tag of a transfer within an image (unique per sender, receiver, point)."""
    if point is None:
        return STANDIN_TAG if kind == "standin" else 0
    offset = {"transfer": 0, "encoding": ENCODING_TAG, "standin": STANDIN_TAG}[kind]
    return offset + point + 1


@dataclass(frozen=True)
class Send:
    """A payload a device sends: the first ``channels[1]`` channels of its stream."""

    kind: str  # "stem" (the first transmission), "transfer" or "encoding" (to a parity device)
    point: int | None  # transmission point (None for the stem)
    after_block: int  # -1 for the stem
    to: int
    channels: tuple[int, int]  # [first, end)
    wire_dtype: str
    shape: tuple[int, int, int]  # (channels, H, W) of one image
    bytes: int  # per image

    @property
    def tag(self) -> int:
        """The message tag of this transfer within an image (unique per sender and point)."""
        return transfer_tag(self.kind, self.point)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Send:
        """From a plan's ``sends`` entry."""
        return cls(
            d["kind"],
            d["point"],
            d["after_block"],
            d["to"],
            (d["channels"][0], d["channels"][1]),
            d["wire_dtype"],
            (d["shape"][0], d["shape"][1], d["shape"][2]),
            d["bytes"],
        )

    def to_json(self) -> dict[str, Any]:
        """A plan's ``sends`` entry."""
        return {
            "kind": self.kind,
            "point": self.point,
            "after_block": self.after_block,
            "to": self.to,
            "channels": list(self.channels),
            "wire_dtype": self.wire_dtype,
            "shape": list(self.shape),
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class Receive:
    """A payload a device receives and adds to the first channels of its stream (the stem's
    copy starts the stream instead)."""

    kind: str
    point: int | None
    src: int
    sent_after_block: int
    after_block: int  # added after this block (-1: the stem, before block 0)
    channels: tuple[int, int]
    wire_dtype: str
    shape: tuple[int, int, int]
    bytes: int

    @property
    def tag(self) -> int:
        """The message tag (the sender's :attr:`Send.tag`)."""
        return transfer_tag(self.kind, self.point)

    @property
    def same_block(self) -> bool:
        """Whether it was sent in the block it is added in (added after that block's sends)."""
        return self.after_block == self.sent_after_block

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Receive:
        """From a plan's ``receives`` entry."""
        return cls(
            d["kind"],
            d["point"],
            d["from"],
            d["sent_after_block"],
            d["after_block"],
            (d["channels"][0], d["channels"][1]),
            d["wire_dtype"],
            (d["shape"][0], d["shape"][1], d["shape"][2]),
            d["bytes"],
        )

    def to_json(self) -> dict[str, Any]:
        """A plan's ``receives`` entry."""
        return {
            "kind": self.kind,
            "point": self.point,
            "from": self.src,
            "sent_after_block": self.sent_after_block,
            "after_block": self.after_block,
            "channels": list(self.channels),
            "wire_dtype": self.wire_dtype,
            "shape": list(self.shape),
            "bytes": self.bytes,
        }


#: ("input",) | ("stem",) | ("block", b) | ("send", Send) | ("recv", Receive) | ("head",)
Op = tuple[Any, ...]


def device_ops(entry: Mapping[str, Any]) -> list[Op]:
    """The operations of one data device, in execution order."""
    sends = [Send.from_json(s) for s in entry["sends"]]
    receives = [Receive.from_json(r) for r in entry["receives"]]
    ops: list[Op] = []
    if entry["input"]:
        ops.append(("input",))
    if entry["stem"]:
        ops.append(("stem",))
    ops += [("send", s) for s in sends if s.kind == "stem"]
    ops += [("recv", r) for r in receives if r.kind == "stem"]
    blocks = set(entry["blocks"])
    last = max([-1, *blocks, *(s.after_block for s in sends), *(r.after_block for r in receives)])
    for b in range(last + 1):
        if b in blocks:
            ops.append(("block", b))
        ops += [("recv", r) for r in receives if r.after_block == b and not r.same_block]
        ops += [("send", s) for s in sends if s.after_block == b and s.kind != "stem"]
        ops += [("recv", r) for r in receives if r.after_block == b and r.same_block]
    if entry["head"]:
        ops.append(("head",))
    return ops


class DeviceCompute(Protocol):
    """What a device program computes with: its own layers, or a simulated clock."""

    def run_stem(self, x: Tensor) -> Tensor:
        """The stem on the image."""

    def run_block(self, b: int, x: Tensor) -> Tensor:
        """Block ``b`` on the device's stream."""

    def run_head(self, x: Tensor) -> Tensor:
        """Pool and classifier: the logits."""


def payload(x: Tensor, send: Send) -> Tensor:
    """What goes on the wire: the sent channels in the wire dtype, contiguous."""
    first, end = send.channels
    # a copy, always: the stream is added to in place after the send, while it is in flight
    return x[:, first:end].to(WIRE_DTYPES[send.wire_dtype], copy=True).contiguous()


def add_payload(x: Tensor, received: Tensor, receive: Receive) -> Tensor:
    """Eq. (2): the payload (back in float32) added to the receiver's first channels, in a
    new tensor (what a traced graph records; :func:`run_device` adds in place)."""
    first, end = receive.channels
    out = x.clone()
    out[:, first:end] = x[:, first:end] + received.to(x.dtype)  # (B, n, H, W)
    return out


def add_payload_(x: Tensor, received: Tensor, receive: Receive) -> Tensor:
    """:func:`add_payload` in place: ``x`` must be the device's own stream."""
    first, end = receive.channels
    x[:, first:end] += received.to(x.dtype)  # (B, n, H, W)
    return x


def _need(x: Tensor | None, what: str) -> Tensor:
    if x is None:
        raise PlanError(f"the device program reaches {what} before it has a stream")
    return x


def run_device(
    net: DeviceCompute, ops: Sequence[Op], image: Tensor | None = None
) -> Generator[tuple[str, Any, Any], Tensor | None, Tensor | None]:
    """Execute one device's operations on one batch.

    Yields ``("send", Send, tensor)`` for every payload (the engine delivers it and resumes
    the generator) and ``("recv", Receive, None)`` for every payload needed now (the engine
    resumes it with the tensor, as it came off the wire). Returns the logits on the device
    that holds the head, else ``None``.
    """
    x: Tensor | None = None
    owned = False  # whether x is this device's own tensor (in-place adds allowed)
    logits: Tensor | None = None
    for op in ops:
        kind = op[0]
        if kind == "input":
            if image is None:
                raise PlanError("this device takes the input image, and has none")
            x, owned = image, False
        elif kind == "stem":
            x, owned = net.run_stem(_need(x, "the stem")), True
        elif kind == "block":
            x, owned = net.run_block(op[1], _need(x, f"block {op[1]}")), True
        elif kind == "send":
            yield ("send", op[1], payload(_need(x, "a send"), op[1]))
        elif kind == "recv":
            received = yield ("recv", op[1], None)
            if received is None:
                raise PlanError(f"the engine resumed a receive of {op[1].kind} without a payload")
            receive: Receive = op[1]
            if receive.kind == "stem":
                x, owned = received.to(torch.float32), False  # the stem's copy starts the stream
            else:
                x = _need(x, "a receive")
                if not owned:
                    x, owned = x.clone(), True
                x = add_payload_(x, received, receive)
        elif kind == "head":
            logits = net.run_head(_need(x, "the head"))
    return logits
