"""Point-to-point transfers between device processes: the engine's transport over
torch.distributed with gloo.

One process group spans the plan's devices. Payloads go with ``isend`` / ``irecv``; a device
posts every receive of an image before the image starts (the next image's as soon as the
current one ends, into buffers allocated once and reused every other image) and waits for
each one only where the schedule adds it, so with alpha > 1 a transfer is in flight while the
receiver computes. Sends are not waited for at the end of an image: at most ``window`` of
them are in flight, the oldest is waited for when a new one would exceed that.

Waits never expire inside gloo (an expired gloo wait closes the pair): one helper thread per
peer and direction waits for that peer's transfers in the order they were posted, and the
device's fault policy decides, while it polls, when a payload is given up (a deadline, a
peer declared lost). A peer that died surfaces as :class:`~snnas.engine.Unavailable` (the
fault policy then says what stands in, or raises :class:`TransferFailed` naming the peer,
the point and the image). Bytes are counted from the tensors actually handed to ``isend``.
"""

from __future__ import annotations

import collections
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from snnas.engine import WIRE_DTYPES, Receive, Send, Transport, Unavailable

__all__ = ["GlooTransport", "TransferFailed", "clean_message", "message_tag"]

#: Tags of one image: 0 for the stem's copy, 1 + point for a transfer (below this bound).
_TAGS_PER_IMAGE = 1 << 12
#: Seconds between two looks at a pending transfer (and at the fault policy).
POLL_S = 0.0005


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


def reason_of(exc: BaseException) -> str:
    """Why a transfer failed, in a few words (a dead peer: "connection closed")."""
    text = str(exc)
    if "Connection reset" in text or "Connection closed" in text or "closed by peer" in text:
        return "connection closed: the process is gone"
    return clean_message(exc, 200)


@dataclass
class Pending:
    """One posted transfer, completed by its peer's waiter thread."""

    work: Any
    peer: int
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


_WAITERS: list[_Waiter] = []


def pending_transfers() -> int:
    """Transfers of this process still waited for by a helper thread (inside gloo)."""
    return sum(w.busy for w in _WAITERS)


class _Waiter:
    """One thread that waits for one peer's transfers (one direction) in posting order."""

    def __init__(self) -> None:
        self.busy = 0  # transfers queued and not completed
        self.lock = threading.Lock()
        _WAITERS.append(self)
        self.queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            try:
                item.work.wait()
            except BaseException as exc:  # a dead peer: "connection closed"
                item.error = exc
            with self.lock:
                self.busy -= 1
            item.done.set()


#: ``give_up_send(peer, send or None, image, waited_s)``: True drops a send that is not
#: taken (its receiver is lost); may raise.
SendGiveUp = Callable[[int, "Send | None", int, float], bool]


