"""``snnas run PLAN --local``: one real process per device on this machine.

The launcher hosts a TCPStore, starts ``python -m snnas.runtime`` once per device (each its
own session, its output in ``logs/device<R>.log``), shows device 0's progress, and watches
every process. When one dies or reports a failure, the others get ``timeout`` seconds to
notice and stop; then every process still running is killed. The failure is reported as one
line: the first error of the first device that failed; nothing is left running.

The launcher owns its children: each is started with a parent-death signal (SIGKILL, Linux),
so even a launcher killed with SIGKILL takes them with it; SIGINT, SIGTERM and SIGHUP of the
launcher kill every child's process group and end the run as an interruption. A lock on
``.lock`` in the run folder refuses a second run of the same name while one is running.
Optionally each device is pinned to its own cores and runs behind an emulated edge link
(:mod:`snnas.runtime._netns`).
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snnas._io import atomic_write_json
from snnas._run import Progress, RunDir
from snnas.errors import CheckpointError, RuntimeFailure, UsageError, shorten
from snnas.plan import LoadedPlan, load_plan
from snnas.runtime._children import (
    child_setup,
    plan_cores,
    run_lock,
    signals_held,
    stop_signals_interrupt,
)
from snnas.runtime._netns import Links
from snnas.runtime._verdict import check_counts, check_report
from snnas.runtime._worker import WorkerArgs

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["check_counts", "launch_local"]

#: Seconds a device process may take to start (import torch, load its weights, connect).
STARTUP_S = 120.0


@dataclass
class _Device:
    rank: int
    process: subprocess.Popen[bytes]
    log: Path
    killed_by_us: bool = False
    failed_at: float | None = None  # monotonic time its non-zero exit was first seen


def _last_error(log: Path, rank: int) -> str | None:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return None
    errors = [line for line in lines if line.startswith("error: ")]
    if not errors:
        return None
    error = errors[-1][len("error: ") :]
    twice = f"device {rank}: device {rank}: "
    return error[len(f"device {rank}: ") :] if error.startswith(twice) else error


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _explain(devices: list[_Device], failures: dict[int, dict[str, Any]], groups: int) -> str:
    """One line: the first device that failed, at which point of which image, and that all
    stopped."""
    tail = f"all {groups} device processes stopped"
    failed = sorted(
        (d for d in devices if d.failed_at is not None and not d.killed_by_us),
        key=lambda d: (d.failed_at, d.rank),
    )
    for dead in (d for d in failed if (d.process.returncode or 0) < 0):
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
    for d in failed:
        error = _last_error(d.log, d.rank)
        if error:
            return f"{error}; {tail}"
        return f"device {d.rank} exited with code {d.process.returncode} (see {d.log}); {tail}"
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
    threads: int = 1,
    link_rate: str | None = None,
    info: Callable[[str], None] | None = None,
    inputs: Tensor | None = None,
    input_names: list[str] | None = None,
) -> dict[str, Any]:
    """Run the plan with one process per device; return device 0's report (``runtime.json``
    and ``timeline.png`` are in ``out``), with ``checks``: whether the answers and the bytes
    agree with the plan (:func:`snnas.runtime._verdict.check_report`). A failure raises
    :class:`RuntimeFailure`; an interruption (SIGINT, SIGTERM, SIGHUP) raises
    ``KeyboardInterrupt`` once every child is gone and the links are removed.

    ``threads``: torch threads in every device (each pinned to that many cores of its own
    when there are enough; ``info`` is told when there are not). ``link_rate``: emulate an
    edge link of that rate per device (``20mbit``; :mod:`snnas.runtime._netns`).

    ``inputs``: the user's images as network inputs (N, C, H, W) float32 (``snnas run
    --input``; ``Plan.inputs`` made them), answered instead of the split; ``input_names``
    names each in the report. The devices that take the image read them from
    ``out/input.safetensors``; there is no label and no stored reference, so the answers are
    compared with the plan's engine run here on the same images (``plan.forward``), and the
    report gains ``predictions``, ``logits``, ``files``, ``compared_with`` and ``input``."""
    plan = load_plan(plan_folder)  # refuse a bad plan before starting anything
    groups = plan.world  # one process per device, parity devices included
    if inputs is None:
        count = check_counts(plan, split, images, warmup)
    else:
        count = _check_inputs(plan, inputs, input_names, images, warmup, fail_device, slow_device)
    for name, device, limit in (("--fail-device", fail_device, plan.world),
                                ("--slow-device", slow_device, plan.groups)):  # fmt: skip
        if device is not None and not 0 <= device < limit:
            raise UsageError(name, f"a device of the plan, 0..{limit - 1}", device)
    if plan.parity is None:
        if fail_point:
            raise UsageError("--fail-point", "a plan with parity devices", fail_point)
        if deadline_ms is not None:
            raise UsageError("--deadline-ms", "a plan with parity devices", deadline_ms)
    elif not 0 <= fail_point < len(plan.data["schedule"]["points"]):
        points = len(plan.data["schedule"]["points"])
        raise UsageError("--fail-point", f"a transmission point, 0..{points - 1}", fail_point)
    links = Links.parse(link_rate, groups) if link_rate is not None else None
    if links is not None:
        links.check_possible()  # root, Linux, ip and tc: one line saying what is missing
    expected = None if inputs is None else _engine_answers(plan, inputs, input_names)
    # Never through a link the run did not make (a run folder, its logs or a log file).
    RunDir(out).create()
    with stop_signals_interrupt(), run_lock(out):
        (out / "runtime.json").unlink(missing_ok=True)
        (out / "input.safetensors").unlink(missing_ok=True)  # an earlier --input run's
        input_file = None
        if inputs is not None:
            from snnas.runtime._images import write_images

            input_file = write_images(out, inputs).resolve()
        logs = out / "logs"
        RunDir(logs).create()
        for rank in range(groups):
            log = logs / f"device{rank}.log"
            if log.is_symlink() or (log.exists() and not log.is_file()):
                raise CheckpointError(
                    f"{shorten(str(log))}: is a link or not a file; refusing to write through it"
                )
        cores = plan_cores(groups, threads)
        if cores is None and info is not None:
            have = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
            info(
                f"{groups} device processes x {threads} thread(s) share {have} core(s): "
                "not pinned (one process per core needs as many cores)"
            )
        settings = dict(
            split=split, images=count, warmup=warmup, timeout_s=timeout_s,
            fail_device=fail_device, fail_at=fail_at, slow_device=slow_device,
            delay_ms=delay_ms, data_dir=data_dir, join_s=join_s, fail_point=fail_point,
            deadline_ms=deadline_ms, threads=threads, input_file=input_file,
        )  # fmt: skip
        try:
            if links is not None:
                links.create()
            report = _start_and_watch(plan, plan_folder, out, count, cores, links, progress,
                                      settings)  # fmt: skip
        finally:
            if links is not None:
                with signals_held():
                    links.remove()
        if expected is not None:
            _compare_with_engine(report, expected, input_names)
        report["checks"] = check_report(plan, report, split)
        report["placement"] = {
            "threads_per_device": threads,
            "pinned_cores": None if cores is None else [sorted(c) for c in cores],
        }
        if links is not None:
            report["links"] = links.describe()
        written = {k: v for k, v in report.items() if k not in ("pids", "logs")}
        atomic_write_json(out / "runtime.json", written)  # still under the run's lock
    return report


def _check_inputs(
    plan: LoadedPlan,
    inputs: Tensor,
    names: list[str] | None,
    images: int | None,
    warmup: int,
    fail_device: int | None,
    slow_device: int | None,
) -> int:
    """The number of the user's images; what cannot go with them is a usage error."""
    import torch

    if plan.parity is not None:
        raise UsageError(
            "--input",
            "a plan without parity devices (a plan with them runs on its reference split only)",
            str(plan.folder),
        )
    for option, value in (("--images", images), ("--fail-device", fail_device),
                          ("--slow-device", slow_device)):  # fmt: skip
        if value is not None:
            raise UsageError(option, "no value with --input (every image given is answered, "
                             "without fault injection)", value)  # fmt: skip
    _, c, h, w = plan.data["input"]["shape"]
    shape = (int(c), int(h), int(w))
    if inputs.dim() != 4 or tuple(inputs.shape[1:]) != shape or inputs.dtype != torch.float32:
        found = f"<shape {tuple(inputs.shape)} {str(inputs.dtype).removeprefix('torch.')}>"
        raise UsageError("images", f"network inputs (N, {c}, {h}, {w}) float32", found)
    count = len(inputs)
    if count < 1:
        raise UsageError("images", "at least one image", "<none>")
    if names is not None and len(names) != count:
        raise UsageError("input_names", f"one name per image ({count})", len(names))
    if warmup >= count:
        expected = f"fewer than the {count} images given (lower it)"
        raise UsageError("--warmup", expected, warmup)
    return count


