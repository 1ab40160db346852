"""``snnas run PLAN --local``: one real process per device on this machine.

The launcher hosts a TCPStore on loopback, starts ``python -m snnas.runtime`` once per
device (each its own session, its output in ``logs/device<R>.log``), shows device 0's
progress, and watches the processes. When one dies or reports a failure, the others get
``timeout`` seconds to notice and stop; then every process still running is killed. The
failure is reported as one line naming the device, the point and the image; nothing is left
running.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnas._io import atomic_write_json
from snnas._run import Progress, RunDir
from snnas.errors import CheckpointError, RuntimeFailure, UsageError, shorten
from snnas.plan import load_plan
from snnas.runtime._worker import WorkerArgs

__all__ = ["launch_local"]

#: Seconds a device process may take to start (import torch, load its weights, connect).
STARTUP_S = 120.0


@dataclass
class _Device:
    rank: int
    process: subprocess.Popen[bytes]
    log: Path
    killed_by_us: bool = False


def _last_error(log: Path) -> str | None:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return None
    errors = [line for line in lines if line.startswith("error: ")]
    return errors[-1][len("error: ") :] if errors else None


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _explain(devices: list[_Device], failures: dict[int, dict[str, Any]], groups: int) -> str:
    """One line: which device failed, at which point of which image, and that all stopped."""
    tail = f"all {groups} device processes stopped"
    crashed = [
        d for d in devices
        if d.process.returncode is not None and d.process.returncode < 0 and not d.killed_by_us
    ]  # fmt: skip
    for dead in crashed:
        witness = next((f for f in failures.values() if f["peer"] == dead.rank), None)
        how = f"killed by {_signal_name(dead.process.returncode or 0)}"
        if witness is None:
            return f"device {dead.rank} died ({how}); {tail}"
        what = "the stem's copy" if witness["point"] is None else f"point {witness['point']}"
        return (
            f"device {dead.rank} died ({how}) at image {witness['image']}: device "
            f"{witness['device']} never got its {what} payload; {tail}"
        )
    hung = [f for f in failures.values() if "within" in f["reason"]]
    if hung:
        f = min(hung, key=lambda f: (f["image"], f["point"] if f["point"] is not None else -1))
        what = "the stem's copy" if f["point"] is None else f"point {f['point']}"
        return (
            f"device {f['peer']} did not deliver {what} of image {f['image']} to device "
            f"{f['device']} ({f['reason']}: hung or too slow); {tail}"
        )
    for d in devices:
        code = d.process.returncode
        if code not in (None, 0) and not d.killed_by_us:
            error = _last_error(d.log)
            if error:
                return f"{error}; {tail}"
            return f"device {d.rank} exited with code {code} (see {d.log}); {tail}"
    if failures:
        return f"{next(iter(failures.values()))['message']}; {tail}"
    return f"the run did not finish; {tail}"


def launch_local(
    plan_folder: Path,
    out: Path,
    *,
    split: str = "test",
    images: int | None = None,
    warmup: int = 5,
    timeout_s: float = 5.0,
    fail_device: int | None = None,
    fail_at: int = 0,
    slow_device: int | None = None,
    delay_ms: float = 0.0,
    data_dir: Path | None = None,
    join_s: float = STARTUP_S,
    fail_point: int = 0,
    deadline_ms: float | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the plan with one process per device; return device 0's report (``runtime.json``
    and ``timeline.png`` are in ``out``). A failure raises :class:`RuntimeFailure`."""
    import torch.distributed as dist

    plan = load_plan(plan_folder)  # refuse a bad plan before starting anything
    groups = plan.world  # one process per device, parity devices included
    tolerate = plan.parity is not None  # one lost data device is survived
    available = int(plan.data["reference"]["splits"].get(split, 0))
    count = available if images is None else min(images, available)
    for name, device, limit in (("--fail-device", fail_device, plan.world),
                                ("--slow-device", slow_device, plan.groups)):  # fmt: skip
        if device is not None and not 0 <= device < limit:
            raise UsageError(name, f"a device of the plan, 0..{limit - 1}", device)
    if plan.parity is None:
        if fail_point:
            raise UsageError("--fail-point", "a plan with parity devices", plan_folder)
        if deadline_ms is not None:
            raise UsageError("--deadline-ms", "a plan with parity devices", plan_folder)
    elif not 0 <= fail_point < len(plan.data["schedule"]["points"]):
        points = len(plan.data["schedule"]["points"])
        raise UsageError("--fail-point", f"a transmission point, 0..{points - 1}", fail_point)
    # Never through a link the run did not make (a run folder, its logs or a log file).
    RunDir(out).create()
    (out / "runtime.json").unlink(missing_ok=True)
    logs = out / "logs"
    RunDir(logs).create()
    for rank in range(groups):
        log = logs / f"device{rank}.log"
        if log.is_symlink() or (log.exists() and not log.is_file()):
            raise CheckpointError(
                f"{shorten(str(log))}: is a link or not a file; refusing to write through it"
            )
    store = dist.TCPStore(
        "127.0.0.1",
        0,
        None,
        is_master=True,
        timeout=datetime.timedelta(seconds=30),
        wait_for_workers=False,
    )
    address = f"127.0.0.1:{store.port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    devices: list[_Device] = []
    failures: dict[int, dict[str, Any]] = {}
    try:
        for rank in range(groups):
            args = WorkerArgs(
                plan_folder.resolve(), rank, groups, "store", address, split, images, warmup,
                timeout_s, out.resolve() if rank in (0, plan.groups) else None, None,
                fail_device, fail_at, slow_device, delay_ms, data_dir, join_s, {}, fail_point,
                deadline_ms,
            )  # fmt: skip
            log = logs / f"device{rank}.log"
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
            with os.fdopen(os.open(log, flags, 0o644), "wb") as handle:
                process = subprocess.Popen(
                    [sys.executable, "-m", "snnas.runtime", *args.to_argv()],
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                )
            devices.append(_Device(rank, process, log))
        atomic_write_json(out / "pids.json", {str(d.rank): d.process.pid for d in devices})
        started = time.monotonic()
        startup = max(join_s, STARTUP_S)  # device 0 reports progress every 10 images
        failed_at: float | None = None
        answered = 0
        while any(d.process.poll() is None for d in devices):
            for d in devices:
                key = f"failure/{d.rank}"
                if d.rank not in failures and store.check([key]):
                    failures[d.rank] = json.loads(store.get(key).decode())
            bad = [d for d in devices if d.process.returncode not in (None, 0)]
            if tolerate and len(bad) == 1 and not failures:
                bad = []  # the survivors carry on without it (docs/runtime.md, "Failover")
            if failed_at is None and (bad or failures):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > timeout_s + 1.0:
                break  # the survivors had their chance to notice and stop
            if failed_at is None and answered == 0 and time.monotonic() - started > startup:
                failures[-1] = {"peer": -1, "point": None, "image": 0, "device": -1,
                                "reason": f"no answer within {startup:g} s of starting",
                                "message": "the devices did not start"}  # fmt: skip
                break
            if store.check(["progress"]):
                done = int(store.get("progress").decode())
                if done != answered and progress:
                    progress("images", done, count, {})
                answered = done
            time.sleep(0.05)
        for d in devices:
            if d.process.poll() is None:
                d.killed_by_us = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(d.process.pid, signal.SIGKILL)
        for d in devices:
            d.process.wait()
        for d in devices:
            key = f"failure/{d.rank}"
            if d.rank not in failures and store.check([key]):
                failures[d.rank] = json.loads(store.get(key).decode())
        codes = [d.process.returncode for d in devices]
        lost = [c for c in codes if c is not None and c < 0]
        if tolerate and len(lost) == 1 and not failures and (out / "runtime.json").is_file():
            codes = [c for c in codes if c not in lost]  # one lost device, survived
        if any(c != 0 for c in codes) or failures:
            raise RuntimeFailure(_explain(devices, failures, groups))
        report: dict[str, Any] = json.loads((out / "runtime.json").read_text())
        report["pids"] = [d.process.pid for d in devices]
        report["logs"] = str(logs)
        return report
    finally:
        for d in devices:
            if d.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(d.process.pid, signal.SIGKILL)
                d.process.wait()
        del store
