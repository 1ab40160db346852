"""``snnas run``: execute a deployment plan on real processes (torch.distributed, gloo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from snnas._numbers import Range
from snnas.cli._options import Number
from snnas.cli._terminal import Terminal

__all__ = ["run"]

DEVICE = Number(Range(0, 1023, integer=True))
IMAGES = Number(Range(1, 10_000_000, integer=True))
IMAGE = Number(Range(0, 10_000_000, integer=True))
WARMUP = Number(Range(0, 1_000_000, integer=True))
TIMEOUT = Number(Range(0.1, 3600.0))
DELAY = Number(Range(0.0, 600_000.0))
THREADS = Number(Range(1, 1024, integer=True))


def _address(value: str | None) -> str | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        from snnas.errors import UsageError

        raise UsageError("--master", "HOST:PORT with a port in [1, 65535]", value)
    return value


@click.command()
@click.argument("plan_folder", metavar="PLAN", type=click.Path(path_type=Path))
@click.option("--local", is_flag=True, help="Start one process per device on this machine.")
@click.option("--rank", type=DEVICE, help="This machine's device (with --master).")
@click.option(
    "--master",
    help="HOST:PORT of the rendezvous (with --rank): the store the highest-ranked device hosts.",
)
@click.option("--images", type=IMAGES, help="Images to answer (default: all).")
@click.option("--split", type=click.Choice(["val", "test"]), default="test", show_default=True)
@click.option(
    "--warmup",
    type=WARMUP,
    default=5,
    show_default=True,
    help="First images left out of the latency figures.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=TIMEOUT,
    default=5.0,
    show_default=True,
    help="Seconds to wait for a payload before declaring its sender failed.",
)
@click.option(
    "--join-timeout",
    "join_s",
    type=TIMEOUT,
    default=120.0,
    show_default=True,
    help="Seconds every device has to start and meet the others (the rendezvous).",
)
@click.option("--fail-device", type=DEVICE, help="Kill this device's process ...")
@click.option("--fail-at", type=IMAGE, help="... when it reaches this image (default 0).")
@click.option(
    "--fail-point",
    type=Number(Range(0, 10_000, integer=True)),
    default=0,
    help="... before its first send at this transmission point or later (parity plans).",
)
@click.option("--slow-device", type=DEVICE, help="Delay this device's sends ...")
@click.option("--delay-ms", type=DELAY, help="... by this many milliseconds.")
@click.option(
    "--deadline-ms",
    type=Number(Range(0, 600_000, low_open=True)),
    help="Parity plans: wait this long for a payload, then use its stand-in (straggler mode).",
)
@click.option("--name", help="Output folder under --runs-dir (default: runtime-<space>).")
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="CIFAR batches (CIFAR plans).")
@click.option(
    "--threads-per-device",
    "threads",
    type=THREADS,
    default=1,
    show_default=True,
    help="Torch threads in every device (--local: each pinned to that many cores when "
    "there are enough).",
)
@click.option(
    "--link-rate",
    help="--local: put every device behind an emulated edge link of this rate (20mbit, "
    "300mbit, 1gbit; root on Linux, docs/runtime.md).",
)
@click.option(
    "--profile",
    "profile_name",
    help="The latency profile of the machines this run uses (a file snnas profile wrote, or a "
    "shipped name): runtime.json's prediction, beside the measured latency.",
)
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path),
    help="--local: answer these images instead of the split: a PNG or JPEG file, a folder of "
    "them, or a .npy array of raw images (docs/runtime.md, 'Your own images').",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def run(
    terminal: Terminal,
    plan_folder: Path,
    local: bool,
    rank: int | None,
    master: str | None,
    images: int | None,
    split: str,
    warmup: int,
    timeout_s: float,
    join_s: float,
    fail_device: int | None,
    fail_at: int | None,
    fail_point: int,
    slow_device: int | None,
    delay_ms: float | None,
    deadline_ms: float | None,
    name: str | None,
    runs_dir: Path,
    data_dir: Path | None,
    threads: int,
    link_rate: str | None,
    profile_name: str | None,
    input_path: Path | None,
    as_json: bool,
) -> None:
    """Run PLAN: --local starts every device here; on real machines run
    `snnas run PLAN --rank R --master HOST:PORT` on each (or torchrun, docs/runtime.md).
    Writes runtime.json and timeline.png; exits 1 if a device fails, or if the answers or
    the bytes differ from the plan's."""
    if local == (rank is not None):
        raise click.UsageError("give either --local, or --rank and --master")
    if rank is not None and master is None:
        raise click.UsageError("--rank needs --master HOST:PORT")
    address = _address(master)
    if fail_at is not None and fail_device is None:
        raise click.UsageError("--fail-at needs --fail-device")
    if (delay_ms is None) != (slow_device is None):
        raise click.UsageError("--slow-device and --delay-ms go together")
    if input_path is not None:
        _check_input_options(local)
    fail_at = fail_at or 0
    delay_ms = delay_ms or 0.0
    if link_rate is not None:
        if not local:
            raise click.UsageError("--link-rate needs --local (it emulates links on this machine)")
        from snnas.runtime._netns import parse_rate

        parse_rate(link_rate)

    from snnas.cli._progress import progress_bars
    from snnas.cli._runs import inside_runs
    from snnas.plan import load_plan

    plan = load_plan(plan_folder)
    from snnas.runtime._launch import check_counts

    inputs = names = None
    if input_path is None:
        check_counts(plan, split, images, warmup)
    else:
        inputs, names = _read_input(plan, input_path)
        if _given("warmup") is False:  # the default 5 would leave few images nothing to time
            warmup = 5 if len(inputs) > 5 else 0
    profile = None
    if profile_name is not None:  # a bad profile is refused before any process starts
        from snnas.cost import get_profile

        profile = get_profile(profile_name, "--profile")
    _check_devices(plan, rank, fail_device, slow_device, fail_at, images, split)
    _check_parity_options(plan, rank, fail_device, fail_at, fail_point, deadline_ms, images, split)
    out = inside_runs(runs_dir, name or f"runtime-{plan.data['space']['name']}")
    from snnas._run import RunDir

    RunDir(out).check_own(
        ("runtime.json", "timeline.png", "pids.json", "logs", "input.safetensors"), "runtime"
    )
    report: dict[str, Any] | None
    if local:
        from snnas.runtime import launch_local

        if not as_json:
            where = f"emulated {link_rate} links" if link_rate else "loopback"
            terminal.info(
                f"running {plan_folder} on {plan.world} local processes (gloo, {where}) -> {out}"
            )
        with progress_bars(terminal, "run") as progress:
            report = launch_local(
                plan_folder, out, split=split, images=images, warmup=warmup,
                timeout_s=timeout_s, fail_device=fail_device, fail_at=fail_at,
                slow_device=slow_device, delay_ms=delay_ms, data_dir=data_dir,
                join_s=join_s, progress=progress, fail_point=fail_point,
                deadline_ms=deadline_ms, threads=threads, link_rate=link_rate,
                info=None if as_json else terminal.info, inputs=inputs, input_names=names,
            )  # fmt: skip
    else:
        from snnas.runtime import WorkerArgs, run_worker
        from snnas.runtime._transport import TransferFailed

        if rank is None:  # checked above: --rank goes with --master
            raise click.UsageError("--rank needs --master HOST:PORT")
        args = WorkerArgs(
            plan_folder, rank, plan.world, "master", address, split, images, warmup,
            timeout_s, out if rank in (0, plan.groups) else None, None, fail_device, fail_at,
            slow_device, delay_ms, data_dir, join_s, {}, fail_point, deadline_ms, threads,
        )  # fmt: skip
        try:
            report = run_worker(args)
        except TransferFailed as failure:
            from snnas.errors import RuntimeFailure

            raise RuntimeFailure(str(failure)) from None
        if report is None:
            terminal.info(f"device {rank} done")
            return
        from snnas._io import atomic_write_json
        from snnas.runtime._verdict import check_report

        report["checks"] = check_report(plan, report, split)
    if profile is not None:  # the prediction for the machine and links this run used
        from snnas._io import atomic_write_json
        from snnas.runtime._report import run_prediction

        report["prediction"] = run_prediction(profile, plan, link_rate if local else None)
        if (out / "runtime.json").is_file():
            atomic_write_json(out / "runtime.json", report)
    elif not local and (out / "runtime.json").is_file():
        from snnas._io import atomic_write_json

        atomic_write_json(out / "runtime.json", report)
    _show(terminal, report, out, as_json)
    from snnas.runtime._verdict import verdict_message

    problem = verdict_message(report["checks"], f"{out}/runtime.json")
    if problem is not None:
        from snnas.errors import RuntimeFailure

        raise RuntimeFailure(problem)