def _engine_answers(plan: LoadedPlan, inputs: Tensor, names: list[str] | None) -> Tensor:
    """The plan's answers from its engine in this process: what ``Plan.forward`` runs
    (:func:`snnas.plan.execute_plan`, 256 images at a time). Finite inputs far outside the
    training range can overflow to NaN or infinite logits: refused here, before anything
    starts (runtime.json stores them as null, which nothing could compare)."""
    import torch

    from snnas.errors import InputError
    from snnas.plan import execute_plan

    answers = execute_plan(plan, inputs, chunk=256)
    bad = (~torch.isfinite(answers).all(1)).nonzero().flatten().tolist()
    if bad:
        first = names[bad[0]] if names is not None else f"image {bad[0]}"
        raise InputError(
            f"{shorten(first, 200)}: expected images the network answers with finite logits, "
            f"found NaN or infinite logits for {len(bad)} of {len(answers)} (pixel values far "
            "outside the range the plan's normalisation expects?)"
        )
    return answers


def _compare_with_engine(report: dict[str, Any], expected: Tensor, names: list[str] | None) -> None:
    """Fill the report's comparison: the G processes' answers against the plan's engine in
    this process on the same images (no labels: no accuracy)."""
    import torch

    from snnas.plan import compare_logits

    nan = float("nan")  # runtime.json holds a non-finite logit as null
    logits = [[nan if v is None else v for v in row] for row in report["logits"]]
    answers = compare_logits(torch.tensor(logits), expected, None)
    for key in ("top1_agreement", "max_abs_diff", "tolerance",
                "disagreements_beyond_tolerance", "accuracy", "reference_accuracy"):  # fmt: skip
        report[key] = answers[key]
    report["compared_with"] = (
        "the plan's engine in this process on the same images (plan.forward: "
        "snnas.plan.execute_plan); no labels, so no accuracy"
    )
    report["files"] = names  # one name per image (snnas run --input); null from Python
    report["input"] = {"images": len(expected), "tensor": "input.safetensors (network inputs)"}


