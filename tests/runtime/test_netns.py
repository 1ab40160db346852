"""Emulated edge links (``snnas run PLAN --local --link-rate RATE``): rates parsed and
checked; with root and iproute2, a run through real namespaces, veth pairs and tbf qdiscs,
and nothing of ours left after a run, a failed run and an interrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snnas.cost import PROFILES
from snnas.errors import RuntimeFailure, UsageError
from snnas.plan import export_plan
from snnas.runtime import launch_local
from snnas.runtime._children import child_setup
from snnas.runtime._netns import Links, ours, parse_rate
from tests.plan.conftest import ACCURACY, random_frozen, talking_policy

IMAGES = 12

needs_root = pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or os.geteuid() != 0
    or shutil.which("ip") is None
    or shutil.which("tc") is None,
    reason="emulated links need Linux, root and iproute2 (ip, tc)",
)


@pytest.mark.parametrize(
    ("text", "bits"),
    [("20mbit", 20_000_000), ("300Mbit", 300_000_000), ("1gbit", 10**9), ("64kbit", 64_000),
     ("2.5mbit", 2_500_000), (" 100mbit ", 100_000_000), ("100gbit", 10**11)],
)  # fmt: skip
def test_rates(text, bits):
    assert parse_rate(text) == bits


@pytest.mark.parametrize("text", ["20", "20mb", "1e3mbit", "63kbit", "101gbit", "x", "２０mbit"])
def test_bad_rates_are_usage_errors(text):
    with pytest.raises(UsageError, match=r"^--link-rate: expected a rate such as 20mbit"):
        parse_rate(text)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _leftovers(pid: int) -> list[tuple[str, str]]:
    """Namespaces and links of launcher ``pid`` still there (link deletion completes in the
    kernel shortly after the namespace is gone)."""
    for _ in range(150):
        left = ours(pid)
        if not left:
            return []
        time.sleep(0.1)
    return left


@pytest.fixture(scope="module")
def plan_folder(tmp_path_factory, plan_space, digits) -> Path:
    folder = tmp_path_factory.mktemp("links") / "plan"
    model = random_frozen(plan_space, talking_policy(plan_space))
    export_plan(plan_space, model, digits, PROFILES["rpi3b+"], ACCURACY, folder)
    return folder


@needs_root
def test_a_run_behind_emulated_links_answers_and_leaves_nothing(plan_folder, tmp_path):
    report = launch_local(plan_folder, tmp_path / "r", images=IMAGES, warmup=2,
                          link_rate="300mbit")  # fmt: skip
    assert report["checks"]["passed"] and report["top1_agreement"] == 1.0
    written = json.loads((tmp_path / "r" / "runtime.json").read_text())
    assert written["links"]["rate"] == "300mbit"
    assert written["links"]["rate_bit_s"] == 300_000_000
    assert written["links"]["burst_bytes"] == 37_500  # 1 ms at 300 Mbit/s
    assert _leftovers(os.getpid()) == []


@needs_root
def test_a_failed_run_leaves_no_link(plan_folder, tmp_path):
    with pytest.raises(RuntimeFailure, match=r"^device 2 died \(killed by SIGKILL\) at image 3"):
        launch_local(plan_folder, tmp_path / "f", images=IMAGES, warmup=2, fail_device=2,
                     fail_at=3, link_rate="1gbit")  # fmt: skip
    assert _leftovers(os.getpid()) == []


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_run_leaves_no_link_and_no_device(plan_folder, tmp_path, sig):
    """Ctrl-C: the launcher removes the links itself; SIGKILL: its watchdog does."""
    command = [sys.executable, "-m", "snnas", "run", str(plan_folder), "--local", "--runs-dir",
               str(tmp_path), "--name", "i", "--link-rate", "20mbit", "--slow-device", "0",
               "--delay-ms", "50"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = tmp_path / "i"
    for _ in range(1800):
        assert proc.poll() is None, proc.communicate()
        logs = [out / "logs" / f"device{r}.log" for r in range(4)]
        if all(p.is_file() and "joined" in p.read_text() for p in logs):
            break
        time.sleep(0.1)
    assert {kind for kind, _ in ours(proc.pid)} == {"netns", "link"}  # the links are there
    pids = [int(p) for p in json.loads((out / "pids.json").read_text()).values()]
    proc.send_signal(sig)
    _stdout, stderr = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and stderr.strip() == "error: interrupted", stderr
    else:
        assert proc.returncode == -signal.SIGKILL
    assert _leftovers(proc.pid) == []
    for _ in range(100):  # killed by the parent-death signal; reaped by whoever adopts them
        if not [p for p in pids if _running(p)]:
            break
        time.sleep(0.1)
    assert not [p for p in pids if _running(p)]


PINGPONG = """
import datetime, sys, time, torch, torch.distributed as dist
rank, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
store = dist.TCPStore(host, port, None, is_master=False, timeout=datetime.timedelta(seconds=60))
dist.init_process_group("gloo", store=dist.PrefixStore("pg", store), rank=rank, world_size=2)
t = torch.zeros(1 << 18)  # 1 MiB of float32
times = []
for _ in range(3):
    dist.barrier()
    tic = time.perf_counter()
    if rank == 0:
        dist.send(t, 1); dist.recv(t, 1)
    else:
        dist.recv(t, 0); dist.send(t, 0)
    times.append(time.perf_counter() - tic)
if rank == 0:
    print(min(times))
"""


def pingpong(rate: str) -> float:
    """Seconds of the fastest of three 1 MiB round trips (one each way) between two
    processes behind links of ``rate``."""
    import datetime

    import torch.distributed as dist

    links = Links.parse(rate, 2)
    links.check_possible()
    wait = datetime.timedelta(seconds=60)
    store = dist.TCPStore("127.0.0.1", 0, None, is_master=True, timeout=wait,
                          wait_for_workers=False)  # fmt: skip
    try:
        links.create()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", PINGPONG, str(r), links.store_host, str(store.port)],
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, **links.env(r)},
                preexec_fn=child_setup(os.getpid(), None, links.namespace_path(r)),
            )
            for r in range(2)
        ]
        out = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], out
        return float(out[0])
    finally:
        links.remove()
        del store


@needs_root
def test_a_20mbit_link_slows_a_transfer_to_its_rate():
    """2 MiB through 20 Mbit/s links take at least 2 * 8 * 2**20 / 20e6 = 0.839 s less the
    two buckets' bursts (32 KiB each, 0.026 s): at least 0.81 s (headers come on top); on
    loopback they take about a millisecond."""
    seconds = pingpong("20mbit")
    assert seconds >= 0.81, seconds
    assert _leftovers(os.getpid()) == []


if __name__ == "__main__":  # the figure quoted in docs/runtime.md
    for rate in sys.argv[1:] or ["20mbit", "100mbit", "300mbit"]:
        s = pingpong(rate)
        print(f"{rate}: 1 MiB each way in {s * 1e3:.0f} ms ({2 * 8 * 2**20 / s / 1e6:.1f} Mbit/s)")