def _given(name: str) -> bool:
    """Whether the option ``name`` was given on the command line (not its default)."""
    source = click.get_current_context().get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _check_input_options(local: bool) -> None:
    """``--input`` answers the images given, on this machine, without fault injection."""
    if not local:
        raise click.UsageError("--input needs --local (the launcher hands the images to device 0)")
    for option in ("images", "split", "fail_device", "fail_at", "fail_point", "slow_device",
                   "delay_ms", "deadline_ms"):  # fmt: skip
        if _given(option):
            flag = "--" + option.replace("_", "-")
            raise click.UsageError(
                f"--input cannot go with {flag} (every image given is answered, without fault "
                "injection; the reference split is run without --input)"
            )


def _read_input(plan: Any, path: Path) -> tuple[Any, list[str]]:
    """The images at ``path`` as the plan's network inputs, and their names."""
    from snnas.api._input import read_input
    from snnas.api._plan import Plan

    return read_input(path, Plan(plan))


def _check_devices(
    plan: Any,
    rank: int | None,
    fail_device: int | None,
    slow_device: int | None,
    fail_at: int,
    images: int | None,
    split: str,
) -> None:
    """Options that name devices or images must fit the plan: a fault that can never happen
    is refused, not silently skipped."""
    from snnas.errors import UsageError

    # Parity devices (G..world-1) run processes and can be lost; only data devices straggle.
    for option, device, last in (("--rank", rank, plan.world - 1),
                                 ("--fail-device", fail_device, plan.world - 1),
                                 ("--slow-device", slow_device, plan.groups - 1)):  # fmt: skip
        if device is not None and not 0 <= device <= last:
            raise UsageError(option, f"a device of the plan, 0..{last}", device)
    available = int(plan.data["reference"]["splits"].get(split, 0))
    count = available if images is None else min(images, available)
    if fail_device is not None and fail_at >= count:
        raise UsageError("--fail-at", f"an image the run reaches, 0..{count - 1}", fail_at)


