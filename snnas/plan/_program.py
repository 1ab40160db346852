"""A device's part of a plan as a program: its network and the order of its operations.

Every device follows the forward pass's order (``snnas/arch.py``): within block ``b`` it
computes the block, adds what arrived for ``b`` from earlier blocks, sends, then adds what
was sent to it in block ``b``. :func:`device_ops` lists those operations from the plan's
device entry; :class:`DeviceNet` holds the device's own convolutions (batch norm folded);
:func:`run_device` executes the operations as a generator that yields every send and every
receive to a *driver*, which moves the tensors: a mailbox in one process (``plan verify``),
``torch.distributed`` point-to-point between processes (``snnas run``).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnas.arch import Architecture
from snnas.space import DTYPES, NetworkConfig

__all__ = [
    "WIRE_DTYPES",
    "DeviceNet",
    "Op",
    "Receive",
    "Send",
    "architecture_of",
    "device_ops",
    "run_device",
]

WIRE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
assert set(WIRE_DTYPES) == set(DTYPES)

#: Tags within an image: 0 the stem's copy, ``1 + point`` a payload, ``ENCODING_TAG + 1 +
#: point`` an encoding to a parity device, ``STANDIN_TAG + 1 + point`` a parity device's
#: stand-in (``STANDIN_TAG``: its stem output), all below ``1 << 12``.
ENCODING_TAG = 1 << 10
STANDIN_TAG = 1 << 11


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


#: ("input",) | ("stem",) | ("block", b) | ("send", Send) | ("recv", Receive) | ("head",)
Op = tuple[Any, ...]


def device_ops(entry: Mapping[str, Any]) -> list[Op]:
    """The operations of one device of a plan, in execution order."""
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


def architecture_of(plan: Mapping[str, Any]) -> Architecture:
    """The geometry a plan was made for (from its ``network`` and ``schedule``)."""
    net = dict(plan["network"])
    net["stage_widths"] = tuple(net["stage_widths"])
    sched = plan["schedule"]
    return Architecture(NetworkConfig(**net), sched["groups"], sched["alpha"], sched["overlap"])


class _Block(nn.Module):
    """One device's part of a bottleneck block, batch norm folded (torchvision's order)."""

    def __init__(self, weights: Mapping[str, Tensor], prefix: str, stride: int, groups: int):
        super().__init__()
        self.conv1 = _conv(weights, prefix + "conv1", 1, 1)
        self.conv2 = _conv(weights, prefix + "conv2", stride, groups, padding=1)
        self.conv3 = _conv(weights, prefix + "conv3", 1, 1)
        self.shortcut = (
            _conv(weights, prefix + "shortcut", stride, 1)
            if prefix + "shortcut.weight" in weights
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = F.relu(self.conv1(x))  # (B, m, H, W)
        out = F.relu(self.conv2(out))  # (B, m, H/s, W/s)
        out = self.conv3(out)  # (B, w, H/s, W/s)
        return F.relu(out + identity)


def _conv(
    weights: Mapping[str, Tensor], name: str, stride: int, groups: int, padding: int = 0
) -> nn.Conv2d:
    w = weights[name + ".weight"]
    conv = nn.Conv2d(
        w.shape[1] * groups,
        w.shape[0],
        w.shape[2],
        stride=stride,
        padding=padding,
        groups=groups,
        bias=True,
    )
    with torch.no_grad():
        conv.weight.copy_(w)
        assert conv.bias is not None
        conv.bias.copy_(weights[name + ".bias"])
    return conv


class DeviceNet(nn.Module):
    """A device's own layers, built from its weights file (float32, eval only)."""

    def __init__(
        self,
        arch: Architecture,
        blocks: Sequence[int],
        weights: Mapping[str, Tensor],
        scale: int = 1,
    ) -> None:
        super().__init__()
        # 3x3 groups on one device (a parity device: ``bottleneck_scale`` times as many)
        paths = arch.network.cardinality // arch.groups * scale
        self.stem = _conv(weights, "stem", 1, 1, padding=1) if "stem.weight" in weights else None
        self.blocks = nn.ModuleDict(
            {str(b): _Block(weights, f"blocks.{b}.", arch.blocks[b].stride, paths) for b in blocks}
        )
        self.fc: nn.Linear | None = None
        if "fc.weight" in weights:
            w = weights["fc.weight"]
            self.fc = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                self.fc.weight.copy_(w)
                self.fc.bias.copy_(weights["fc.bias"])
        self.requires_grad_(False)  # inference only: no autograd graph, ever
        self.eval()

    def run_stem(self, x: Tensor) -> Tensor:
        """The stem: 3x3 convolution (batch norm folded) and ReLU."""
        assert self.stem is not None
        return F.relu(self.stem(x))

    def run_block(self, b: int, x: Tensor) -> Tensor:
        """Block ``b`` on this device's stream."""
        out: Tensor = self.blocks[str(b)](x)
        return out

    def run_head(self, x: Tensor) -> Tensor:
        """Global average pool and the classifier: the logits."""
        assert self.fc is not None
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def payload(x: Tensor, send: Send) -> Tensor:
    """What goes on the wire: the sent channels in the wire dtype, contiguous."""
    first, end = send.channels
    return x[:, first:end].to(WIRE_DTYPES[send.wire_dtype]).contiguous()


def add_payload(x: Tensor, received: Tensor, receive: Receive) -> Tensor:
    """Eq. (2): the payload (back in float32) added to the receiver's first channels."""
    first, end = receive.channels
    out = x.clone()
    out[:, first:end] = x[:, first:end] + received.to(x.dtype)
    return out


def run_device(
    net: DeviceNet, ops: Sequence[Op], image: Tensor | None = None
) -> Generator[tuple[str, Any, Any], Tensor | None, Tensor | None]:
    """Execute one device's operations on one batch.

    Yields ``("send", Send, tensor)`` for every payload (the driver delivers it and resumes
    the generator) and ``("recv", Receive, None)`` for every payload needed now (the driver
    resumes it with the tensor, as it came off the wire). Returns the logits on the device
    that holds the head, else ``None``.
    """
    x: Tensor | None = None
    logits: Tensor | None = None
    for op in ops:
        kind = op[0]
        if kind == "input":
            if image is None:
                raise ValueError("this device takes the input image")
            x = image
        elif kind == "stem":
            assert x is not None
            x = net.run_stem(x)
        elif kind == "block":
            assert x is not None
            x = net.run_block(op[1], x)
        elif kind == "send":
            assert x is not None
            yield ("send", op[1], payload(x, op[1]))
        elif kind == "recv":
            received = yield ("recv", op[1], None)
            assert received is not None
            receive: Receive = op[1]
            if receive.kind == "stem":
                x = received.to(torch.float32)  # the stem's copy starts this device's stream
            else:
                assert x is not None
                x = add_payload(x, received, receive)
        elif kind == "head":
            assert x is not None
            logits = net.run_head(x)
    return logits
