"""``snnas profile``: measure the machine it runs on as a device profile.

Two measurements, each as the cost model uses it (``snnas/cost/_profile.py``):

* **A latency table per op shape** at batch 1, as nn-Meter and Once-for-All's lookup tables
  are built: every shape a device of the given spaces runs (the stem, one device's part of
  every block, parity devices' wider blocks, the head) is built as the device runs it (the
  batch-norm-folded convolutions of ``snnas/plan/_program.py``'s ``DeviceNet``, with random
  weights: timing does not depend on them) and timed under ``torch.inference_mode`` with one
  thread, pinned to one core: warm-up runs, then the median of ``repeats`` timed runs.
  ``flops`` and ``op_overhead_s`` are fitted to the table (least squares of ``seconds =
  overhead + FLOPs / flops``) for shapes outside it.
* **The link**, from a gloo ping-pong with ``isend`` / ``irecv`` (the runtime's calls)
  between this process and a second one on this machine, or a peer running ``snnas profile
  --serve PORT``: the one-way time of messages of several sizes gives the bandwidth (slope)
  and the fixed time per transfer (intercept); the sender's time inside ``isend`` is
  ``send_s``, the receiver's time to take a message that has already been sent is
  ``recv_s``, and ``link_latency_s`` is the rest of the fixed time, so that ``send_s +
  link_latency_s + recv_s`` is the measured one-way time of an empty message.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from snnas._run import Progress
from snnas.cost import DeviceProfile, OpShape
from snnas.cost._profile import OpStats
from snnas.errors import RuntimeFailure, UsageError, shorten
from snnas.space import SearchSpace

__all__ = [
    "LINK_SIZES",
    "LinkFigures",
    "build_op",
    "fit_flops",
    "measure_link",
    "measure_profile",
    "op_shapes",
    "parse_peer",
    "serve_link",
    "time_ops",
]

#: Ping-pong message sizes in bytes: from a header-sized message to the largest payloads of
#: the shipped spaces (a 256-channel 16x16 float32 stream is 256 KiB).
LINK_SIZES = (256, 4096, 1 << 16, 1 << 18, 1 << 20)
#: Seconds to wait for the other side of the ping-pong to join.
JOIN_S = 60.0


def op_shapes(spaces: Sequence[SearchSpace]) -> list[OpShape]:
    """Every op shape a device of ``spaces`` runs, each once, in order of first use."""
    shapes: dict[str, OpShape] = {}
    for space in spaces:
        arch = space.arch
        scales = [1] + ([space.parity.bottleneck_scale] if space.parity.r else [])
        found = [OpShape.of_stem(arch)]
        for scale in scales:
            found += [OpShape.of_block(arch, b.index, scale) for b in arch.blocks]
        found.append(OpShape.of_head(arch))
        for shape in found:
            shapes.setdefault(shape.key, shape)
    return list(shapes.values())


class _Block(nn.Module):
    """One device's part of a bottleneck block, batch norm folded: the ops of
    ``snnas/plan/_program.py``'s ``_Block`` (tests check they compute the same)."""

    def __init__(self, shape: OpShape) -> None:
        super().__init__()
        mid, s = shape.mid, shape.stride
        self.conv1 = nn.Conv2d(shape.c_in, mid, 1, bias=True)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=s, padding=1, groups=shape.groups, bias=True)
        self.conv3 = nn.Conv2d(mid, shape.c_out, 1, bias=True)
        self.shortcut = (
            nn.Conv2d(shape.c_in, shape.c_out, 1, stride=s, bias=True) if shape.projection else None
        )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = F.relu(self.conv1(x))  # (B, m, H, W)
        out = F.relu(self.conv2(out))  # (B, m, H/s, W/s)
        out = self.conv3(out)  # (B, w, H/s, W/s)
        return F.relu(out + identity)


class _Stem(nn.Module):
    def __init__(self, shape: OpShape) -> None:
        super().__init__()
        self.conv = nn.Conv2d(shape.c_in, shape.c_out, 3, padding=1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv(x))  # (B, stem, H, W)