def _check_parity_options(
    plan: Any,
    rank: int | None,
    fail_device: int | None,
    fail_at: int,
    fail_point: int,
    deadline_ms: float | None,
    images: int | None,
    split: str,
) -> None:
    """The failover options fit the plan, on every path (--local and --rank): a fault that
    can never happen, or cannot be survived where it is asked for, is refused."""
    from snnas.errors import UsageError

    points = len(plan.data["schedule"]["points"])
    if plan.parity is None:
        if fail_point:
            raise UsageError("--fail-point", "a plan with parity devices", fail_point)
        if deadline_ms is not None:
            raise UsageError("--deadline-ms", "a plan with parity devices", deadline_ms)
        return
    if fail_point and fail_device is None:
        raise UsageError("--fail-point", "--fail-device as well", fail_point)
    if not 0 <= fail_point < points:
        raise UsageError("--fail-point", f"a transmission point, 0..{points - 1}", fail_point)
    if fail_point and fail_device is not None and fail_device >= plan.groups:
        expected = "0 for a parity device (it dies as an image starts)"
        raise UsageError("--fail-point", expected, fail_point)
    if rank is not None and fail_device == plan.world - 1:
        expected = (
            f"not device {plan.world - 1} with --rank/--master (the highest-ranked device hosts "
            "the store; --local survives it)"
        )
        raise UsageError("--fail-device", expected, fail_device)
    available = int(plan.data["reference"]["splits"].get(split, 0))
    count = available if images is None else min(images, available)
    if fail_device is not None and fail_device < plan.groups and fail_at + 1 >= count:
        # A data device dies at its first send from --fail-point on, which may be in the
        # next image: leave it one.
        raise UsageError("--fail-at", f"an image before the last, 0..{count - 2}", fail_at)


