"""The one loop that executes device programs: against a :class:`Transport` (how a payload
is sent, received, and when a device waits) with an optional :class:`FaultPolicy` (which
device is missing from which point, and what stands in for it).

Every way a plan is run or predicted goes through :func:`run`: ``plan verify`` and the
degraded execution (:class:`~snnas.engine.MailboxTransport`, every device in this process),
``snnas run`` (``snnas.runtime.GlooTransport``, one device per process, with and without
parity devices) and the cost model's prediction (:class:`~snnas.engine.SimulatedTransport`,
a simulated clock per device).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from snnas.engine._program import WIRE_DTYPES, Program, Receive, Send
from snnas.errors import PlanError

__all__ = ["FaultPolicy", "Route", "Trace", "Transport", "Unavailable", "run"]

#: Where a receive is served from: ``(src, tag)`` of a transfer, or a tensor made here.
Route = tuple[int, int] | Tensor
#: ``trace(device, kind, start, end, label)``: kind "compute", "send" or "recv" (seconds on
#: ``time.perf_counter``'s clock).
Trace = Callable[[int, str, float, float, str], None]


class Unavailable(Exception):
    """Raised by :meth:`Transport.receive` when a payload will never arrive (its sender is
    gone, or the fault policy gave up on it); the fault policy then says what stands in."""

    def __init__(self, peer: int, reason: str) -> None:
        super().__init__(reason)
        self.peer, self.reason = peer, reason


class Transport(ABC):
    """How payloads move between devices.

    A transport that holds every device in one process returns None from :meth:`receive`
    when the payload is not there yet (the engine runs the other devices meanwhile); one
    device per process blocks in :meth:`receive` instead, until the payload arrives, the
    ``give_up`` callback says to stop (:class:`Unavailable`) or its deadline passes.
    """

    def begin(self, device: int, image: int) -> None:  # noqa: B027 - optional hook
        """``device`` starts ``image`` (e.g. posts its receives)."""

    @abstractmethod
    def send(self, device: int, send: Send, tensor: Tensor, image: int) -> None:
        """Start moving ``tensor`` from ``device`` to ``send.to`` (tag ``send.tag``)."""

    def send_tagged(self, device: int, to: int, tag: int, tensor: Tensor, image: int) -> None:
        """Start moving a tensor that is not one of the plan's sends (a stand-in)."""
        raise PlanError(f"this transport cannot send stand-ins (device {device} to {to})")

    @abstractmethod
    def receive(
        self,
        device: int,
        receive: Receive,
        src: int,
        tag: int,
        image: int,
        give_up: Callable[[], bool] | None = None,
    ) -> Tensor | None:
        """The payload from ``src`` under ``tag`` for ``receive``; None when it is not there
        yet (in-process transports); raises :class:`Unavailable` when it never will be."""

    def end(self, device: int, image: int) -> None:  # noqa: B027 - optional hook
        """``device`` finished ``image``."""


class FaultPolicy:
    """What happens around a missing device: by default, nothing is missing.

    A policy decides, per device and image, whether a send leaves (:meth:`post`), where a
    receive is served from (:meth:`route`: the sender, a stand-in sender, or a tensor made
    here), what a parity device's stream at a point is used for (:meth:`on_state`), when a
    blocked receive is given up (:meth:`give_up`) and what replaces a payload that never
    arrives (:meth:`substitute`).
    """

    def post(self, device: int, send: Send, image: int) -> bool:
        """Whether ``device`` sends ``send`` in ``image``."""
        return True

    def route(self, device: int, receive: Receive, image: int) -> Route:
        """Where ``device``'s ``receive`` is served from."""
        return (receive.src, receive.tag)

    def on_state(
        self, device: int, point: int | None, tensor: Tensor, image: int, transport: Transport
    ) -> None:
        """A parity device's stream after ``point``'s block (None: the stem)."""

    def give_up(self, device: int, receive: Receive, route: tuple[int, int], image: int,
                waited_s: float) -> bool:  # fmt: skip
        """Whether a blocked receive stops waiting (then :meth:`substitute` serves it)."""
        return False

    def received(self, device: int, receive: Receive, image: int) -> None:
        """A payload arrived (from its sender or a stand-in sender)."""

    def send_failed(self, device: int, send: Send, image: int, reason: Unavailable) -> None:
        """A send could not be started (its receiver is gone); default: the failure."""
        raise reason

    def substitute(self, device: int, receive: Receive, image: int, reason: Unavailable) -> Route:
        """What serves a receive whose payload never arrives (default: the failure)."""
        raise reason


