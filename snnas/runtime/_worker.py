"""One device's process: load its own weights from the plan, join the process group, answer
images one at a time, and report.

The device runs its program (``snnas.plan.run_device``) image after image; this module is
the driver that moves payloads with :class:`~snnas.runtime._transport.GlooTransport` and times
what the device does: computing, starting sends, waiting for payloads (and for its sends to
be taken). Device 0 takes the images, answers them and, at the end, gathers every device's
figures and writes the report (``runtime.json``, ``timeline.png``).

Rendezvous, three ways: ``store`` (``snnas run --local``: the launcher hosts a TCPStore that
also receives failure reports and progress), ``master`` (``snnas run PLAN --rank R --master
HOST:PORT``: device 0 hosts the store) and ``env`` (``torchrun ... -m snnas.runtime PLAN``:
``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``).
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import Tensor

from snnas.errors import PlanError, RuntimeFailure, UsageError
from snnas.plan import LoadedPlan, Receive, load_plan, run_device
from snnas.runtime._transport import STATS_TAG, GlooTransport, TransferFailed, clean_message

__all__ = ["WorkerArgs", "run_worker"]


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
        return argv


#: Default seconds every device has to start and join (import torch, read its weights,
#: connect; ``--join-timeout``); transfers then wait ``--timeout`` seconds at most.
JOIN_S = 120.0


def _connect(args: WorkerArgs) -> Any:
    """Join the process group and wait for every device (a barrier), so images start when
    all are up; returns the store shared with the launcher, when there is one. A rendezvous
    that cannot be reached or hosted, or devices that do not all come within ``join_s``
    seconds, is a :class:`RuntimeFailure`."""
    try:
        return _join(args)
    except (RuntimeError, ValueError, OSError) as exc:  # torch's DistNetworkError, DistError
        where = args.address or "the environment's MASTER_ADDR:MASTER_PORT"
        raise RuntimeFailure(
            f"device {args.rank}: could not join the other {args.world - 1} device(s) at "
            f"{where} within {args.join_s:g} s ({clean_message(exc, 160)})"
        ) from None


def _join(args: WorkerArgs) -> Any:
    timeout = datetime.timedelta(seconds=args.join_s)
    if args.rendezvous == "env":
        dist.init_process_group("gloo", init_method="env://", timeout=timeout)
        dist.barrier()
        return None
    assert args.address is not None
    host, _, port = args.address.rpartition(":")
    master = args.rendezvous == "master" and args.rank == 0
    store = dist.TCPStore(
        host,
        int(port),
        args.world if master else None,
        is_master=master,
        timeout=timeout,
        wait_for_workers=False,
    )
    dist.init_process_group(
        "gloo",
        store=dist.PrefixStore("pg", store),
        rank=args.rank,
        world_size=args.world,
        timeout=timeout,
    )
    dist.barrier()
    return store if args.rendezvous == "store" else None


def _inputs(plan: LoadedPlan, args: WorkerArgs, count: int) -> tuple[Tensor, Tensor, Tensor]:
    """Device 0's images, labels and the frozen network's logits for them."""
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


def _encode(data: dict[str, Any]) -> Tensor:
    return torch.frombuffer(bytearray(json.dumps(data).encode()), dtype=torch.uint8)


def _exchange_stats(stats: dict[str, Any], args: WorkerArgs) -> list[dict[str, Any]] | None:
    """Every device's figures to device 0 (JSON in a byte tensor: nothing is unpickled)."""
    deadline = datetime.timedelta(seconds=max(args.timeout_s, 10.0))

    def wait(work: Any) -> None:
        assert work is not None
        work.wait(timeout=deadline)

    if args.rank != 0:
        blob = _encode(stats)
        size = torch.tensor([blob.numel()], dtype=torch.int64)
        wait(dist.isend(size, dst=0, tag=STATS_TAG))
        wait(dist.isend(blob, dst=0, tag=STATS_TAG + 1))
        return None
    out = [stats]
    for rank in range(1, args.world):
        size = torch.empty(1, dtype=torch.int64)
        wait(dist.irecv(size, src=rank, tag=STATS_TAG))
        if not 0 < int(size) < 1 << 26:
            raise RuntimeFailure(f"device {rank} sent a malformed report ({int(size)} bytes)")
        blob = torch.empty(int(size), dtype=torch.uint8)
        wait(dist.irecv(blob, src=rank, tag=STATS_TAG + 1))
        out.append(json.loads(blob.numpy().tobytes().decode()))
    return out


