"""The runtime against the frozen network and against the cost model, side by side.

Measured in one run, on this machine:

1. ``snnas run --local`` of a plan (G gloo processes on loopback): top-1 agreement with the
   frozen network, max abs logit difference, measured bytes / planned bytes (exactly 1.0),
   per-image latency (p50) and throughput;
2. the same images through the frozen network in this one process, one at a time: the
   speed-up of G processes over one;
3. a device profile calibrated here: FLOP/s from device 0's own part of the plan timed at
   batch 1, loopback latency and bandwidth from gloo ping-pongs between two processes; the
   cost model's latency prediction with that profile against the measured p50.

On a 2-core machine G = 4 processes share two cores, so no speed-up is expected: the figures
say what the runtime costs here, and the same command on a machine with G or more cores
measures the speed-up.

    .venv/bin/python benchmarks/runtime.py [--plan runs/quickstart/plan] [--images 200] [--json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
SIZES = (256, 1 << 16, 1 << 20, 1 << 22, 1 << 24)  # ping-pong message sizes in bytes


def _pingpong(rank: int, port: int, repeats: int) -> None:
    """Two processes bounce messages; rank 0 prints one-way times per size as JSON."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, 2, rank == 0, wait_for_workers=True,
                          timeout=datetime.timedelta(seconds=60))  # fmt: skip
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2)
    out = {}
    for size in SIZES:
        buf = torch.zeros(size // 4)
        times = []
        for i in range(repeats + 5):
            tic = time.perf_counter()
            # The runtime's own calls: isend / irecv and a wait on each.
            if rank == 0:
                dist.isend(buf, 1, tag=2 * i).wait()
                dist.irecv(buf, 1, tag=2 * i + 1).wait()
            else:
                dist.irecv(buf, 0, tag=2 * i).wait()
                dist.isend(buf, 0, tag=2 * i + 1).wait()
            if i >= 5:
                times.append((time.perf_counter() - tic) / 2)
        out[size] = statistics.median(times)
    dist.destroy_process_group()
    if rank == 0:
        print(json.dumps(out))


def calibrate_link(repeats: int = 50) -> tuple[float, float]:
    """(latency s, bandwidth bit/s) of gloo on loopback, from two real processes."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--pingpong", str(r), str(port), str(repeats)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for r in (0, 1)
    ]
    output = procs[0].communicate(timeout=300)[0]
    procs[1].wait(timeout=60)
    times = {int(k): v for k, v in json.loads(output.strip().splitlines()[-1]).items()}
    # Least squares of one-way time = latency + 8 * bytes / bandwidth over the sizes.
    xs, ys = list(times), [times[k] for k in times]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    latency = max(my - slope * mx, 0.0)
    bandwidth = 8 / slope if slope > 0 else float("inf")
    return latency, bandwidth


def _time(fn: Any, repeats: int) -> float:
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - tic)
    return statistics.median(samples)


def frozen_of(folder: Path) -> Any:
    """The frozen network a plan was exported from, when its run is reachable."""
    from snnas._run import RunDir
    from snnas.plan import sha256_file
    from snnas.space import space_from_text
    from snnas.train._finetune import load_finetuned

    plan = json.loads((folder / "plan.json").read_text())
    source = plan.get("source")
    if not source:
        return None
    checkpoint = Path(source["run"]) / source["checkpoint"]
    if not checkpoint.is_file() or sha256_file(checkpoint) != source["sha256"]:
        return None
    space = space_from_text((folder / plan["space"]["file"]).read_text())
    return load_finetuned(RunDir(checkpoint.parent), space)


def ensure_plan(path: Path | None, workdir: Path) -> tuple[Path, str, Any]:
    """The plan to measure (``path``, the quickstart's, or a random-weight quickstart plan)
    and its frozen network (None when it cannot be found)."""
    if path is not None:
        return path, str(path), frozen_of(path)
    quick = ROOT / "runs" / "quickstart" / "plan"
    if (quick / "plan.json").is_file():
        return quick, "the quickstart's fine-tuned plan", frozen_of(quick)
    from snnas.cost import PROFILES
    from snnas.data import load_for_space
    from snnas.models import SepResNeXt
    from snnas.plan import export_plan
    from snnas.space import load_space

    space = load_space(ROOT / "search_spaces" / "quickstart.toml")
    torch.manual_seed(0)
    policy = space.sample(__import__("random").Random(0))
    model = SepResNeXt(space).freeze(policy).eval()
    data = load_for_space("digits", space)
    folder = workdir / "bench" / "plan"
    accuracy = {"val_acc": 0.0, "test_acc": 0.0, "selected_epoch": 0}
    export_plan(space, model, data, PROFILES["rpi3b+"], accuracy, folder)
    return folder, "a random-weight quickstart plan (runs/quickstart/plan not found)", model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", type=Path)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pingpong", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pingpong:
        _pingpong(*args.pingpong)
        return

    from snnas.cost import DeviceProfile, latency
    from snnas.data import load_dataset
    from snnas.plan import load_plan
    from snnas.runtime import launch_local
    from snnas.space import space_from_text

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder, what, frozen = ensure_plan(args.plan, Path(tmp))
        plan = load_plan(folder)
        # 1. The runtime: G processes.
        report = launch_local(folder, Path(tmp) / "runtime", images=args.images, warmup=10)
        # 2. One process: the frozen network (all devices' streams batched along the channel
        # axis, as it was trained) at batch 1 on the same images; without the frozen network,
        # every device's program in turn in this process.
        from snnas.plan import execute_plan

        net = plan.data["network"]
        data = load_dataset(plan.data["input"]["dataset"], input_size=net["input_size"],
                            input_channels=net["input_channels"])  # fmt: skip
        images = data.eval_tensors("test")[0][: args.images]
        nets = {d: plan.net(d) for d in range(plan.groups)}
        one = []
        with torch.no_grad():
            for i in range(len(images)):
                tic = time.perf_counter()
                if frozen is not None:
                    frozen(images[i : i + 1])
                else:
                    execute_plan(plan, images[i : i + 1], nets)
                one.append(time.perf_counter() - tic)
        one_p50 = statistics.median(one[10:])
        one_what = "frozen network" if frozen is not None else "device programs in turn"
        # 3. Calibrated profile: device 0's part at batch 1, and gloo on loopback.
        net0 = nets[0]
        entry = plan.device(0)
        x = images[:1]

        def device0() -> None:
            with torch.no_grad():
                y = net0.run_stem(x)
                for b in entry["blocks"]:
                    y = net0.run_block(b, y)
                net0.run_head(y)

        seconds = _time(device0, 50)
        flops = entry["flops"] / seconds
        link_latency, bandwidth = calibrate_link()
        profile = DeviceProfile(
            "calibrated", flops, bandwidth, link_latency, "benchmarks/runtime.py"
        )
        space = space_from_text((folder / plan.data["space"]["file"]).read_text())
        predicted = latency(space, plan.data["policy"], profile)
    measured_p50 = report["latency_ms"]["p50"]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "torch": torch.__version__,
        "plan": what,
        "devices": report["devices"],
        "images": report["images"],
        "top1_agreement": report["top1_agreement"],
        "max_abs_diff": report["max_abs_diff"],
        "bytes_measured_over_planned": report["bytes_measured"]["total"]
        / max(report["bytes_planned"]["total"], 1),
        "runtime_latency_ms": report["latency_ms"],
        "runtime_throughput_images_per_s": report["throughput_images_per_s"],
        "one_process": one_what,
        "one_process_latency_ms_p50": 1e3 * one_p50,
        "speedup_p50": 1e3 * one_p50 / measured_p50,
        "calibrated_profile": {
            "flops_per_s": flops,
            "link_latency_s": link_latency,
            "bandwidth_bps": bandwidth,
        },
        "predicted_latency_ms": 1e3 * predicted.latency_s,
        "measured_over_predicted": measured_p50 / (1e3 * predicted.latency_s),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:>34}: {value}")


if __name__ == "__main__":
    main()