def _show(terminal: Terminal, report: dict[str, Any], out: Path, as_json: bool) -> None:
    if as_json:
        terminal.json(report)
        return
    if report.get("predictions") is not None:
        _show_answers(terminal, report, out)
        return
    from rich.table import Table

    lat = report["latency_ms"]
    terminal.info(
        f"{report['images']} images: top-1 agreement with the frozen network "
        f"{report['top1_agreement']:.4f}, max abs logit difference {report['max_abs_diff']:.2e}, "
        f"accuracy {report['accuracy']:.4f}"
    )
    same = "equal to" if report["bytes_equal"] else "DIFFERENT from"
    terminal.info(
        f"bytes on the wire {report['bytes_measured']['total']:,} "
        f"({report['bytes_measured']['per_image']:,.0f} per image), {same} the plan's "
        f"{report['bytes_planned']['total']:,}"
    )
    terminal.info(
        f"latency per image p50 {lat['p50']:.2f} ms, p95 {lat['p95']:.2f} ms, "
        f"p99 {lat['p99']:.2f} ms; {report['throughput_images_per_s']:.1f} images/s"
    )
    predicted = report.get("prediction") or {}
    if predicted.get("latency_ms") is not None:
        terminal.info(
            f"predicted {predicted['latency_ms']:.2f} ms with profile {predicted['profile']!r}"
            f" (measured p50 / predicted {lat['p50'] / predicted['latency_ms']:.2f})"
        )
    table = Table("device", "compute ms", "send ms", "wait ms", "bytes sent")
    for d in report["per_device"]:
        table.add_row(
            str(d["device"]),
            f"{d['compute_ms']:.1f}",
            f"{d['send_ms']:.1f}",
            f"{d['wait_ms']:.1f}",
            f"{d['bytes_sent']:,}",
        )
    terminal.print(table)
    fail = report.get("failover")
    if fail is not None:
        terminal.info(
            f"device {fail['device']} lost at image {fail['image']}, noticed by device "
            f"{fail['detected_by']} ({fail['how']}) after {fail['detection_ms'] or 0:.0f} ms; "
            f"{fail['degraded_images']} images answered by device {fail['answer_by']} with "
            f"accuracy {fail['degraded_accuracy']:.4f} (the coded network on the same images: "
            f"{fail['degraded_reference_accuracy']:.4f}, top-1 agreement "
            f"{fail['degraded_top1_agreement']:.4f}; parity eval predicts "
            f"{fail['predicted_accuracy_device_lost']:.4f} with device {fail['device']} lost)"
        )
    drawn = ", timeline.png" if (out / "timeline.png").is_file() else ""
    terminal.info(f"wrote {out}/runtime.json{drawn}")
    if not report["checks"]["passed"]:
        return  # the caller says which check failed, as the error line
    terminal.success(
        f"{report['images']} images answered by {report['devices']} processes: accuracy "
        f"{report['accuracy']:.4f}, live communication {100 * report['live_ratio']:.2f}% of a "
        f"ring all-reduce, latency p50 {lat['p50']:.2f} ms"
    )


def _show_answers(terminal: Terminal, report: dict[str, Any], out: Path) -> None:
    """Your own images (``--input``): one row per image, then the run's figures."""
    import torch
    from rich.table import Table

    probabilities = torch.tensor(report["logits"]).softmax(1)  # (N, num_classes)
    table = Table("file", "predicted class", "top probability")
    rows = zip(report["files"], report["predictions"], probabilities, strict=True)
    for name, predicted, row in rows:
        table.add_row(name, str(predicted), f"{float(row.max()):.4f}")
    terminal.print(table)
    lat = report["latency_ms"]
    terminal.info(
        f"{report['images']} images answered by {report['devices']} processes: top-1 agreement "
        f"with the plan's engine in this process {report['top1_agreement']:.4f}, max abs logit "
        f"difference {report['max_abs_diff']:.2e}; bytes on the wire "
        f"{report['bytes_measured']['total']:,} "
        f"({'equal to' if report['bytes_equal'] else 'DIFFERENT from'} the plan's); latency "
        f"p50 {lat['p50']:.2f} ms"
    )
    terminal.info(f"wrote {out}/runtime.json")