class _Head(nn.Module):
    def __init__(self, shape: OpShape) -> None:
        super().__init__()
        self.fc = nn.Linear(shape.c_in, shape.c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # (B, classes)


def build_op(shape: OpShape, seed: int = 0) -> tuple[nn.Module, Tensor]:
    """The module of one op shape (random weights, eval, no autograd) and a batch-1 input."""
    torch.manual_seed(seed)
    kinds: dict[str, type[nn.Module]] = {"stem": _Stem, "block": _Block, "head": _Head}
    if shape.kind not in kinds:
        raise ValueError(f"unknown op kind {shape.kind!r}")
    module = kinds[shape.kind](shape).eval().requires_grad_(False)
    return module, torch.randn(1, shape.c_in, shape.h, shape.w)  # (1, C_in, H, W)


@contextlib.contextmanager
def _one_thread_on(cpu: int | None) -> Iterator[None]:
    """One torch thread, pinned to ``cpu`` (where the OS allows), restored afterwards."""
    threads = torch.get_num_threads()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    torch.set_num_threads(1)
    try:
        if affinity is not None and cpu is not None:
            os.sched_setaffinity(0, {cpu})
        yield
    finally:
        torch.set_num_threads(threads)
        if affinity is not None and cpu is not None:
            os.sched_setaffinity(0, affinity)


def _cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def time_ops(
    shapes: Sequence[OpShape],
    repeats: int,
    warmup: int = 5,
    progress: Progress | None = None,
) -> list[tuple[str, float, OpStats]]:
    """``(key, median seconds, stats)`` of every shape at batch 1, one thread, one core."""
    rows: list[tuple[str, float, OpStats]] = []
    cpus = _cpus()
    with _one_thread_on(cpus[0] if cpus else None), torch.inference_mode():
        for i, shape in enumerate(shapes):
            module, x = build_op(shape)
            for _ in range(warmup):
                module(x)
            samples = []
            for _ in range(repeats):
                tic = time.perf_counter()
                module(x)
                samples.append(time.perf_counter() - tic)
            median = statistics.median(samples)
            std = statistics.pstdev(samples)
            rows.append((shape.key, median, OpStats(repeats, statistics.fmean(samples), std)))
            if progress is not None:
                progress("ops", i + 1, len(shapes), {"ms": 1e3 * median})
    return rows


def fit_flops(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """``(flops, overhead_s)`` fitted to ``(FLOPs, seconds)`` pairs by least squares of
    ``seconds = overhead + FLOPs / flops``; through the origin (no overhead) when the fit
    would give a negative overhead or rate, or there are fewer than two distinct sizes."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    if not points or sum(ys) <= 0:
        raise ValueError("no timed op to fit a FLOP rate to")
    if len(set(xs)) >= 2:
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
        intercept = my - slope * mx
        if slope > 0 and intercept >= 0:
            return 1.0 / slope, intercept
    slope = sum(x * y for x, y in points) / sum(x * x for x in xs)
    return 1.0 / slope, 0.0


# --------------------------------------------------------------------------- the link
@dataclass(frozen=True)
class LinkFigures:
    """What the ping-pong measured: one-way times per size and the fitted link."""

    one_way_s: dict[int, float]  # bytes -> median one-way seconds
    send_s: float
    recv_s: float
    link_latency_s: float
    bandwidth_bps: float
    peer: str  # "loopback" or HOST:PORT


def parse_peer(text: str, option: str = "--peer") -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets) as ``(host, port)``; a usage error if not."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(option, "HOST:PORT with a port in [1, 65535]", text)
    if not all(c.isalnum() or c in ".-:_" for c in host) or len(host) > 253:
        raise UsageError(option, "a host name or address", text)
    return host, int(port)


def _store(host: str, port: int, master: bool, join_s: float) -> Any:
    timeout = datetime.timedelta(seconds=join_s)
    return dist.TCPStore(host, port, 2 if master else None, is_master=master, timeout=timeout,
                         wait_for_workers=False)  # fmt: skip


def _init_group(store: Any, rank: int, join_s: float) -> None:
    timeout = datetime.timedelta(seconds=join_s)
    dist.init_process_group("gloo", store=dist.PrefixStore("profile", store), rank=rank,
                            world_size=2, timeout=timeout)  # fmt: skip


def _isend(tensor: Tensor, peer: int, tag: int) -> Any:
    work = dist.isend(tensor, peer, tag=tag)
    if work is None:  # only for a rank outside the group, which this one never is
        raise RuntimeError(f"isend to rank {peer} returned no request")
    return work


def _irecv(tensor: Tensor, peer: int, tag: int) -> Any:
    work = dist.irecv(tensor, peer, tag=tag)
    if work is None:
        raise RuntimeError(f"irecv from rank {peer} returned no request")
    return work


class _Tags:
    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n


def _protocol(rank: int, sizes: Sequence[int], repeats: int, warmup: int) -> dict[str, Any]:
    """Both sides of the ping-pong, in lockstep; rank 0 returns the timings."""
    peer = 1 - rank
    tags = _Tags()
    one_way: dict[int, float] = {}
    for size in sizes:
        buf = torch.zeros(size, dtype=torch.uint8)
        samples = []
        for i in range(warmup + repeats):
            tag = tags.next()
            tic = time.perf_counter()
            if rank == 0:
                _isend(buf, peer, tag).wait()
                _irecv(buf, peer, tag).wait()
            else:
                _irecv(buf, peer, tag).wait()
                _isend(buf, peer, tag).wait()
            if i >= warmup:
                samples.append((time.perf_counter() - tic) / 2)
        one_way[size] = statistics.median(samples)
    small = torch.zeros(sizes[0], dtype=torch.uint8)
    ack = torch.zeros(1, dtype=torch.uint8)
    sends, recvs = [], []
    for _ in range(warmup + repeats):
        # The sender's time inside isend (the runtime waits on its sends later).
        tag = tags.next()
        if rank == 0:
            tic = time.perf_counter()
            work = _isend(small, peer, tag)
            sends.append(time.perf_counter() - tic)
            work.wait()
            _irecv(ack, peer, tag).wait()
        else:
            _irecv(small, peer, tag).wait()
            _isend(ack, peer, tag).wait()
        # The receiver's time to take a message sent well before it asks for it.
        tag = tags.next()
        if rank == 0:
            time.sleep(0.002)
            tic = time.perf_counter()
            _irecv(small, peer, tag).wait()
            recvs.append(time.perf_counter() - tic)
        else:
            _isend(small, peer, tag).wait()
    if rank != 0:
        return {}
    return {
        "one_way_s": one_way,
        "send_s": statistics.median(sends[warmup:]),
        "recv_s": statistics.median(recvs[warmup:]),
    }


def _fit_link(raw: dict[str, Any], peer: str) -> LinkFigures:
    one_way: dict[int, float] = raw["one_way_s"]
    sizes = sorted(one_way)
    xs, ys = [8.0 * s for s in sizes], [one_way[s] for s in sizes]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    slope = max(slope, 1e-15)  # seconds per bit; a flat curve is a very fast link
    fixed = max(one_way[sizes[0]] - slope * xs[0], 0.0)  # the smallest message's fixed time
    # The three fixed costs add up to the measured one: on a loaded machine a receive taken
    # after a sleep can take longer than a whole one-way trip (the thread waits for a core).
    send = min(raw["send_s"], fixed)
    recv = min(raw["recv_s"], fixed - send)
    latency = fixed - send - recv
    return LinkFigures(one_way, send, recv, latency, min(1.0 / slope, 1e15), peer)


def _echo_argv(address: str) -> list[str]:
    return [sys.executable, "-m", "snnas.runtime._profiler", "--echo", address]


def measure_link(
    peer: str | None = None,
    repeats: int = 30,
    warmup: int = 5,
    sizes: Sequence[int] = LINK_SIZES,
    join_s: float = JOIN_S,
) -> LinkFigures:
    """Ping-pong with a second process on this machine (``peer`` None) or with ``snnas
    profile --serve PORT`` at ``peer`` (``HOST:PORT``)."""
    if dist.is_initialized():
        raise RuntimeFailure("the link cannot be measured inside a running process group")
    child: subprocess.Popen[bytes] | None = None
    cpus = _cpus()
    try:
        if peer is None:
            store = _store("127.0.0.1", 0, True, join_s)  # port 0: the OS picks a free one
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            child = subprocess.Popen(
                _echo_argv(f"127.0.0.1:{store.port}"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
            if len(cpus) >= 2 and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(child.pid, {cpus[1]})  # one core each
        else:
            store = _store(*parse_peer(peer), False, join_s)
        _init_group(store, 0, join_s)
        store.set("plan", json.dumps({"sizes": list(sizes), "repeats": repeats,
                                           "warmup": warmup}))  # fmt: skip
        with _one_thread_on(cpus[0] if cpus else None):
            raw = _protocol(0, sizes, repeats, warmup)
        dist.barrier()
    except (RuntimeError, ValueError, OSError) as exc:
        where = peer or "a second process on this machine"
        raise RuntimeFailure(
            f"--peer: the link to {shorten(where, 100)} could not be measured "
            f"({shorten(' '.join(str(exc).split()), 200)})"
        ) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        if child is not None:
            try:  # it leaves after the barrier; at once when this side failed
                child.wait(timeout=10 if sys.exc_info()[0] is None else 0.1)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
    return _fit_link(raw, peer or "loopback")


def serve_link(host: str, port: int, master: bool, join_s: float = JOIN_S) -> None:
    """The echo side of one ping-pong (``snnas profile --serve PORT``, or the local second
    process): join, read the sizes the measuring side chose, echo, leave."""
    try:
        store = _store(host, port, master, join_s)
        _init_group(store, 1, join_s)
        plan = json.loads(store.get("plan").decode())
        sizes = [int(s) for s in plan["sizes"]]
        _protocol(1, sizes, int(plan["repeats"]), int(plan["warmup"]))
        dist.barrier()
    except (RuntimeError, ValueError, OSError, KeyError, TypeError) as exc:
        raise RuntimeFailure(
            f"--serve {port}: no measurement (waiting at most {join_s:g} s for the other "
            f"side): {shorten(' '.join(str(exc).split()), 200)}"
        ) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


# --------------------------------------------------------------------------- the profile
def measure_profile(
    spaces: Sequence[SearchSpace],
    *,
    name: str,
    repeats: int = 30,
    warmup: int = 5,
    peer: str | None = None,
    progress: Progress | None = None,
) -> tuple[DeviceProfile, LinkFigures]:
    """Measure this machine: the latency table of every op shape of ``spaces`` and the
    link (see the module docstring)."""
    shapes = op_shapes(spaces)
    if progress is not None:
        progress("link", 0, 1, {})
    link = measure_link(peer, repeats, warmup)  # first: an unreachable peer fails early
    if progress is not None:
        progress("link", 1, 1, {"us": 1e6 * link.one_way_s[min(link.one_way_s)]})
    rows = time_ops(shapes, repeats, warmup, progress)
    flops, overhead = fit_flops(
        [(2.0 * s.macs(), seconds) for s, (_, seconds, _) in zip(shapes, rows, strict=True)]
    )
    cores = len(_cpus())
    where = "between two processes on this machine" if peer is None else f"to {peer}"
    source = (
        f"snnas profile, {datetime.date.today().isoformat()}: {platform.machine()}, "
        f"{cores} cores, {platform.system()}, torch {torch.__version__}; {len(shapes)} op "
        f"shapes at batch 1, median of {repeats} runs after {warmup} warm-up, 1 thread "
        f"pinned to one core, inference mode; link: gloo isend/irecv ping-pong {where}"
    )
    profile = DeviceProfile(
        name=name,
        flops=flops,
        bandwidth_bps=link.bandwidth_bps,
        link_latency_s=link.link_latency_s,
        source=source,
        op_overhead_s=overhead,
        send_s=link.send_s,
        recv_s=link.recv_s,
        cores=cores,
        table=tuple((key, seconds) for key, seconds, _ in rows),
        stats=tuple((key, stats) for key, _, stats in rows),
    )
    return profile, link


def _main(argv: Sequence[str]) -> int:
    """``python -m snnas.runtime._profiler --echo HOST:PORT``: the local echo process."""
    if len(argv) != 2 or argv[0] != "--echo":
        print("usage: python -m snnas.runtime._profiler --echo HOST:PORT", file=sys.stderr)
        return 2
    host, port = parse_peer(argv[1], "--echo")
    torch.set_num_threads(1)
    serve_link(host, port, master=False)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
