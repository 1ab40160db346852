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

from snnas.errors import PlanError
from snnas.plan import LoadedPlan, Receive, Send, run_device
from snnas.plan._parity import Erasure, imputed, run_parity_device, standin_payload
from snnas.plan._program import WIRE_DTYPES, transfer_tag
from snnas.runtime._transport import TransferFailed, clean_message, message_tag

__all__ = ["run_failover_worker"]

#: The process group's own timeout: never reached (deadlines are applied by the devices).
_NEVER = datetime.timedelta(days=1)
_POLL_S = 0.002


class _Waiter:
    """Waits for one gloo transfer in a helper thread (``Work.is_completed`` does not move
    for gloo point-to-point without a wait)."""

    def __init__(self, work: Any) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        threading.Thread(target=self._run, args=(work,), daemon=True).start()

    def _run(self, work: Any) -> None:
        try:
            work.wait()
        except BaseException as exc:  # a dead peer: "connection closed"
            self.error = exc
        self.done.set()


class _Device:
    """One device's state across images: its failure knowledge and pending transfers."""

    def __init__(self, plan: LoadedPlan, args: Any, store: Any) -> None:
        self.plan, self.args, self.store = plan, args, store
        self.rank, self.g = args.rank, plan.groups
        assert plan.parity is not None
        self.rules = {(r["device"], r["from_point"]): r for r in plan.parity["rules"]}
        self.down: tuple[int, int] | None = None  # (device, first image without it)
        self.detection: dict[str, Any] | None = None
        self.bytes_sent: dict[int, int] = {}
        self.sends: list[tuple[_Waiter, int, float]] = []
        self.states: dict[int, dict[int | None, Tensor]] = {}  # image -> point -> stream
        self.sent_standins: set[tuple[int, int | None, int]] = set()
        self.impute = plan.impute()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def close(self) -> None:
        """Stop watching the store (before the process exits: no thread left in C++)."""
        self._stop.set()
        self._watcher.join()

    # -- agreement on who is down -------------------------------------------------------
    def _learn(self, value: bytes) -> None:
        info = json.loads(value.decode())
        with self._lock:
            if self.down is None:
                self.down = (int(info["device"]), int(info["image"]))
                self.detection = info

    def _watch(self) -> None:
        host, _, port = str(self.args.address).rpartition(":")
        watcher = dist.TCPStore(host, int(port), None, is_master=False, timeout=_NEVER)
        while self.down is None and not self._stop.wait(0.005):
            if watcher.check(["down"]):
                self._learn(watcher.get("down"))

    def declare(self, peer: int, image: int, point: int | None, how: str) -> bool:
        """Say ``peer`` is down from ``image`` on; True when the agreed device is ``peer``."""
        info = {"device": peer, "image": image, "point": point, "how": how,
                "by": self.rank, "time": time.time()}  # fmt: skip
        self._learn(self.store.compare_set("down", "", json.dumps(info)))
        return self.down is not None and self.down[0] == peer

    def erasure(self, image: int) -> Erasure | None:
        """The rule in force for ``image`` (a failure applies from its image on, point 0)."""
        down = self.down
        if down is None or image < down[1]:
            return None
        return Erasure.from_json(self.rules[(down[0], 0)])

    # -- transfers ----------------------------------------------------------------------
    def isend(self, tensor: Tensor, to: int, tag: int, image: int) -> None:
        try:
            work = dist.isend(tensor, dst=to, tag=message_tag(image, tag))
        except RuntimeError as exc:  # the peer is gone
            if self.declare(to, image, None, "connection closed"):
                return
            raise TransferFailed(self.rank, to, None, image, "send", clean_message(exc)) from None
        self.bytes_sent[to] = self.bytes_sent.get(to, 0) + tensor.numel() * tensor.element_size()
        self.sends.append((_Waiter(work), to, time.perf_counter()))

    def irecv(self, src: int, tag: int, shape: tuple[int, ...], dtype: str, image: int) -> Any:
        buffer = torch.empty((1, *shape), dtype=WIRE_DTYPES[dtype])
        return _Waiter(dist.irecv(buffer, src=src, tag=message_tag(image, tag))), buffer

    def wait(self, waiter: _Waiter, peer: int, image: int, point: int | None) -> bool:
        """Wait for a transfer with the deadline; False when ``peer`` is (now) down."""
        deadline = time.perf_counter() + self.args.timeout_s
        while not waiter.done.wait(_POLL_S):
            if self.down is not None:
                for kept in list(self.states):
                    self.standins(kept)  # stand-ins owed since the failure: others wait on them
            erasure = self.erasure(image)
            if erasure is not None and erasure.device == peer:
                return False
            if time.perf_counter() > deadline:
                if self.declare(peer, image, point, f"nothing within {self.args.timeout_s:g} s"):
                    return False
                deadline = time.perf_counter() + self.args.timeout_s  # someone else is down
        if waiter.error is None:
            return True
        if self.declare(peer, image, point, "connection closed"):
            return False
        raise TransferFailed(self.rank, peer, point, image, "recv", clean_message(waiter.error))

    def finish_sends(self, image: int) -> float:
        tic = time.perf_counter()
        for waiter, to, _ in self.sends:
            erasure = self.erasure(image)
            if erasure is not None and erasure.device == to:
                continue  # a send to the device that died: never taken
            if not self.wait(waiter, to, image, None):
                continue
        self.sends.clear()
        return time.perf_counter() - tic

    def standins(self, image: int) -> None:
        """Send the stand-ins this (parity) device owes for ``image`` so far."""
        erasure = self.erasure(image)
        if erasure is None:
            return
        for point, state in self.states.get(image, {}).items():
            for s in erasure.sends(self.rank, point):
                key = (image, point, s["dst"])
                if key not in self.sent_standins:
                    self.sent_standins.add(key)
                    tensor = standin_payload(state, s)
                    self.isend(tensor, s["dst"], transfer_tag("standin", point), image)

    def substitute(self, erasure: Erasure, r: Receive, image: int) -> Tensor:
        """What replaces a missing payload or encoding (the plan's rule, (P2))."""
        s = erasure.standin(r.point, self.rank)
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
    host, _, port = str(args.address).rpartition(":")
    master = args.rendezvous == "master" and args.rank == 0
    join = datetime.timedelta(seconds=120)
    store = dist.TCPStore(host, int(port), args.world if master else None, is_master=master,
                          timeout=join, wait_for_workers=False)  # fmt: skip
    dist.init_process_group("gloo", store=dist.PrefixStore("pg", store), rank=args.rank,
                            world_size=args.world, timeout=_NEVER)  # fmt: skip
    dist.barrier()
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
    compute_s = wait_s = 0.0
    answers = rank in (0, g)
    started = time.perf_counter()
    try:
        for i in range(count):
            if args.fail_device == rank and i == args.fail_at:
                store.set("killed", json.dumps({"device": rank, "image": i, "time": time.time()}))
                os.kill(os.getpid(), signal.SIGKILL)  # a real crash: no goodbye to anyone
            tic = time.perf_counter()
            erasure = dev.erasure(i)
            posted = {}
            for r in receives:
                if erasure is None or not erasure.missing(r.src, r.point):
                    posted[(r.src, r.tag)] = dev.irecv(r.src, r.tag, r.shape, r.wire_dtype, i)
            image = images[i : i + 1] if images is not None else None
            if parity:
                assert image is not None
                program = run_parity_device(net, entry, points, weights, g, image)
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
                    erasure = dev.erasure(i)
                    if erasure is None or send.to != erasure.device:
                        dev.isend(tensor, send.to, send.tag, i)
                else:
                    recv: Receive = op
                    w0 = time.perf_counter()
                    erasure = dev.erasure(i)
                    pending = posted.pop((recv.src, recv.tag), None)
                    live = pending is not None and (erasure is None or erasure.device != recv.src)
                    if live and pending and dev.wait(pending[0], recv.src, i, recv.point):
                        value = pending[1]
                    if value is None:
                        erasure = dev.erasure(i)
                        assert erasure is not None and erasure.missing(recv.src, recv.point)
                        dev.standins(i)  # a parity device that just learned: catch up
                        value = dev.substitute(erasure, recv, i)
                    wait_s += time.perf_counter() - w0
            dev.standins(i)
            wait_s += dev.finish_sends(i)
            if dev.erasure(i) is not None:
                dev.standins(i)
            if answers and logits is not None:
                latency = time.perf_counter() - tic
                answer = {"logits": logits[0].tolist(), "latency_s": latency}
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