def _check(device: int, receive: Receive, tensor: Tensor, batch: int) -> None:
    expected = (batch, *receive.shape)
    dtype = WIRE_DTYPES[receive.wire_dtype]
    if tuple(tensor.shape) != expected or tensor.dtype != dtype:
        raise PlanError(
            f"device {device} expected {expected} {receive.wire_dtype} from device "
            f"{receive.src}, got {tuple(tensor.shape)} {tensor.dtype}"
        )


def run(
    programs: Mapping[int, Program],
    transport: Transport,
    image: int = 0,
    *,
    batch: int = 1,
    fault: FaultPolicy | None = None,
    trace: Trace | None = None,
) -> dict[int, Tensor]:
    """Run device programs on one image (or batch) to the end; what each device returned
    (its answer), by device.

    Sends go to the transport unless the fault policy holds them back; receives are served
    from where the policy routes them, checked against the receive's shape and wire dtype.
    With several programs a device whose payload is not there yet waits while the others
    run; a set of programs that can never finish is refused (:class:`PlanError`).
    """
    policy = fault if fault is not None else FaultPolicy()
    active = dict(programs)
    requests: dict[int, Any] = {}
    answers: dict[int, Tensor] = {}

    def advance(d: int, value: Tensor | None) -> None:
        tic = time.perf_counter() if trace is not None else 0.0
        try:
            requests[d] = active[d].send(value) if d in requests else next(active[d])
        except StopIteration as stop:
            requests.pop(d, None)
            del active[d]
            if stop.value is not None:
                answers[d] = stop.value
        if trace is not None:
            trace(d, "compute", tic, time.perf_counter(), "")

    def receive(d: int, r: Receive) -> Tensor | None:
        route = policy.route(d, r, image)
        while True:
            if isinstance(route, Tensor):
                return route.expand(batch, *route.shape[1:])
            src, tag = route
            where, tic = (src, tag), time.perf_counter()

            def stop(where: tuple[int, int] = where, tic: float = tic) -> bool:
                return policy.give_up(d, r, where, image, time.perf_counter() - tic)

            try:
                got = transport.receive(d, r, src, tag, image, stop)
                if got is not None:
                    policy.received(d, r, image)
                return got
            except Unavailable as gone:
                route = policy.substitute(d, r, image, gone)

    for d in list(active):
        transport.begin(d, image)
    for d in list(active):
        advance(d, None)
    while active:
        moved = False
        for d in list(active):
            kind, op, tensor = requests[d]
            if kind == "state":
                policy.on_state(d, op, tensor, image, transport)
            elif kind == "send":
                if policy.post(d, op, image):
                    tic = time.perf_counter()
                    try:
                        transport.send(d, op, tensor, image)
                    except Unavailable as gone:
                        policy.send_failed(d, op, image, gone)
                    if trace is not None:
                        trace(d, "send", tic, time.perf_counter(), _label(op))
                tensor = None
            else:
                tic = time.perf_counter()
                tensor = receive(d, op)
                if tensor is None:
                    continue
                if trace is not None:
                    trace(d, "recv", tic, time.perf_counter(), _label(op))
                _check(d, op, tensor, batch)
            advance(d, tensor if kind == "recv" else None)
            moved = True
        if not moved:
            waiting = {d: (requests[d][1].src, requests[d][1].point) for d in active}
            raise PlanError(f"the plan cannot finish: devices wait on (sender, point) {waiting}")
    for d in programs:
        transport.end(d, image)
    return answers


def _label(op: Send | Receive) -> str:
    if isinstance(op, Send):
        return f"send p{op.point} to {op.to}" if op.point is not None else "stem"
    return f"recv p{op.point} from {op.src}" if op.point is not None else "stem"
