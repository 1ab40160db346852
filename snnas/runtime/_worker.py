"""One device's process: load its own weights from the plan, join the process group, answer
images one at a time, and report.

The device runs its program (``snnas.engine.run_device``, or ``run_parity_device`` on a
parity device) image after image through the engine (``snnas.engine.run``), with
:class:`~snnas.runtime._transport.GlooTransport` moving the payloads and a fault policy
(``snnas/runtime/_failover.py``: fail-stop without parity devices, failover with them)
deciding what a late or lost peer means; the engine's trace times what the device does:
computing, starting sends, waiting for payloads. Every device leaves its figures in the
shared store (an idle device, with nothing to compute or send, finishes at once: nothing
waits on it); device 0 (with parity devices: parity device G when device 0 is lost)
answers the images and writes the report (``runtime.json``, ``timeline.png``).

Rendezvous, three ways: ``store`` (``snnas run --local``: the launcher hosts a TCPStore that
also receives failure reports and progress), ``master`` (``snnas run PLAN --rank R --master
HOST:PORT``: the highest-ranked device hosts the store, so device 0 can be lost) and
``env`` (``torchrun ... -m snnas.runtime PLAN``: ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``,
``WORLD_SIZE``; the store there is torchrun's).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import Tensor

from snnas._io import atomic_write_json
from snnas.engine import ParityNet, Receive, run, run_device, run_parity_device
from snnas.errors import PlanError, RuntimeFailure, UsageError
from snnas.plan import LoadedPlan, load_plan
from snnas.plan._load import plan_space_name
from snnas.runtime._failover import NEVER, FailStop, StoreFailover, die
from snnas.runtime._transport import (
    GlooTransport,
    TransferFailed,
    clean_message,
    pending_transfers,
)
from snnas.runtime._verdict import check_counts, check_report, verdict_message

__all__ = ["WorkerArgs", "run_worker", "store_host"]


@dataclass
class WorkerArgs:
    """What every device process is started with (the same for all but the rank)."""

    plan: Path
    rank: int
    world: int
    rendezvous: str  # "store", "master" or "env"
    address: str | None = None  # HOST:PORT of the store (store / master)
    split: str = "test"
    images: int | None = None  # None: the whole split
    warmup: int = 5  # images answered before latency is counted
    timeout_s: float = 5.0
    out: Path | None = None  # where device 0 writes runtime.json and timeline.png
    timeline_image: int | None = None  # default: the middle image
    fail_device: int | None = None  # fault injection: this device kills itself ...
    fail_at: int = 0  # ... when it reaches this image
    slow_device: int | None = None  # straggler: this device sleeps before every send
    delay_ms: float = 0.0
    data_dir: Path | None = None
    join_s: float = 120.0  # seconds to start and meet every other device
    extra: dict[str, Any] = field(default_factory=dict)
    fail_point: int = 0  # ... before its first send at this transmission point or later
    deadline_ms: float | None = None  # parity plans: wait this long, then use the stand-in
    threads: int = 1  # torch threads of this device (snnas run --threads-per-device)
    input_file: Path | None = None  # the user's images (snnas run --input), not the split

    def to_argv(self) -> list[str]:
        """Command-line arguments of ``python -m snnas.runtime`` for these settings."""
        argv = [str(self.plan), "--rank", str(self.rank), "--world", str(self.world)]
        argv += ["--rendezvous", self.rendezvous, "--split", self.split]
        argv += ["--warmup", str(self.warmup), "--timeout", repr(self.timeout_s)]
        if self.address:
            argv += ["--address", self.address]
        if self.images is not None:
            argv += ["--images", str(self.images)]
        if self.out is not None:
            argv += ["--runs-dir", str(self.out.parent), "--name", self.out.name]
        if self.timeline_image is not None:
            argv += ["--timeline-image", str(self.timeline_image)]
        if self.fail_device is not None:
            argv += ["--fail-device", str(self.fail_device), "--fail-at", str(self.fail_at)]
            argv += ["--fail-point", str(self.fail_point)]
        if self.deadline_ms is not None:
            argv += ["--deadline-ms", repr(self.deadline_ms)]
        if self.slow_device is not None:
            argv += ["--slow-device", str(self.slow_device), "--delay-ms", repr(self.delay_ms)]
        if self.data_dir is not None:
            argv += ["--data-dir", str(self.data_dir)]
        argv += ["--join-timeout", repr(self.join_s)]
        argv += ["--threads", str(self.threads)]
        if self.input_file is not None:
            argv += ["--input-file", str(self.input_file)]
        return argv


#: Default seconds every device has to start and join (import torch, read its weights,
#: connect; ``--join-timeout``); transfers then wait ``--timeout`` seconds at most.
JOIN_S = 120.0


def _connect(args: WorkerArgs) -> Any:
    """Join the process group and wait for every device (a barrier), so images start when
    all are up; returns the store every device shares (the launcher's, the one of
    ``--master``, or torchrun's at ``MASTER_ADDR:MASTER_PORT``). A rendezvous that cannot be
    reached or hosted, or devices that do not all come within ``join_s`` seconds, is a
    :class:`RuntimeFailure`."""
    try:
        store = _join(args)
    except (RuntimeError, ValueError, OSError) as exc:  # torch's DistNetworkError, DistError
        where = args.address or "the environment's MASTER_ADDR:MASTER_PORT"
        raise RuntimeFailure(
            f"device {args.rank}: could not join the other {args.world - 1} device(s) at "
            f"{where} within {args.join_s:g} s ({clean_message(exc, 160)})"
        ) from None
    _JOINED.append(True)  # gloo's threads now live in this process: see _exit
    return store


#: Set once this process joined a process group (its end then never unwinds: :func:`_exit`).
_JOINED: list[bool] = []


def _join(args: WorkerArgs) -> Any:
    timeout = datetime.timedelta(seconds=args.join_s)
    if args.rendezvous == "env":
        dist.init_process_group("gloo", init_method="env://", timeout=NEVER)
        dist.barrier()
        master_addr, master_port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        return dist.TCPStore(master_addr, master_port, None, is_master=False, timeout=timeout)
    if args.address is None:
        raise RuntimeFailure(f"device {args.rank}: --rendezvous {args.rendezvous} needs --address")
    host, _, port = args.address.rpartition(":")
    # --rank/--master: the highest-ranked device hosts the store, so that device 0 (and with
    # parity devices, any data device) can be lost (docs/runtime.md).
    master = args.rendezvous == "master" and args.rank == store_host(args.world)
    store = dist.TCPStore(
        host,
        int(port),
        args.world if master else None,
        is_master=master,
        timeout=timeout,
        wait_for_workers=False,
    )
    # Deadlines are the fault policy's: a gloo wait that expires closes its pair.
    dist.init_process_group(
        "gloo",
        store=dist.PrefixStore("pg", store),
        rank=args.rank,
        world_size=args.world,
        timeout=NEVER,
    )
    dist.barrier()
    return store


def store_host(world: int) -> int:
    """The device that hosts the store with ``--rank/--master``: the highest-ranked one."""
    return world - 1


def _inputs(
    plan: LoadedPlan, args: WorkerArgs, count: int
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Device 0's images, labels and the frozen network's logits for them; the user's images
    (``--input-file``) come without either: the launcher compares the answers."""
    if args.input_file is not None:
        from snnas.runtime._images import read_images

        return read_images(args.input_file, plan, count), None, None
    from snnas.data import load_dataset

    net = plan.data["network"]
    data = load_dataset(
        plan.data["input"]["dataset"],
        input_size=net["input_size"],
        input_channels=net["input_channels"],
        data_dir=args.data_dir,
    )
    images, labels = data.eval_tensors(args.split)
    reference = plan.reference()
    if not torch.equal(reference[f"{args.split}.labels"], labels):
        raise PlanError(f"{plan.folder}: the {args.split} split differs from the one exported")
    return images[:count], labels[:count], reference[f"{args.split}.logits"][:count]


def _gather_stats(store: Any, args: WorkerArgs, world: int) -> list[dict[str, Any]]:
    """Every device's figures, from the store (JSON: nothing is unpickled)."""
    deadline = time.monotonic() + args.timeout_s + 30.0
    out = []
    for rank in range(world):
        while not store.check([f"stats/{rank}"]):
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"device {rank} left no figures in the store")
            time.sleep(0.01)
        out.append(json.loads(store.get(f"stats/{rank}").decode()))
    return out


