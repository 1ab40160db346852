"""One device's process for a plan with parity devices: fail-stop failover (docs/runtime.md,
"Failover").

G data devices and r parity devices run as G + r processes. A data device ``j`` that dies
(``--fail-device J --fail-at I``: it kills itself with SIGKILL when it reaches image I) is
noticed by whoever waits on it: gloo fails the pending receive from (or send to) a dead peer
at once ("connection closed"), and a peer silent for ``--timeout`` seconds counts as dead.
The first to notice writes ``down`` in the shared TCPStore (``compare_set``: every survivor
agrees on one device and one image); the others learn it from their own failed waits or from
a thread watching that key. From image I on, every survivor follows the plan's degraded rule
``(j, 0)`` (``parity.rules``): stand-ins from the parity device or imputation constants in
place of j's payloads and encodings, nothing sent to j, the answer from ``answer_by``.

Waits never expire inside gloo (an expired gloo wait closes the pair, measured): each
pending transfer is waited for by a helper thread under a process-group timeout of a day,
and the device's own loop applies the deadline. Answers go to the store as they are made
(the user's end of the system: a dead device 0 takes nothing with it); at the end every
survivor leaves its figures there and the lowest surviving of device 0 and parity device G
writes the report.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys
import threading
import time
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from snnas.engine import Erasure, ParityNet, imputed, run_parity_device, standin_payload
from snnas.errors import PlanError
from snnas.plan import LoadedPlan, Receive, Send, run_device
from snnas.plan._program import WIRE_DTYPES, transfer_tag
from snnas.runtime._transport import TransferFailed, clean_message, message_tag

__all__ = ["HARD_EXIT", "run_failover_worker"]

#: Set once a device process ran a plan with parity devices: it ends with ``os._exit``.
HARD_EXIT = False

#: The process group's own timeout: never reached (deadlines are applied by the devices).
_NEVER = datetime.timedelta(days=1)
_POLL_S = 0.002


class _Waiter:
    """Waits for one gloo transfer in a helper thread (``Work.is_completed`` does not move
    for gloo point-to-point without a wait)."""

    def __init__(self, work: Any, error: BaseException | None = None) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = error
        if error is not None:  # posting it failed already (the peer is gone)
            self.done.set()
            return
        threading.Thread(target=self._run, args=(work,), daemon=True).start()

    def _run(self, work: Any) -> None:
        try:
            work.wait()
        except BaseException as exc:  # a dead peer: "connection closed"
            self.error = exc
        self.done.set()


class _Device:
    """One device's state across images: what it knows of unavailable devices, its pending
    transfers and the streams its stand-ins are cut from.

    Two kinds of knowledge, both agreed through the store: ``down`` (device j died at image
    I: from image I on it is missing, the plan's rule ``(j, 0)`` applies after image I) and,
    per image, ``from/{i}`` (device j missed from point p on in image i: the smallest point at
    which a receiver missed j's transfer, kept with ``compare_set``). Every publication is
    also an event (``event/{n}``) that a watcher thread in every device waits for, so a
    parity device learns within a store round trip that it owes stand-ins.
    """

    def __init__(self, plan: LoadedPlan, args: Any, store: Any) -> None:
        self.plan, self.args, self.store = plan, args, store
        self.rank, self.g = args.rank, plan.groups
        assert plan.parity is not None
        self.rules = {(r["device"], r["from_point"]): r for r in plan.parity["rules"]}
        self.down: tuple[int, int] | None = None  # (device, first image without it)
        self.detection: dict[str, Any] | None = None
        self.late: dict[int, tuple[int, int]] = {}  # image -> (device, from point)
        self.bytes_sent: dict[int, int] = {}
        self.standin_bytes = 0
        self.sends: list[tuple[_Waiter, int, bool]] = []  # (waiter, to, is a stand-in)
        self.loose: list[_Waiter] = []  # stand-ins sent: not waited for (may go unclaimed)
        self.armed: set[int] = set()  # images whose payloads have a --deadline-ms
        self.states: dict[int, dict[int | None, Tensor]] = {}  # image -> point -> stream
        self.sent_standins: set[tuple[int, int | None, int]] = set()
        self.impute = plan.impute()
        self._lock = threading.Lock()
        self._stop = threading.Event()
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
        watcher = dist.TCPStore(host, int(port), None, is_master=False, timeout=_NEVER)
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
                "by": self.rank, "time": time.time()}  # fmt: skip
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

    # -- transfers ----------------------------------------------------------------------
    def isend(self, tensor: Tensor, to: int, tag: int, image: int, standin: bool = False) -> None:
        try:
            work = dist.isend(tensor, dst=to, tag=message_tag(image, tag))
        except RuntimeError as exc:  # the peer is gone
            if self.declare(to, image, None, "connection closed"):
                return
            raise TransferFailed(self.rank, to, None, image, "send", clean_message(exc)) from None
        nbytes = tensor.numel() * tensor.element_size()
        self.bytes_sent[to] = self.bytes_sent.get(to, 0) + nbytes
        self.standin_bytes += nbytes if standin else 0
        if standin:
            self.loose.append(_Waiter(work))
        else:
            self.sends.append((_Waiter(work), to, standin))

    def irecv(self, src: int, tag: int, shape: tuple[int, ...], dtype: str, image: int) -> Any:
        buffer = torch.empty((1, *shape), dtype=WIRE_DTYPES[dtype])
        try:
            work = dist.irecv(buffer, src=src, tag=message_tag(image, tag))
        except RuntimeError as exc:  # the peer is gone: the wait reports it
            return _Waiter(None, exc), buffer
        return _Waiter(work), buffer

    def wait(
        self, waiter: _Waiter, peer: int, image: int, point: int | None, payload: bool = True
    ) -> bool:
        """Wait for a payload of ``peer`` (or, not ``payload``, for ``peer`` to take a send);
        False when it is to be replaced: ``peer`` died, or is missing in this image from
        ``point`` or earlier, or (``--deadline-ms``) it is late and nobody else is missing in
        this image."""
        tic = time.perf_counter()
        deadline = tic + self.args.timeout_s
        armed = payload and self.args.deadline_ms and image in self.armed
        late_at = tic + self.args.deadline_ms / 1e3 if armed else None
        at = 0 if point is None else point
        while not waiter.done.wait(_POLL_S):
            self.catch_up()
            late = self.late.get(image)
            if payload and late is not None and late[0] == peer and late[1] <= at:
                return False  # never sent (a failure) or replaced anyway (a straggler)
            now = time.perf_counter()
            if late_at is not None and now > late_at and peer < self.g:
                late_at = None
                if self.missed(peer, image, at):
                    return False
            if now > deadline:
                if self.declare(peer, image, at, f"nothing within {self.args.timeout_s:g} s"):
                    return False
                deadline = now + self.args.timeout_s  # someone else is the lost device
        if waiter.error is None:
            if payload:
                self.armed.add(image)  # the image has reached this device: deadlines apply
            return True
        if self.declare(peer, image, at, "connection closed"):
            return False
        raise TransferFailed(self.rank, peer, point, image, "recv", clean_message(waiter.error))

    def finish_sends(self, image: int) -> float:
        """Wait until the image's sends are taken (not those to the lost device; a stand-in
        nobody claims is left behind: they are counted at the end)."""
        tic = time.perf_counter()
        for waiter, to, _ in self.sends:
            if self.missing(image) == to and self.down is not None:
                continue  # a send to the device that died: never taken
            self.wait(waiter, to, image, None, payload=False)
        self.sends.clear()
        return time.perf_counter() - tic

    def standins(self, image: int) -> None:
        """Send the stand-ins this (parity) device owes for ``image`` so far."""
        erasure = self.erasure(image)
        if erasure is None:
            return
        for point, state in list(self.states.get(image, {}).items()):
            for s in erasure.sends(self.rank, point):
                key = (image, point, s["dst"])
                if key not in self.sent_standins:
                    self.sent_standins.add(key)
                    tensor = standin_payload(state, s)
                    self.isend(tensor, s["dst"], transfer_tag("standin", point), image, True)

    def catch_up(self) -> None:
        """Stand-ins owed for every image still kept (others may be waiting on them)."""
        for kept in list(self.states):
            self.standins(kept)

    def substitute(self, r: Receive, image: int) -> Tensor:
        """What replaces a missing payload or encoding of ``r.src`` (the plan's rule, (P2))."""
        s = self.table(r.src).standin(r.point, self.rank)
        if s is None:  # a parity device in its own data device's slot
            spec = {"channels": r.channels[1], "dtype": r.wire_dtype}
            return standin_payload(self.states[image][r.point], spec)
        if s["by"] is None:
            assert r.point is not None
            return imputed(self.impute, r.point, r.src, s["channels"], r.shape[1], r.wire_dtype)
        waiter, buffer = self.irecv(s["by"], transfer_tag("standin", r.point), r.shape,
                                    r.wire_dtype, image)  # fmt: skip
        if not self.wait(waiter, s["by"], image, r.point):
            raise TransferFailed(self.rank, s["by"], r.point, image, "recv", "a second failure")
        result: Tensor = buffer
        return result


def _connect(args: Any) -> Any:
    """Join as :func:`snnas.runtime._worker._connect` does (``--join-timeout``, a one-line
    :class:`RuntimeFailure`), but with a process group that never times out: deadlines are
    the device loop's own (module docstring)."""
    from snnas.errors import RuntimeFailure

    try:
        host, _, port = str(args.address).rpartition(":")
        master = args.rendezvous == "master" and args.rank == 0
        join = datetime.timedelta(seconds=args.join_s)
        store = dist.TCPStore(host, int(port), args.world if master else None,
                              is_master=master, timeout=join,
                              wait_for_workers=False)  # fmt: skip
        dist.init_process_group("gloo", store=dist.PrefixStore("pg", store), rank=args.rank,
                                world_size=args.world, timeout=_NEVER)  # fmt: skip
        dist.barrier()
    except (RuntimeError, ValueError, OSError) as exc:  # torch's DistNetworkError, DistError
        raise RuntimeFailure(
            f"device {args.rank}: could not join the other {args.world - 1} device(s) at "
            f"{args.address} within {args.join_s:g} s ({clean_message(exc, 160)})"
        ) from None
    return store


def run_failover_worker(args: Any, plan: LoadedPlan) -> dict[str, Any] | None:
    """Run one device of a plan with parity devices (module docstring); the reporter
    returns the report."""
    from snnas.runtime._worker import _inputs

    if args.rendezvous == "env":
        raise PlanError(f"{args.plan}: a plan with parity devices needs the store rendezvous "
                        "(snnas run --local, or --rank/--master)")  # fmt: skip
    if args.world != plan.world:
        raise PlanError(f"{args.plan}: the plan has {plan.world} devices, not {args.world}")
    g, rank = plan.groups, args.rank
    entry = plan.device(rank)
    net = plan.net(rank)
    parity = rank >= g
    weights = plan.weights(rank) if parity else {}
    receives = [Receive.from_json(r) for r in entry["receives"]]
    points = plan.data["schedule"]["points"]
    available = int(plan.data["reference"]["splits"].get(args.split, 0))
    count = available if args.images is None else min(args.images, available)
    if count < 1:
        raise PlanError(f"{args.plan}: no {args.split} images to answer")
    images = labels = None
    if entry["input"]:
        images, labels, _ = _inputs(plan, args, count)
    store = _connect(args)
    sys.stderr.write(f"device {rank}: joined {args.world} devices, {count} images\n")
    dev = _Device(plan, args, store)
    global HARD_EXIT
    HARD_EXIT = True
    compute_s = wait_s = 0.0
    answers = rank in (0, g)
    started = time.perf_counter()
    try:
        for i in range(count):
            if args.fail_device == rank and i == args.fail_at + (0 if parity else 1):
                _die(dev, i)  # a parity device, or nothing to send from --fail-point on
            tic, taken = time.perf_counter(), time.time()
            if rank == 0:
                dev.armed.add(i)  # the source: the image starts here
            lost = dev.missing(i) if dev.down is not None and i > dev.down[1] else None
            posted = {}
            for r in receives:
                if r.src != lost:
                    posted[(r.src, r.tag)] = dev.irecv(r.src, r.tag, r.shape, r.wire_dtype, i)
            image = images[i : i + 1] if images is not None else None
            if parity:
                assert image is not None
                program = run_parity_device(ParityNet(net, weights), entry, points, g, image)
            else:
                program = run_device(net, plan.ops[rank], image)
            dev.states[i] = {}
            dev.states.pop(i - 2, None)
            value: Tensor | None = None
            first = True
            while True:
                try:
                    request = next(program) if first else program.send(value)
                except StopIteration as stop:
                    logits = stop.value
                    break
                first, value = False, None
                kind, op, tensor = request
                if kind == "state":
                    dev.states[i][op] = tensor
                    dev.standins(i)
                elif kind == "send":
                    send: Send = op
                    at = 0 if send.point is None else send.point
                    if args.fail_device == rank and i == args.fail_at and at >= args.fail_point:
                        dev.finish_sends(i)  # what it sent before the point arrives ...
                        _die(dev, i)  # ... then it dies
                    late = dev.late.get(i)
                    if late is not None and late[0] == rank and late[1] <= at:
                        continue  # replaced already (this device was late): not wanted
                    if dev.down is None or send.to != dev.missing(i):
                        if args.slow_device == rank and args.delay_ms > 0:
                            time.sleep(args.delay_ms / 1e3)
                        dev.isend(tensor, send.to, send.tag, i)
                else:
                    recv: Receive = op
                    w0 = time.perf_counter()
                    pending = posted.pop((recv.src, recv.tag), None)
                    if pending is not None and dev.wait(pending[0], recv.src, i, recv.point):
                        value = pending[1]
                    else:
                        dev.catch_up()  # a parity device that just learned: stand-ins first
                        value = dev.substitute(recv, i)
                    wait_s += time.perf_counter() - w0
            dev.catch_up()
            wait_s += dev.finish_sends(i)
            if answers and logits is not None:
                latency = time.perf_counter() - tic
                answer = {"logits": logits[0].tolist(), "latency_s": latency,
                          "taken": taken, "answered": time.time()}  # fmt: skip
                store.set(f"answer/{rank}/{i}", json.dumps(answer))
                if i % 10 == 9 or i + 1 == count:
                    store.set("progress", str(i + 1))
        compute_s = time.perf_counter() - started - wait_s
    except TransferFailed as failure:
        store.set(f"failure/{rank}", json.dumps(failure.to_json()))
        raise
    finished = time.perf_counter()
    stats = {"device": rank, "images": count, "compute_s": compute_s, "send_s": 0.0,
             "wait_s": wait_s, "started": started, "finished": finished, "timeline": [],
             "bytes_sent": {str(k): v for k, v in sorted(dev.bytes_sent.items())}}  # fmt: skip
    time.sleep(0.1)  # stand-ins still in flight
    unclaimed = sum(1 for w in dev.loose if not w.done.is_set())
    stats["standin_bytes"], stats["unclaimed_standins"] = dev.standin_bytes, unclaimed
    store.set(f"stats/{rank}", json.dumps(stats))
    store.set(f"finished/{rank}", "1")
    reporter = _reporter(dev, args)
    if reporter != rank:
        _linger(dev, args)
        dev.close()
        return None
    from snnas.runtime._failover_report import build_failover_report

    assert labels is not None
    report = build_failover_report(plan, args, dev, labels, count)
    if args.out is not None:
        from snnas._io import atomic_write_json

        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out / "runtime.json", report)
    store.set("reported", "1")
    dev.close()
    return report


def _die(dev: _Device, image: int) -> None:
    """Fault injection: a real crash (SIGKILL), no goodbye to anyone."""
    dev.store.set("killed", json.dumps({"device": dev.rank, "image": image, "time": time.time()}))
    os.kill(os.getpid(), signal.SIGKILL)


def _reporter(dev: _Device, args: Any) -> int:
    """Device 0 when it survived, else parity device G: wait until one of them is known."""
    deadline = time.perf_counter() + args.timeout_s + 10.0
    while time.perf_counter() < deadline:
        if dev.down is not None and dev.down[0] == 0:
            return dev.plan.groups
        if dev.store.check(["finished/0"]):
            return 0
        time.sleep(0.01)
    raise TransferFailed(args.rank, 0, None, args.images or 0, "recv",
                         "device 0 neither finished nor was declared down")  # fmt: skip


def _linger(dev: _Device, args: Any) -> None:
    """Stay (and keep the gloo pairs open) until the reporter has written the report."""
    deadline = time.perf_counter() + args.timeout_s + 30.0
    while time.perf_counter() < deadline and not dev.store.check(["reported"]):
        time.sleep(0.02)