def run_worker(args: WorkerArgs) -> dict[str, Any] | None:
    """Run one device until every image is answered; device 0 returns the report."""
    torch.set_num_threads(args.threads)  # one core's worth per device by default
    plan = load_plan(args.plan)
    if plan.parity is not None:
        from snnas.runtime._failover import run_failover_worker

        return run_failover_worker(args, plan)
    if args.world != plan.groups:
        raise PlanError(f"{args.plan}: the plan has {plan.groups} devices, not {args.world}")
    if not 0 <= args.rank < plan.groups:
        raise PlanError(f"--rank {args.rank}: the plan's devices are 0..{plan.groups - 1}")
    entry = plan.device(args.rank)
    net = plan.net(args.rank)  # only this device's weights are read
    ops = plan.ops[args.rank]
    receives = [Receive.from_json(r) for r in entry["receives"]]
    available = int(plan.data["reference"]["splits"].get(args.split, 0))
    count = available if args.images is None else min(args.images, available)
    if count < 1:
        raise PlanError(f"{args.plan}: no {args.split} images to answer")
    takes_input = entry["input"]
    images = labels = reference = None
    if takes_input:
        images, labels, reference = _inputs(plan, args, count)
    timeline_image = count // 2 if args.timeline_image is None else args.timeline_image
    store = _connect(args)
    sys.stderr.write(f"device {args.rank}: joined {args.world} devices, {count} images\n")

    transport = GlooTransport(args.rank, args.timeout_s)
    compute_s = send_s = wait_s = 0.0
    latencies: list[float] = []
    answers: list[Tensor] = []
    timeline: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        for i in range(count):
            if args.fail_device == args.rank and i == args.fail_at:
                os.kill(os.getpid(), signal.SIGKILL)  # a real crash: no goodbye to anyone
            transport.post_receives(receives, i)
            image_start = time.perf_counter()
            image = images[i : i + 1] if images is not None else None
            program = run_device(net, ops, image)
            value: Tensor | None = None
            first = True
            while True:
                tic = time.perf_counter()
                try:
                    request = next(program) if first else program.send(value)
                except StopIteration as stop:
                    toc = time.perf_counter()
                    compute_s += toc - tic
                    if i == timeline_image:
                        timeline.append({"kind": "compute", "start": tic, "end": toc})
                    if stop.value is not None:
                        answers.append(stop.value)
                    break
                first = False
                toc = time.perf_counter()
                compute_s += toc - tic
                kind, op, tensor = request
                if kind == "send":
                    if args.slow_device == args.rank and args.delay_ms > 0:
                        time.sleep(args.delay_ms / 1e3)
                    spent = transport.send(op, tensor, i)
                    send_s += spent
                    value = None
                    label = f"send p{op.point} to {op.to}" if op.point is not None else "stem"
                else:
                    value, spent = transport.receive(op, i)
                    wait_s += spent
                    label = f"recv p{op.point} from {op.src}" if op.point is not None else "stem"
                if i == timeline_image:
                    timeline.append({"kind": "compute", "start": tic, "end": toc})
                    timeline.append(
                        {"kind": kind, "start": toc, "end": toc + spent, "label": label}
                    )
            spent = transport.finish_sends()
            wait_s += spent
            if i == timeline_image and spent > 0:
                now = time.perf_counter()
                timeline.append({"kind": "recv", "start": now - spent, "end": now,
                                 "label": "sends taken"})  # fmt: skip
            if takes_input:
                latencies.append(time.perf_counter() - image_start)
                if store is not None and (i % 10 == 9 or i + 1 == count):
                    store.set("progress", str(i + 1))
    except TransferFailed as failure:
        if store is not None:
            store.set(f"failure/{args.rank}", json.dumps(failure.to_json()))
        raise
    finished = time.perf_counter()
    stats = {
        "device": args.rank,
        "images": count,
        "compute_s": compute_s,
        "send_s": send_s,
        "wait_s": wait_s,
        "bytes_sent": {str(k): v for k, v in sorted(transport.bytes_sent.items())},
        "timeline": [e for e in timeline if e["end"] > e["start"]],
        "started": started,
        "finished": finished,
    }
    gathered = _exchange_stats(stats, args)
    dist.destroy_process_group()
    if gathered is None:
        return None
    from snnas.runtime._report import build_report

    assert labels is not None and reference is not None
    report = build_report(
        plan, args, gathered, torch.cat(answers), labels, reference, latencies, started, finished
    )
    if args.out is not None:
        from snnas.runtime._report import write_report

        write_report(report, gathered, args.out, timeline_image)
    return report


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
            ns.threads,
        )  # fmt: skip
        report = run_worker(args)
    except TransferFailed as failure:
        sys.stderr.write(f"error: {failure}\n")
        sys.exit(3)
    except UsageError as exc:  # --name: a usage error, as in the snnas command
        sys.stderr.write(f"error: python -m snnas.runtime: {exc}\n")
        sys.exit(2)
    except Exception as exc:  # every other failure: one line, and the process ends
        if os.environ.get("SNNAS_DEBUG") == "1":
            raise
        sys.stderr.write(f"error: device {rank}: {clean_message(exc)}\n")
        sys.exit(1)
    if report is not None:
        lat = report["latency_ms"]
        sys.stdout.write(
            f"{report['images']} images: top-1 agreement {report['top1_agreement']:.4f}, "
            f"accuracy {report['accuracy']:.4f}, bytes equal to the plan's: "
            f"{report['bytes_equal']}, latency p50 {lat['p50']:.2f} ms; wrote {args.out}\n"
        )
    from snnas.runtime import _failover

    if _failover.HARD_EXIT:
        # Receives abandoned for a stand-in stay posted in gloo, each waited for by a helper
        # thread; ending the interpreter under them aborts (SIGABRT). The work is done.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _space_name(plan: Path) -> str:
    try:
        name = json.loads((plan / "plan.json").read_text())["space"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return "plan"
    return str(name)