class _Times:
    """What the device spends its time on (the engine's trace), and one image's timeline."""

    def __init__(self, timeline_image: int) -> None:
        self.compute_s = self.send_s = self.wait_s = 0.0
        self.image = -1
        self.timeline_image = timeline_image
        self.timeline: list[dict[str, Any]] = []

    def __call__(self, device: int, kind: str, start: float, end: float, label: str) -> None:
        spent = end - start
        if kind == "compute":
            self.compute_s += spent
        elif kind == "send":
            self.send_s += spent
        else:
            self.wait_s += spent
        if self.image == self.timeline_image and end > start:
            entry: dict[str, Any] = {"kind": kind, "start": start, "end": end}
            if label:
                entry["label"] = label
            self.timeline.append(entry)


def run_worker(args: WorkerArgs) -> dict[str, Any] | None:
    """Run one device until every image is answered; the reporting device returns the report
    (device 0; with parity devices, parity device G when device 0 is lost)."""
    torch.set_num_threads(args.threads)  # one core's worth per device by default
    plan = load_plan(args.plan)
    if plan.parity is not None and args.rendezvous == "env":
        raise PlanError(f"{args.plan}: a plan with parity devices needs the store rendezvous "
                        "(snnas run --local, or --rank/--master)")  # fmt: skip
    if args.world != plan.world:
        raise PlanError(f"{args.plan}: the plan has {plan.world} devices, not {args.world}")
    if not 0 <= args.rank < plan.world:
        raise PlanError(f"--rank {args.rank}: the plan's devices are 0..{plan.world - 1}")
    g, rank = plan.groups, args.rank
    parity = rank >= g
    entry = plan.device(rank)
    net = plan.net(rank)  # only this device's weights are read
    parity_net = ParityNet(net, plan.weights(rank)) if parity else None
    points = plan.data["schedule"]["points"]
    receives = [Receive.from_json(r) for r in entry["receives"]]
    if args.input_file is not None:  # the user's images: as many as the launcher wrote
        if plan.parity is not None:
            raise PlanError(f"{args.plan}: --input-file needs a plan without parity devices")
        if args.images is None or args.warmup >= args.images:
            raise PlanError(f"{args.plan}: --input-file needs --images N above --warmup")
        count = args.images
    else:
        count = check_counts(plan, args.split, args.images, args.warmup)  # never clamped
    if count < 1:
        raise PlanError(f"{args.plan}: no {args.split} images to answer")
    images = labels = reference = None
    if entry["input"]:
        images, labels, reference = _inputs(plan, args, count)
    store = _connect(args)
    sys.stderr.write(f"device {rank}: joined {args.world} devices, {count} images\n")
    transport = GlooTransport(rank, receives)
    transport.limit = count
    # Fault injection: the device dies when it reaches image ``dies_at``, before it posts
    # anything of that image (as a device that crashed between two images).
    dies_at = None
    if args.fail_device == rank:
        dies_at = args.fail_at + (0 if plan.parity is None or parity else 1)
        transport.limit = min(count, dies_at)
    policy: FailStop | StoreFailover
    policy = (
        StoreFailover(plan, args, store, transport) if plan.parity else FailStop(args, transport)
    )
    answering = rank == 0 or (plan.parity is not None and rank == g)
    times = _Times(count // 2 if args.timeline_image is None else args.timeline_image)
    latencies: list[float] = []
    answers: list[Tensor] = []
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            for i in range(count):
                if i == dies_at:  # a data device with parity devices dies at a send, or here
                    die(store, rank, i)
                times.image = i
                policy.begin_image(i)
                tic, taken = time.perf_counter(), time.monotonic()
                image = images[i : i + 1] if images is not None else None
                if parity_net is not None:
                    if image is None:
                        raise PlanError(f"{args.plan}: parity device {rank} takes no input")
                    program = run_parity_device(parity_net, entry, points, g, image)
                else:
                    program = run_device(net, plan.ops[rank], image)
                got = run({rank: program}, transport, i, fault=policy, trace=times)
                policy.end_image(i)
                logits = got.get(rank)
                if answering and logits is not None:
                    latency = time.perf_counter() - tic
                    if plan.parity is not None:
                        answer = {"logits": logits[0].tolist(), "latency_s": latency,
                                  "taken": taken, "answered": time.monotonic()}  # fmt: skip
                        store.set(f"answer/{rank}/{i}", json.dumps(answer))
                    else:
                        answers.append(logits.clone())
                        latencies.append(latency)
                    if i % 10 == 9 or i + 1 == count:
                        store.set("progress", str(i + 1))
            transport.flush()
    except TransferFailed as failure:
        store.set(f"failure/{rank}", json.dumps(failure.to_json()))
        raise
    finished = time.perf_counter()
    stats: dict[str, Any] = {
        "device": rank,
        "images": count,
        "compute_s": times.compute_s,
        "send_s": times.send_s,
        "wait_s": times.wait_s,
        "bytes_sent": {str(k): v for k, v in sorted(transport.bytes_sent.items())},
        "timeline": times.timeline,
        "started": started,
        "finished": finished,
    }
    if isinstance(policy, StoreFailover):
        return _finish_failover(plan, args, store, policy, transport, stats, labels, count)
    store.set(f"stats/{rank}", json.dumps(stats))
    if rank != 0:
        _leave(transport, False, store, args, None)
        return None
    gathered = _gather_stats(store, args, plan.world)
    _leave(transport, False, store, args, None)
    from snnas.runtime._report import build_report, write_report

    if images is None:
        raise PlanError(f"{args.plan}: device 0 takes no input")
    report = build_report(
        plan, args, gathered, torch.cat(answers), labels, reference, latencies, started, finished
    )
    if args.out is not None:
        write_report(report, gathered, args.out, times.timeline_image)
    return report


def _finish_failover(
    plan: LoadedPlan,
    args: WorkerArgs,
    store: Any,
    policy: StoreFailover,
    transport: GlooTransport,
    stats: dict[str, Any],
    labels: Tensor | None,
    count: int,
) -> dict[str, Any] | None:
    """Leave this device's figures in the store; the reporter (device 0 when it survived,
    else parity device G) writes the report, the others stay until it has."""
    time.sleep(0.1)  # stand-ins still in flight
    stats["standin_bytes"] = transport.standin_bytes
    stats["unclaimed_standins"] = transport.unclaimed()
    store.set(f"stats/{args.rank}", json.dumps(stats))
    store.set(f"finished/{args.rank}", "1")
    if _reporter(policy, args) != args.rank:
        _linger(store, args)
        policy.close()
        _leave(transport, True, store, args, policy.down)
        return None
    from snnas.runtime._failover_report import build_failover_report

    if labels is None:
        raise PlanError(f"{args.plan}: the reporting device takes no input")
    report = build_failover_report(plan, args, policy, labels, count)
    if args.out is not None:
        from snnas._io import atomic_write_json

        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out / "runtime.json", report)
    store.set("reported", "1")
    policy.close()
    _leave(transport, True, store, args, policy.down)
    return report


