"""A simulated clock per device: the engine runs a plan's device programs on meta tensors
(shapes only, nothing computed) and prices every operation (what ``snnas.cost.latency``
predicts with).

Each device has a clock. A compute op (stem, block, encoder, head) advances its device's
clock by its price (``price(device, kind, index)``: the cost model prices it from a device
profile). A send costs the sender ``send_s``, then occupies the sender's link (one transfer
at a time, in the sender's program order) for ``transfer_s(bytes)``; the payload arrives
when the link is done. A receive waits until the payload has arrived and costs the receiver
``recv_s``. The programs are the ones a plan runs (:func:`~snnas.engine.device_entries`),
parity devices, encodings and stand-ins included, so the prediction counts exactly the
transfers and computations of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from snnas.arch import Architecture
from snnas.engine._engine import Transport, run
from snnas.engine._parity import run_parity_device
from snnas.engine._program import Program, Receive, Send, device_ops, run_device

__all__ = ["Price", "SimulatedNet", "SimulatedTransport", "simulate_programs"]

#: ``price(device, kind, index, macs)``: seconds of one compute op of ``device``; kind
#: "stem", "block" (index: the block), "encoder" (index: the point; ``macs``: its
#: multiply-accumulates) or "head" (``macs`` 0 where the pricer knows them).
Price = Callable[[int, str, int, int], float]

_META = torch.device("meta")


class SimulatedNet:
    """A device's compute on a simulated clock: every op advances ``clock[device]`` by its
    price and returns a meta tensor of the op's output shape."""

    def __init__(self, device: int, arch: Architecture, clock: dict[int, float],
                 price: Price) -> None:  # fmt: skip
        self.device, self.arch, self.clock, self.price = device, arch, clock, price

    def _charge(self, kind: str, index: int, macs: int = 0) -> None:
        self.clock[self.device] += self.price(self.device, kind, index, macs)

    def run_stem(self, x: Tensor) -> Tensor:
        """The stem: (B, stem width, H, W)."""
        self._charge("stem", -1)
        net = self.arch.network
        return torch.empty(x.shape[0], net.stem_width, *x.shape[-2:], device=_META)

    def run_block(self, b: int, x: Tensor) -> Tensor:
        """Block ``b``: (B, out width, out size, out size)."""
        self._charge("block", b)
        blk = self.arch.blocks[b]
        return torch.empty(x.shape[0], blk.out_width, blk.out_size, blk.out_size, device=_META)

    def run_head(self, x: Tensor) -> Tensor:
        """The head: (B, classes)."""
        self._charge("head", -1)
        return torch.empty(x.shape[0], self.arch.network.num_classes, device=_META)

    def run_encoder(self, enc_entry: Mapping[str, Any], enc: Tensor, width: int) -> Tensor:
        """A parity device's encoder at one point: (B, w, H, W)."""
        groups, m, size = enc.shape[1], int(enc_entry["channels"]), enc.shape[-1]
        macs = {"concat": groups * m * width, "sum": groups * m}.get(enc_entry["encoder"], 0)
        self._charge("encoder", int(enc_entry["point"]), macs * size * size)
        return torch.zeros(enc.shape[0], width, *enc.shape[-2:], device=_META)


class SimulatedTransport(Transport):
    """Payloads on simulated links (module docstring)."""

    def __init__(
        self,
        clock: dict[int, float],
        transfer_s: Callable[[int], float],
        send_s: float = 0.0,
        recv_s: float = 0.0,
    ) -> None:
        self.clock, self.transfer_s = clock, transfer_s
        self.send_s, self.recv_s = send_s, recv_s
        self.link_free: dict[int, float] = {}
        self.box: dict[tuple[int, int, int], tuple[Tensor, float]] = {}

    def send(self, device: int, send: Send, tensor: Tensor, image: int) -> None:
        """The sender pays ``send_s``; its link carries the payload when free."""
        self.send_tagged(device, send.to, send.tag, tensor, image)

    def send_tagged(self, device: int, to: int, tag: int, tensor: Tensor, image: int) -> None:
        """As :meth:`send`, for a stand-in."""
        self.clock[device] += self.send_s
        start = max(self.clock[device], self.link_free.get(device, 0.0))
        nbytes = tensor.numel() * tensor.element_size()
        self.link_free[device] = done = start + self.transfer_s(nbytes)
        self.box[(device, to, tag)] = (tensor, done)

    def receive(
        self,
        device: int,
        receive: Receive,
        src: int,
        tag: int,
        image: int,
        give_up: Callable[[], bool] | None = None,
    ) -> Tensor | None:
        """None until the sender has sent it; then the receiver's clock moves to its arrival
        (if later) and pays ``recv_s``."""
        found = self.box.pop((src, device, tag), None)
        if found is None:
            return None
        tensor, arrival = found
        self.clock[device] = max(self.clock[device], arrival) + self.recv_s
        return tensor


def simulate_programs(
    entries: Sequence[Mapping[str, Any]],
    arch: Architecture,
    points: Sequence[Mapping[str, Any]],
    price: Price,
    transport_of: Callable[[dict[int, float]], SimulatedTransport],
) -> dict[int, float]:
    """Run every device entry's program on the simulated clock; each device's clock when it
    finished (seconds from the image's arrival at the input devices)."""
    clock = {int(e["device"]): 0.0 for e in entries}
    net = arch.network
    image = torch.empty(1, net.input_channels, net.input_size, net.input_size, device=_META)
    programs: dict[int, Program] = {}
    for e in entries:
        d = int(e["device"])
        sim = SimulatedNet(d, arch, clock, price)
        if e["role"] == "parity":
            programs[d] = run_parity_device(sim, e, points, arch.groups, image)
        else:
            programs[d] = run_device(sim, device_ops(e), image if e["input"] else None)
    run(programs, transport_of(clock))
    return clock
