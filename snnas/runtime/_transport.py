"""Point-to-point transfers between device processes: torch.distributed with gloo.

One process group spans the plan's devices. Payloads go with ``isend`` / ``irecv``; a
receiver posts every receive of an image when it starts the image and waits for each one
only where the schedule adds it, so with alpha > 1 a transfer is in flight while the
receiver computes. Every wait has a deadline in seconds (never torch's 30 minutes): a peer
that died or hangs surfaces as a :class:`TransferFailed` naming the peer, the point and the
image. Bytes are counted from the tensors actually handed to ``isend``.
"""

from __future__ import annotations

import datetime
import re
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from snnas.plan import Receive, Send
from snnas.plan._program import WIRE_DTYPES

__all__ = ["GlooTransport", "TransferFailed", "clean_message", "message_tag"]

#: Tags of one image: 0 for the stem's copy, 1 + point for a transfer (below this bound).
_TAGS_PER_IMAGE = 1 << 12
#: Tags past every image's: the end-of-run statistics.
STATS_TAG = (1 << 30) + 1


def message_tag(image: int, tag: int) -> int:
    """The gloo tag of one transfer of one image (unique per sender, receiver and image)."""
    return (image % ((1 << 30) // _TAGS_PER_IMAGE)) * _TAGS_PER_IMAGE + tag


class TransferFailed(Exception):
    """A transfer did not complete: who, what and why."""

    def __init__(
        self, device: int, peer: int, point: int | None, image: int, action: str, reason: str
    ) -> None:
        self.device, self.peer, self.point, self.image = device, peer, point, image
        self.action, self.reason = action, reason
        what = "the stem's copy" if point is None else f"point {point}"
        if action == "recv":
            text = f"device {device}: no {what} payload from device {peer} for image {image}"
        else:
            text = f"device {device}: could not send {what} of image {image} to device {peer}"
        super().__init__(f"{text} ({reason})")

    def to_json(self) -> dict[str, Any]:
        """JSON form, for the launcher."""
        return {
            "device": self.device,
            "peer": self.peer,
            "point": self.point,
            "image": self.image,
            "action": self.action,
            "reason": self.reason,
            "message": str(self),
        }


_SOURCE = re.compile(r"\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*")


def clean_message(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's text without C++ source locations, bounded."""
    text = _SOURCE.sub("", str(exc)).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _reason(exc: BaseException, timeout_s: float) -> str:
    text = str(exc)
    if "Connection reset" in text or "Connection closed" in text or "closed by peer" in text:
        return "connection closed: the process is gone"
    if "timed out" in text.lower() or "timeout" in text.lower():
        return f"nothing within {timeout_s:g} s"
    return clean_message(exc, 200)


@dataclass
class GlooTransport:
    """Sends and receives of one device process, with byte counts and deadlines."""

    rank: int
    timeout_s: float
    bytes_sent: dict[int, int] = field(default_factory=dict)  # peer -> bytes
    _recvs: dict[tuple[int, int], tuple[Any, Tensor]] = field(default_factory=dict)
    _sends: list[tuple[Any, Send, int]] = field(default_factory=list)

    @property
    def deadline(self) -> datetime.timedelta:
        """A wait's deadline."""
        return datetime.timedelta(seconds=self.timeout_s)

    def post_receives(self, receives: list[Receive], image: int, batch: int = 1) -> None:
        """Post every receive of ``image`` (buffers in the wire dtype)."""
        for r in receives:
            buffer = torch.empty((batch, *r.shape), dtype=WIRE_DTYPES[r.wire_dtype])
            work = dist.irecv(buffer, src=r.src, tag=message_tag(image, r.tag))
            self._recvs[(image, r.tag)] = (work, buffer)

    def receive(self, r: Receive, image: int) -> tuple[Tensor, float]:
        """Wait for a posted receive; the payload and the seconds spent waiting."""
        work, buffer = self._recvs.pop((image, r.tag))
        tic = time.perf_counter()
        try:
            work.wait(timeout=self.deadline)
        except RuntimeError as exc:
            raise TransferFailed(
                self.rank, r.src, r.point, image, "recv", _reason(exc, self.timeout_s)
            ) from None
        return buffer, time.perf_counter() - tic

    def send(self, s: Send, tensor: Tensor, image: int) -> float:
        """Start sending ``tensor``; the seconds the call took."""
        tic = time.perf_counter()
        try:
            work = dist.isend(tensor, dst=s.to, tag=message_tag(image, s.tag))
        except RuntimeError as exc:
            raise TransferFailed(
                self.rank, s.to, s.point, image, "send", _reason(exc, self.timeout_s)
            ) from None
        self.bytes_sent[s.to] = self.bytes_sent.get(s.to, 0) + tensor.numel() * (
            tensor.element_size()
        )
        self._sends.append((work, s, image))
        return time.perf_counter() - tic

    def finish_sends(self) -> float:
        """Wait until every started send has been taken by its receiver."""
        tic = time.perf_counter()
        for work, s, image in self._sends:
            try:
                work.wait(timeout=self.deadline)
            except RuntimeError as exc:
                raise TransferFailed(
                    self.rank, s.to, s.point, image, "send", _reason(exc, self.timeout_s)
                ) from None
        self._sends.clear()
        return time.perf_counter() - tic