#: Set once a device of a plan with parity devices is done: the process ends with
#: ``os._exit`` (:func:`_exit`).
_HARD_EXIT: list[bool] = []


def _leave(
    transport: GlooTransport,
    parity: bool,
    store: Any,
    args: WorkerArgs,
    down: tuple[int, int] | None,
) -> None:
    """Say this device is done (``left/{rank}``); the store's host (``--rank/--master``)
    stays until every other surviving device has said so. Stop the waiter threads and leave
    the process group: without parity devices the group is destroyed (its threads joined);
    with them, after a peer died, ending the interpreter under gloo's threads aborts
    (SIGABRT, seen in about one run of ``tests/runtime`` in two): such a process ends with
    ``os._exit`` once its work is written (:func:`_exit`)."""
    store.set(f"left/{args.rank}", "1")
    if args.rendezvous == "master" and args.rank == store_host(args.world):
        others = [r for r in range(args.world) if r != args.rank and (down is None or r != down[0])]
        deadline = time.monotonic() + args.timeout_s + 30.0
        while time.monotonic() < deadline and not store.check([f"left/{r}" for r in others]):
            time.sleep(0.02)
    transport.close()
    if parity:
        _HARD_EXIT.append(True)
    elif pending_transfers() == 0:
        dist.destroy_process_group()