def _start_and_watch(
    plan: LoadedPlan,
    plan_folder: Path,
    out: Path,
    count: int,
    cores: list[set[int]] | None,
    links: Links | None,
    progress: Progress | None,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Start every device process, watch them to the end (or the first failure), and kill
    whatever is left, whatever happens (an interruption included)."""
    import torch.distributed as dist

    groups = plan.world
    tolerate = plan.parity is not None  # one lost data device is survived
    timeout_s = float(settings["timeout_s"])
    logs = out / "logs"
    store = dist.TCPStore(
        "127.0.0.1",
        0,
        None,
        is_master=True,
        timeout=datetime.timedelta(seconds=30),
        wait_for_workers=False,
    )  # the server listens on every interface: the emulated links' bridge included
    host = links.store_host if links is not None else "127.0.0.1"
    address = f"{host}:{store.port}"
    threads = int(settings["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    devices: list[_Device] = []
    failures: dict[int, dict[str, Any]] = {}
    try:
        for rank in range(groups):
            s = settings
            args = WorkerArgs(
                plan_folder.resolve(), rank, groups, "store", address, s["split"], count,
                s["warmup"], timeout_s, out.resolve() if rank in (0, plan.groups) else None,
                None, s["fail_device"], s["fail_at"], s["slow_device"], s["delay_ms"],
                s["data_dir"], s["join_s"], {}, s["fail_point"], s["deadline_ms"], threads,
                s["input_file"],
            )  # fmt: skip
            log = logs / f"device{rank}.log"
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
            setup = child_setup(
                os.getpid(),
                cores[rank] if cores is not None else None,
                links.namespace_path(rank) if links is not None else None,
            )
            child_env = {**env, **links.env(rank)} if links is not None else env
            with os.fdopen(os.open(log, flags, 0o644), "wb") as handle:
                try:
                    process = subprocess.Popen(
                        [sys.executable, "-m", "snnas.runtime", *args.to_argv()],
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # Ctrl-C reaches the launcher only
                        env=child_env,
                        preexec_fn=setup,
                    )
                except subprocess.SubprocessError as exc:
                    raise RuntimeFailure(
                        f"device {rank}: could not start its process ({exc}: pinning to "
                        f"cores {sorted(cores[rank]) if cores else 'any'} or entering its "
                        "network namespace failed)"
                    ) from None
            devices.append(_Device(rank, process, log))
        atomic_write_json(out / "pids.json", {str(d.rank): d.process.pid for d in devices})
        _watch(devices, store, failures, tolerate, timeout_s, float(settings["join_s"]), count,
               progress)  # fmt: skip
        with signals_held():
            _kill(devices, mark=True)
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
        with signals_held():
            _kill(devices, mark=False)
        del store


def _kill(devices: list[_Device], *, mark: bool) -> None:
    """SIGKILL the process group of every device still running, and reap them all."""
    for d in devices:
        if d.process.poll() is None:
            d.killed_by_us = d.killed_by_us or mark
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(d.process.pid, signal.SIGKILL)
    for d in devices:
        d.process.wait()


def _watch(
    devices: list[_Device],
    store: Any,
    failures: dict[int, dict[str, Any]],
    tolerate: bool,
    timeout_s: float,
    join_s: float,
    count: int,
    progress: Progress | None,
) -> None:
    """Poll every device (each one, every round) until all have ended, or the first failure
    has given the others ``timeout_s`` seconds to notice, or nothing was answered within the
    start-up time."""
    started = time.monotonic()
    startup = max(join_s, STARTUP_S)  # device 0 reports progress every 10 images
    failed_at: float | None = None
    answered = 0
    while True:
        now = time.monotonic()
        running = [d for d in devices if d.process.poll() is None]  # polls every child
        for d in devices:
            if d.failed_at is None and d.process.returncode not in (None, 0):
                d.failed_at = now
            key = f"failure/{d.rank}"
            if d.rank not in failures and store.check([key]):
                failures[d.rank] = json.loads(store.get(key).decode())
        if not running:
            return
        bad = [d for d in devices if d.failed_at is not None]
        if tolerate and len(bad) == 1 and not failures and (bad[0].process.returncode or 0) < 0:
            bad = []  # lost: the survivors carry on without it (docs/runtime.md, "Failover")
        if failed_at is None and (bad or failures):
            failed_at = now
        if failed_at is not None and now - failed_at > timeout_s + 1.0:
            return  # the survivors had their chance to notice and stop
        if failed_at is None and answered == 0 and now - started > startup:
            failures[-1] = {"peer": -1, "point": None, "image": 0, "device": -1,
                            "reason": f"no answer within {startup:g} s of starting",
                            "message": "the devices did not start"}  # fmt: skip
            return
        if store.check(["progress"]):
            done = int(store.get("progress").decode())
            if done != answered and progress:
                progress("images", done, count, {})
            answered = done
        time.sleep(0.05)
