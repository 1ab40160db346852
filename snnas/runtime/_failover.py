"""The runtime's fault policies (``snnas.engine.FaultPolicy``): what a device process does
when a peer is late, hung or gone (docs/runtime.md, "Failover").

:class:`FailStop` is a plan without parity devices: a payload that does not come within
``--timeout`` seconds, or a peer that is gone, fails the run with one line naming the peer,
the point and the image (:class:`TransferFailed`).

:class:`StoreFailover` is a plan with parity devices: G data devices and r parity devices run
as G + r processes of the same loop. A data device ``j`` that dies (``--fail-device J
--fail-at I``: it kills itself with SIGKILL when it reaches image I) is noticed by whoever
waits on it: gloo fails the pending receive from (or send to) a dead peer at once
("connection closed"), and a peer silent for ``--timeout`` seconds counts as dead. The first
to notice writes ``down`` in the shared TCPStore (``compare_set``: every survivor agrees on
one device and one image); the others learn it from their own failed waits or from a thread
watching that key. From image I on, every survivor follows the plan's degraded rule
``(j, 0)`` (``parity.rules``): stand-ins from the parity device or imputation constants in
place of j's payloads and encodings, nothing sent to j, the answer from ``answer_by``. With
``--deadline-ms`` a payload later than that is replaced under the rule ``(j, p)`` of the
image (a straggler), agreed the same way per image (``from/{image}``).

Times published in the store (a kill, a detection, an image taken and answered) are on
``time.monotonic()``: one clock for every process of one machine.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

import torch.distributed as dist
from torch import Tensor

from snnas.engine import (
    STANDIN_TAG,
    Erasure,
    FaultPolicy,
    Receive,
    Route,
    Send,
    Transport,
    Unavailable,
    imputed,
    standin_payload,
    transfer_tag,
)
from snnas.errors import PlanError
from snnas.plan import LoadedPlan
from snnas.runtime._transport import GlooTransport, TransferFailed

__all__ = ["NEVER", "FailStop", "StoreFailover", "die"]

#: The process group's own timeout: never reached (deadlines are the fault policy's).
NEVER = datetime.timedelta(days=1)


def die(store: Any, rank: int, image: int) -> None:
    """Fault injection: a real crash (SIGKILL), no goodbye to anyone."""
    if store is not None:
        store.set("killed", json.dumps({"device": rank, "image": image, "time": time.monotonic()}))
    os.kill(os.getpid(), signal.SIGKILL)


class _Injected(FaultPolicy):
    """The straggler of ``--slow-device``: it sleeps ``--delay-ms`` before every send."""

    def __init__(self, args: Any, transport: GlooTransport) -> None:
        self.args, self.rank, self.transport = args, args.rank, transport
        self.slow = args.slow_device == args.rank and args.delay_ms > 0

    def delay(self) -> None:
        """Sleep like a straggler, if this device is one."""
        if self.slow:
            time.sleep(self.args.delay_ms / 1e3)

    def begin_image(self, image: int) -> None:
        """Before ``image`` starts."""

    def end_image(self, image: int) -> None:
        """After ``image`` ended."""


class FailStop(_Injected):
    """A plan without parity devices: any missing payload fails the run (module docstring)."""

    def __init__(self, args: Any, transport: GlooTransport) -> None:
        super().__init__(args, transport)
        transport.give_up_send = self._give_up_send

    def post(self, device: int, send: Send, image: int) -> bool:
        """Every send leaves (after the straggler's delay)."""
        self.delay()
        return True

    def give_up(self, device: int, receive: Receive, route: tuple[int, int], image: int,
                waited_s: float) -> bool:  # fmt: skip
        """Past ``--timeout``: the run fails."""
        if waited_s > self.args.timeout_s:
            raise TransferFailed(self.rank, route[0], receive.point, image, "recv",
                                 f"nothing within {self.args.timeout_s:g} s")  # fmt: skip
        return False

    def substitute(self, device: int, receive: Receive, image: int, reason: Unavailable) -> Route:
        """Nothing stands in: the run fails."""
        raise TransferFailed(self.rank, reason.peer, receive.point, image, "recv", reason.reason)

    def send_failed(self, device: int, send: Send, image: int, reason: Unavailable) -> None:
        """The run fails."""
        raise TransferFailed(self.rank, send.to, send.point, image, "send", reason.reason)

    def _give_up_send(self, peer: int, send: Send | None, image: int, waited: float) -> bool:
        if waited > self.args.timeout_s:
            point = send.point if send is not None else None
            reason = "connection closed" if waited == float("inf") else (
                f"nothing within {self.args.timeout_s:g} s")  # fmt: skip
            raise TransferFailed(self.rank, peer, point, image, "send", reason)
        return False


class StoreFailover(_Injected):
    """A plan with parity devices (module docstring): one device's knowledge of unavailable
    devices, agreed through the store, and the streams its stand-ins are cut from.

    Two kinds of knowledge: ``down`` (device j died at image I: from image I on it is
    missing, the plan's rule ``(j, 0)`` applies after image I) and, per image, ``from/{i}``
    (device j missed from point p on in image i: the smallest point at which a receiver
    missed j's transfer, kept with ``compare_set``). Every publication is also an event
    (``event/{n}``) that a watcher thread in every device waits for, so a parity device
    learns within a store round trip that it owes stand-ins.
    """

    def __init__(self, plan: LoadedPlan, args: Any, store: Any, transport: GlooTransport) -> None:
        super().__init__(args, transport)
        if plan.parity is None:
            raise PlanError(f"{plan.folder}: failover needs a plan with parity devices")
        self.plan, self.store, self.g = plan, store, plan.groups
        self.rules = {(r["device"], r["from_point"]): r for r in plan.parity["rules"]}
        self.down: tuple[int, int] | None = None  # (device, first image without it)
        self.detection: dict[str, Any] | None = None
        self.late: dict[int, tuple[int, int]] = {}  # image -> (device, from point)
        self.armed: set[int] = set()  # images whose payloads have a --deadline-ms
        self.states: dict[int, dict[int | None, Tensor]] = {}  # image -> point -> stream
        self.sent_standins: set[tuple[int, int | None, int]] = set()
        self.impute = plan.impute()
        self._tried: set[tuple[int, int, int]] = set()  # (image, peer, point) missed once
        self._patience: dict[tuple[int, int, int], float] = {}  # extra seconds to wait
        self._lock = threading.Lock()
        self._stop = threading.Event()
        transport.skip = self._skip
        transport.give_up_send = self._give_up_send
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def close(self) -> None:
        """Stop the watcher (before the process exits: no thread left in C++)."""
        self._stop.set()
        self._event({"kind": "close", "by": self.rank})
        self._watcher.join(timeout=5.0)

    # -- agreement ----------------------------------------------------------------------
    def _event(self, info: dict[str, Any]) -> None:
        n = self.store.add("events", 1)
        self.store.set(f"event/{n}", json.dumps(info))

    def _learn_down(self, value: bytes) -> None:
        info = json.loads(value.decode())
        with self._lock:
            if self.down is None:
                self.down = (int(info["device"]), int(info["image"]))
                self.detection = info

    def _learn_late(self, image: int, value: bytes) -> None:
        info = json.loads(value.decode())
        with self._lock:
            self.late[image] = (int(info["device"]), int(info["point"]))

    def _watch(self) -> None:
        host, _, port = str(self.args.address).rpartition(":")
        watcher = dist.TCPStore(host, int(port), None, is_master=False, timeout=NEVER)
        n = 1
        while not self._stop.is_set():
            watcher.wait([f"event/{n}"])
            info = json.loads(watcher.get(f"event/{n}").decode())
            n += 1
            if info["kind"] == "down":
                self._learn_down(watcher.get("down"))
            elif info["kind"] == "late":
                self._learn_late(info["image"], watcher.get(f"from/{info['image']}"))

    def declare(self, peer: int, image: int, point: int | None, how: str) -> bool:
        """Say ``peer`` died (from ``image`` on, missed at ``point``); True when the agreed
        device is ``peer``."""
        info = {"device": peer, "image": image, "point": point, "how": how,
                "by": self.rank, "time": time.monotonic()}  # fmt: skip
        value = self.store.compare_set("down", "", json.dumps(info))
        self._learn_down(value)
        if json.loads(value.decode())["by"] == self.rank and value == json.dumps(info).encode():
            self._event({"kind": "down"})
        if self.down is None or self.down[0] != peer:
            return False
        if point is not None and peer < self.g:  # a lost parity device: nothing to replace
            self.missed(peer, image, point)
        return True

    def missed(self, peer: int, image: int, point: int) -> bool:
        """Record that ``peer``'s transfer at ``point`` of ``image`` is missing (the image's
        rule then starts at the smallest such point); False when another device is already
        the image's missing one."""
        key = f"from/{image}"
        want = json.dumps({"device": peer, "point": point})
        current = self.store.compare_set(key, "", want)
        while True:
            info = json.loads(current.decode())
            if info["device"] != peer:
                self._learn_late(image, current)
                return False
            if info["point"] <= point:
                break
            current = self.store.compare_set(key, current.decode(), want)
        self._learn_late(image, self.store.get(key))
        self._event({"kind": "late", "image": image})
        return True

    def missing(self, image: int) -> int | None:
        """The data device missing in ``image`` (as far as this device knows)."""
        down = self.down
        if down is not None and image >= down[1]:
            return down[0]
        late = self.late.get(image)
        return late[0] if late is not None else None

    def erasure(self, image: int) -> Erasure | None:
        """The rule in force for ``image``: ``(j, 0)`` after a failure's image, ``(j, p)``
        with the image's smallest missed point, None when nothing is missing (yet)."""
        down, late = self.down, self.late.get(image)
        if down is not None and image > down[1] and down[0] < self.g:
            return Erasure.from_json(self.rules[(down[0], 0)])
        if late is not None:
            return Erasure.from_json(self.rules[late])
        return None

    def table(self, device: int) -> Erasure:
        """What replaces ``device``'s transfers (the same at a point under every rule that
        covers it)."""
        return Erasure.from_json(self.rules[(device, 0)])

    def _gone(self, src: int, image: int, point: int | None) -> bool:
        """Whether ``src``'s payload at ``point`` of ``image`` is known to be replaced."""
        at = 0 if point is None else point
        down = self.down
        if down is not None and down[0] == src and image > down[1]:
            return True
        late = self.late.get(image)
        return late is not None and late[0] == src and late[1] <= at

    def _skip(self, src: int, image: int) -> bool:
        """Receives not posted: from the device lost before ``image``."""
        down = self.down
        return down is not None and down[0] == src and image > down[1]

    # -- the engine's hooks ---------------------------------------------------------------
    def begin_image(self, image: int) -> None:
        """Keep the image's streams; drop those every survivor is done with."""
        self.states[image] = {}
        if self.rank == 0:
            self.armed.add(image)  # the source: the image starts here
        if self.rank >= self.g and len(self.states) > 2:
            done = self._done_by_all()
            for kept in [k for k in self.states if k <= done]:
                del self.states[kept]

    def end_image(self, image: int) -> None:
        """Stand-ins still owed; tell the others this image is done here."""
        self.catch_up()
        self.store.set(f"done/{self.rank}", str(image))

    def _done_by_all(self) -> int:
        """The last image every surviving device has finished (-1: none)."""
        last = None
        for rank in range(self.plan.world):
            if rank == self.rank or (self.down is not None and self.down[0] == rank):
                continue
            value = int(self.store.get(f"done/{rank}").decode()) if self.store.check(
                [f"done/{rank}"]) else -1  # fmt: skip
            last = value if last is None else min(last, value)
        return -1 if last is None else last

    def post(self, device: int, send: Send, image: int) -> bool:
        """Fault injection at ``--fail-point``; nothing to the lost device; a payload already
        replaced still leaves (its receive is posted) but without the straggler's delay."""
        at = 0 if send.point is None else send.point
        args = self.args
        if args.fail_device == self.rank and image == args.fail_at and at >= args.fail_point:
            self.transport.flush()  # what it sent before the point arrives ...
            die(self.store, self.rank, image)  # ... then it dies
        if self.down is not None and send.to == self.down[0] and image >= self.down[1]:
            return False  # never taken
        if not self._gone(self.rank, image, send.point):
            self.delay()
        return True

    def route(self, device: int, receive: Receive, image: int) -> Route:
        """The sender, or the rule's stand-in once the sender is known to be missing."""
        if self._gone(receive.src, image, receive.point):
            return self._standin(receive, image)
        return (receive.src, receive.tag)

    def received(self, device: int, receive: Receive, image: int) -> None:
        """The image has reached this device: ``--deadline-ms`` applies to it."""
        self.armed.add(image)

    def give_up(self, device: int, receive: Receive, route: tuple[int, int], image: int,
                waited_s: float) -> bool:  # fmt: skip
        """Stop waiting for a payload that is replaced: its sender died or is declared
        missing in this image, or (``--deadline-ms``) is late and nobody else is missing."""
        self.catch_up()
        src, at = route[0], 0 if receive.point is None else receive.point
        key = (image, src, route[1])
        limit = self.args.timeout_s + self._patience.get(key, 0.0)
        if route[1] >= STANDIN_TAG:  # a stand-in: its sender is the one that must not fail
            if waited_s > limit:
                raise TransferFailed(self.rank, src, receive.point, image, "recv",
                                     "a second failure")  # fmt: skip
            return False
        if self._gone(src, image, receive.point):
            return True  # never sent (a failure) or replaced anyway (a straggler)
        deadline = self.args.deadline_ms
        late = bool(deadline) and waited_s > (deadline or 0.0) / 1e3
        if late and image in self.armed and src < self.g and (image, src, at) not in self._tried:
            self._tried.add((image, src, at))
            if self.missed(src, image, at):
                return True
        if waited_s > limit:
            if self.declare(src, image, at, f"nothing within {self.args.timeout_s:g} s"):
                return True
            # Another device is the lost one: this one gets one more timeout (it may be busy
            # replacing), then its silence is a second failure, which r = 1 cannot survive.
            if key in self._patience:
                raise TransferFailed(self.rank, src, receive.point, image, "recv",
                                     "a second failure")  # fmt: skip
            self._patience[key] = self.args.timeout_s
        return False

    def substitute(self, device: int, receive: Receive, image: int, reason: Unavailable) -> Route:
        """The rule's stand-in for a payload given up or from a peer that is gone."""
        if reason.reason != "given up":
            at = 0 if receive.point is None else receive.point
            if not self.declare(reason.peer, image, at, "connection closed"):
                raise TransferFailed(self.rank, reason.peer, receive.point, image, "recv",
                                     reason.reason)  # fmt: skip
        self.catch_up()  # a parity device that just learned: stand-ins first
        return self._standin(receive, image)

    def send_failed(self, device: int, send: Send, image: int, reason: Unavailable) -> None:
        """A send to a peer that is gone: fine if it is the lost device (lost since the
        first image it did not take)."""
        first = self.transport.first_unfinished(send.to)
        since = image if first is None else min(first, image)
        if not self.declare(send.to, since, None, "connection closed"):
            raise TransferFailed(self.rank, send.to, send.point, image, "send", reason.reason)

    def on_state(
        self, device: int, point: int | None, tensor: Tensor, image: int, transport: Transport
    ) -> None:
        """A parity device's stream at a point: kept, and cut into the stand-ins it owes."""
        self.states.setdefault(image, {})[point] = tensor
        self.standins(image)

    def _give_up_send(self, peer: int, send: Send | None, image: int, waited: float) -> bool:
        if self.down is not None and peer == self.down[0]:
            return True  # a send to the device that died: never taken
        if waited == float("inf"):  # the peer is gone
            return self.declare(peer, image, None, "connection closed")
        if waited > self.args.timeout_s + self._patience.get((image, peer, -1), 0.0):
            if self.declare(peer, image, None, f"nothing within {self.args.timeout_s:g} s"):
                return True
            if (image, peer, -1) in self._patience:  # a second silent device: not survivable
                point = None if send is None else send.point
                raise TransferFailed(self.rank, peer, point, image, "send", "a second failure")
            self._patience[(image, peer, -1)] = self.args.timeout_s
        return False

    # -- stand-ins ----------------------------------------------------------------------
    def standins(self, image: int) -> None:
        """Send the stand-ins this (parity) device owes for ``image`` so far."""
        erasure = self.erasure(image)
        if erasure is None:
            return
        for point, state in list(self.states.get(image, {}).items()):
            for s in erasure.sends(self.rank, point):
                key = (image, point, s["dst"])
                if key in self.sent_standins:
                    continue
                self.sent_standins.add(key)
                tensor = standin_payload(state, s)
                try:
                    self.transport.send_tagged(self.rank, s["dst"], transfer_tag("standin", point),
                                               tensor, image)  # fmt: skip
                except Unavailable as gone:
                    if not self.declare(s["dst"], image, None, "connection closed"):
                        raise TransferFailed(self.rank, s["dst"], point, image, "send",
                                             gone.reason) from None  # fmt: skip

    def catch_up(self) -> None:
        """Stand-ins owed for every image still kept (others may be waiting on them)."""
        for kept in list(self.states):
            self.standins(kept)

    def _standin(self, r: Receive, image: int) -> Route:
        """What replaces a missing payload or encoding of ``r.src`` (the plan's rule, (P2))."""
        s: Mapping[str, Any] | None = self.table(r.src).standin(r.point, self.rank)
        if s is None:  # a parity device in its own data device's slot
            spec = {"channels": r.channels[1], "dtype": r.wire_dtype}
            return standin_payload(self.states[image][r.point], spec)
        if s["by"] is None:
            if r.point is None:
                raise PlanError(f"the rule imputes device {r.src}'s stem copy: nothing to impute")
            return imputed(self.impute, r.point, r.src, s["channels"], r.shape[1], r.wire_dtype)
        return (int(s["by"]), transfer_tag("standin", r.point))