def _reporter(policy: StoreFailover, args: WorkerArgs) -> int:
    """Device 0 when it survived, else parity device G: wait until one of them is known."""
    deadline = time.monotonic() + args.timeout_s + 10.0
    while time.monotonic() < deadline:
        if policy.down is not None and policy.down[0] == 0:
            return policy.g
        if policy.store.check(["finished/0"]):
            return 0
        time.sleep(0.01)
    raise TransferFailed(args.rank, 0, None, args.images or 0, "recv",
                         "device 0 neither finished nor was declared down")  # fmt: skip


def _linger(store: Any, args: WorkerArgs) -> None:
    """Stay (and keep the gloo pairs open) until the reporter has written the report."""
    deadline = time.monotonic() + args.timeout_s + 30.0
    while time.monotonic() < deadline and not store.check(["reported"]):
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> None:
    """``python -m snnas.runtime PLAN ...`` (also what ``snnas run --local`` starts)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:  # one line, exit code 2
            sys.stderr.write(f"error: python -m snnas.runtime: {message}\n")
            sys.exit(2)

    from snnas._numbers import Range

    def checked(valid: Range) -> Any:
        """An argparse type: a number of ``valid`` (type, finiteness, range)."""

        def convert(text: str) -> int | float:
            number: int | float | None
            try:
                number = int(text) if valid.integer else float(text)
            except ValueError:
                number = None
            problem = valid.describe() if number is None else valid.problem(number)
            if number is None or problem is not None:
                raise argparse.ArgumentTypeError(f"expected {problem}, found {text!r}")
            return number

        return convert

    device = checked(Range(0, 1023, integer=True))
    count = checked(Range(0, 10_000_000, integer=True))
    parser = _Parser(prog="python -m snnas.runtime", description=__doc__)
    parser.add_argument("plan", type=Path)
    parser.add_argument("--rank", type=device, default=None)
    parser.add_argument("--world", type=checked(Range(1, 1024, integer=True)), default=None)
    parser.add_argument("--rendezvous", choices=["store", "master", "env"], default="env")
    parser.add_argument("--address")
    parser.add_argument("--split", choices=["val", "test"], default="test")
    parser.add_argument("--images", type=checked(Range(1, 10_000_000, integer=True)))
    parser.add_argument("--warmup", type=count, default=5)
    parser.add_argument("--timeout", type=checked(Range(0.1, 3600.0)), default=5.0)
    parser.add_argument("--join-timeout", type=checked(Range(0.1, 3600.0)), default=JOIN_S)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--name", help="device 0's report folder under --runs-dir")
    parser.add_argument("--timeline-image", type=count)
    parser.add_argument("--fail-device", type=device)
    parser.add_argument("--fail-at", type=count, default=0)
    parser.add_argument("--slow-device", type=device)
    parser.add_argument("--delay-ms", type=checked(Range(0.0, 600_000.0)), default=0.0)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--fail-point", type=count, default=0)
    parser.add_argument("--deadline-ms", type=checked(Range(0.0, 600_000.0, low_open=True)))
    parser.add_argument("--threads", type=checked(Range(1, 1024, integer=True)), default=1)
    parser.add_argument(
        "--input-file",
        type=Path,
        help="The images to answer instead of the split (input.safetensors, written by snnas "
        "run --input; the launcher compares the answers with the plan's engine).",
    )
    ns = parser.parse_args(argv)
    if ns.rendezvous in ("store", "master") and not ns.address:
        parser.error(f"--rendezvous {ns.rendezvous} needs --address HOST:PORT")
    try:
        rank = ns.rank if ns.rank is not None else int(os.environ.get("RANK", "0"))
        world = ns.world if ns.world is not None else int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        parser.error("RANK and WORLD_SIZE must be integers")
    if not 0 <= rank < world:
        parser.error(f"--rank (or RANK) {rank} is not a device of --world {world}")
    try:
        from snnas._run import resolve_run

        # Device 0 writes the report; with parity devices, parity device G when 0 is lost.
        out = resolve_run(ns.runs_dir, ns.name or f"runtime-{_space_name(ns.plan)}")
        args = WorkerArgs(
            ns.plan, rank, world, ns.rendezvous, ns.address, ns.split, ns.images, ns.warmup,
            ns.timeout, out, ns.timeline_image, ns.fail_device, ns.fail_at, ns.slow_device,
            ns.delay_ms, ns.data_dir, ns.join_timeout, {}, ns.fail_point, ns.deadline_ms,
            ns.threads, ns.input_file,
        )  # fmt: skip
        report = run_worker(args)
    except TransferFailed as failure:
        sys.stderr.write(f"error: {failure}\n")
        _exit(3)
    except UsageError as exc:  # --name: a usage error, as in the snnas command
        sys.stderr.write(f"error: python -m snnas.runtime: {exc}\n")
        _exit(2)
    except Exception as exc:  # every other failure: one line, and the process ends
        if os.environ.get("SNNAS_DEBUG") == "1":
            raise
        sys.stderr.write(f"error: device {rank}: {clean_message(exc)}\n")
        _exit(1)
    if report is not None and args.input_file is not None:
        # The user's images: no reference here; the launcher compares and gives the verdict.
        sys.stdout.write(f"{report['images']} images answered; wrote {args.out}\n")
    elif report is not None:
        lat = report["latency_ms"]
        sys.stdout.write(
            f"{report['images']} images: top-1 agreement {report['top1_agreement']:.4f}, "
            f"accuracy {report['accuracy']:.4f}, bytes equal to the plan's: "
            f"{report['bytes_equal']}, latency p50 {lat['p50']:.2f} ms; wrote {args.out}\n"
        )
        # The same verdict as snnas run: answers within verify's tolerance, the plan's bytes.
        report["checks"] = check_report(load_plan(ns.plan), report, ns.split)
        if args.out is not None and (args.out / "runtime.json").is_file():
            atomic_write_json(args.out / "runtime.json", report)
        problem = verdict_message(report["checks"], f"{args.out}/runtime.json")
        if problem is not None:
            sys.stderr.write(f"error: {problem}\n")
            sys.stdout.flush()
            _exit(1)
    _exit(0)


def _exit(code: int) -> NoReturn:
    """End the device process with ``code``; once it joined a process group, without
    unwinding the interpreter (its work is done and written, atomically, by now). A failed
    run may leave transfers posted with peers that are about to be stopped, each waited for
    by a helper thread inside gloo, and even a clean run's gloo and store threads can still
    be joinable when the interpreter tears them down: either way C++ ends the process with
    "terminate called without an active exception" (SIGABRT; seen 3 times in this suite's
    runs here), which the launcher would report as a crash. A process that never joined
    (a bad argument or plan) exits normally."""
    sys.stdout.flush()
    sys.stderr.flush()
    if not _JOINED and pending_transfers() == 0 and not _HARD_EXIT:
        sys.exit(code)  # nothing of gloo's started here (e.g. a bad argument or plan)
    os._exit(code)


def _space_name(plan: Path) -> str:
    """The plan's space name, checked as the loader checks it (letters, digits and
    ``_ . + -``), from plan.json alone: the default report folder is named after it, never
    after raw JSON, and no device reads every weights file for it."""
    return plan_space_name(plan)