class GlooTransport(Transport):
    """Sends and receives of one device process, with byte counts (module docstring)."""

    def __init__(self, rank: int, receives: Iterable[Receive], window: int = 16) -> None:
        self.rank = rank
        self.receives = list(receives)
        self.window = window
        self.bytes_sent: dict[int, int] = {}  # peer -> bytes
        self.standin_bytes = 0
        self.skip: Callable[[int, int], bool] = lambda src, image: False  # receives not posted
        self.give_up_send: SendGiveUp = lambda peer, send, image, waited: False
        self._recvs: dict[tuple[int, int, int], tuple[Pending, Tensor]] = {}
        self._buffers: dict[tuple[int, int, int], Tensor] = {}  # (image % 2, src, tag)
        self._posted: set[int] = set()
        self._sends: collections.deque[tuple[Pending, Send | None, int, Tensor]] = (
            collections.deque()
        )
        self._loose: list[tuple[Pending, Tensor]] = []  # stand-ins: nobody may claim them
        self.limit: int | None = None  # images of the run: nothing is posted past them
        self._recv_waiters: dict[int, _Waiter] = {}
        self._send_waiters: dict[int, _Waiter] = {}

    # -- posting ------------------------------------------------------------------------
    def _waiter(self, table: dict[int, _Waiter], peer: int) -> _Waiter:
        if peer not in table:
            table[peer] = _Waiter()
        return table[peer]

    def _enqueue(self, table: dict[int, _Waiter], pending: Pending) -> None:
        waiter = self._waiter(table, pending.peer)
        with waiter.lock:
            waiter.busy += 1
        waiter.queue.put(pending)

    def _irecv(self, src: int, tag: int, buffer: Tensor, image: int) -> Pending:
        try:
            work = dist.irecv(buffer, src=src, tag=message_tag(image, tag))
        except RuntimeError as exc:  # the peer is gone: the wait reports it
            pending = Pending(None, src, error=exc)
            pending.done.set()
            return pending
        pending = Pending(work, src)
        self._enqueue(self._recv_waiters, pending)
        return pending

    def post(self, image: int) -> None:
        """Post every receive of ``image`` (once; buffers reused every other image)."""
        if image in self._posted or (self.limit is not None and image >= self.limit):
            return
        self._posted.add(image)
        self._posted.discard(image - 2)
        for r in self.receives:
            if self.skip(r.src, image):
                continue
            key = (image % 2, r.src, r.tag)
            buffer = self._buffers.get(key)
            if buffer is None:
                buffer = torch.empty((1, *r.shape), dtype=WIRE_DTYPES[r.wire_dtype])
                self._buffers[key] = buffer
            self._recvs[(image, r.src, r.tag)] = (self._irecv(r.src, r.tag, buffer, image), buffer)

    def begin(self, device: int, image: int) -> None:
        """Post the image's receives (unless posted early)."""
        self.post(image)

    def end(self, device: int, image: int) -> None:
        """Post the next image's receives now: they may arrive while this device finishes."""
        self.post(image + 1)

    # -- receiving ----------------------------------------------------------------------
    def receive(
        self,
        device: int,
        receive: Receive,
        src: int,
        tag: int,
        image: int,
        give_up: Callable[[], bool] | None = None,
    ) -> Tensor | None:
        """Wait for the payload (posted now if it was not: a stand-in)."""
        found = self._recvs.pop((image, src, tag), None)
        if found is None:
            buffer = torch.empty((1, *receive.shape), dtype=WIRE_DTYPES[receive.wire_dtype])
            found = (self._irecv(src, tag, buffer, image), buffer)
        pending, buffer = found
        while not pending.done.wait(POLL_S):
            if give_up is not None and give_up():
                # The payload may still come: its buffer is not reused for another image.
                self._buffers.pop((image % 2, src, tag), None)
                raise Unavailable(src, "given up")
        if pending.error is not None:
            self._buffers.pop((image % 2, src, tag), None)
            raise Unavailable(src, reason_of(pending.error))
        return buffer

    def drop(self, image: int) -> None:
        """Forget the receives of ``image`` nobody took (their buffers are not reused)."""
        for key in [k for k in self._recvs if k[0] == image]:
            del self._recvs[key]
            self._buffers.pop((image % 2, key[1], key[2]), None)

    # -- sending ------------------------------------------------------------------------
    def _isend(self, tensor: Tensor, to: int, tag: int, image: int) -> Pending:
        try:
            work = dist.isend(tensor, dst=to, tag=message_tag(image, tag))
        except RuntimeError as exc:  # the peer is gone
            raise Unavailable(to, reason_of(exc)) from None
        self.bytes_sent[to] = self.bytes_sent.get(to, 0) + tensor.numel() * tensor.element_size()
        pending = Pending(work, to)
        self._enqueue(self._send_waiters, pending)
        return pending

    def send(self, device: int, send: Send, tensor: Tensor, image: int) -> None:
        """Start sending ``tensor``; wait for the oldest send when the window is full."""
        pending = self._isend(tensor, send.to, send.tag, image)
        self._sends.append((pending, send, image, tensor))  # the tensor lives until taken
        while len(self._sends) > self.window:
            self._wait_oldest()

    def send_tagged(self, device: int, to: int, tag: int, tensor: Tensor, image: int) -> None:
        """Send a stand-in (not waited for: its receiver may have got the payload)."""
        pending = self._isend(tensor, to, tag, image)
        self.standin_bytes += tensor.numel() * tensor.element_size()
        self._loose.append((pending, tensor))

    def _wait_oldest(self) -> None:
        pending, send, image, _ = self._sends[0]
        tic = time.monotonic()
        while not pending.done.wait(POLL_S):
            if self.give_up_send(pending.peer, send, image, time.monotonic() - tic):
                break
        else:
            if pending.error is not None and not self.give_up_send(
                pending.peer, send, image, float("inf")
            ):
                raise Unavailable(pending.peer, reason_of(pending.error))
        self._sends.popleft()

    def flush(self) -> None:
        """Wait until every send has been taken (or given up)."""
        while self._sends:
            self._wait_oldest()

    def first_unfinished(self, peer: int) -> int | None:
        """The first image whose send to ``peer`` is not known to have been taken."""
        images = [i for p, _, i, _ in self._sends if p.peer == peer and (
            not p.done.is_set() or p.error is not None)]  # fmt: skip
        return min(images, default=None)

    def unclaimed(self) -> int:
        """Stand-ins sent and not (yet) taken."""
        return sum(1 for p, _ in self._loose if not p.done.is_set())

    def close(self) -> None:
        """Stop the waiter threads (every transfer they wait for has completed)."""
        for waiter in (*self._recv_waiters.values(), *self._send_waiters.values()):
            waiter.queue.put(None)

    def pending(self) -> int:
        """Transfers posted and not completed (receives and sends)."""
        recvs = sum(1 for p, _ in self._recvs.values() if not p.done.is_set())
        return recvs + sum(1 for p, *_ in self._sends if not p.done.is_set()) + self.unclaimed()
