"""The runtime against the frozen network and against the cost model, side by side.

Measured in one run, on this machine:

1. ``snnas run --local`` of a plan (G gloo processes on loopback, ``launch_local``): top-1
   agreement with the frozen network, max abs logit difference, measured bytes / planned
   bytes (exactly 1.0), per-image latency (p50) and throughput;
2. the same images through the frozen network in this one process (one thread, batch 1,
   inference mode): ``speedup_p50`` is its p50 over the runtime's;
3. the cost model's latency prediction for the plan's policy with a device profile of this
   machine (``--profile FILE`` written by ``snnas profile``, else measured now the same way,
   on the plan's space), against the measured p50: ``measured_over_predicted``.

The plan is either ``--plan FOLDER`` (default: the quickstart's fine-tuned plan when
``runs/quickstart/plan`` exists, else a random-weight quickstart plan), or built here from
``--space FILE`` with freshly initialised weights (timing does not depend on training) and
``--policy FILE`` or a fixed dense policy (every device sends its whole stream, float32, to
the next device at every point). A CIFAR space reads ``--data-dir``, else seeded random
images written in CIFAR's own file format (again: timing does not depend on the pixels).

On a machine with fewer cores than G processes, no speed-up is expected; the paper-scale
space for a 2-core machine is ``search_spaces/sep_resnext56_4x16d_g2.toml``.

    .venv/bin/python benchmarks/runtime.py [--plan FOLDER | --space FILE [--policy FILE]]
        [--profile FILE] [--images 200] [--data-dir DIR] [--json]

The paper's Fig. 5 as a measurement (``--link-rates``, root on Linux): for every alpha of
``--alphas`` (a copy of ``--space`` with that staleness) and every rate (``snnas run --local
--link-rate RATE``: one network namespace per device, tbf-limited veth links), a dense plan
with fresh weights is run and its measured p50 printed beside the prediction (the profile
with the link's rate as its bandwidth); ``links.png`` beside ``--out`` plots both.

    .venv/bin/python benchmarks/runtime.py --space FILE --link-rates 20mbit,100mbit,300mbit
        --alphas 1,2,3 [--profile FILE] [--images 40] [--out links.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


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


def dense_policy(space: Any) -> dict[str, Any]:
    """Every device sends its whole stream (the densest level), float32, to the next device
    (a shift), at every point; decisions of other kinds take their first choice."""
    g = space.groups
    shift = tuple((i + 1) % g for i in range(g))
    policy: dict[str, Any] = {}
    for d in space.decisions:
        if d.kind == "permutation":
            policy[d.label] = shift if shift in d.choices else d.choices[-1]
        elif d.kind == "sparsity":
            policy[d.label] = max(d.choices)
        elif d.kind == "dtype":
            policy[d.label] = "float32" if "float32" in d.choices else d.choices[0]
        else:
            policy[d.label] = d.choices[0]
    return policy


def random_cifar(root: Path, name: str, train: int, test: int) -> Path:
    """Seeded random images in CIFAR's python-batch format (``root/<archive folder>``)."""
    rng = np.random.default_rng(0)
    classes, label_key = (100, "fine_labels") if name == "cifar100" else (10, "labels")

    def batch(n: int) -> dict[str, Any]:
        return {
            label_key: rng.integers(0, classes, n).tolist(),
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }

    if name == "cifar100":
        folder = root / "cifar-100-python"
        files = {"train": batch(train), "test": batch(test)}
    else:
        folder = root / "cifar-10-batches-py"
        files = {f"data_batch_{i}": batch(train // 5) for i in range(1, 6)}
        files["test_batch"] = batch(test)
    folder.mkdir(parents=True)
    for file_name, content in files.items():
        (folder / file_name).write_bytes(pickle.dumps(content, protocol=2))
    return root


def build_plan(args: argparse.Namespace, workdir: Path) -> tuple[Path, str, Any, Path | None]:
    """The plan to measure, what it is, its frozen network (None when it cannot be found)
    and the data folder its images come from."""
    from snnas.cost import PROFILES
    from snnas.data import load_for_space
    from snnas.models import SepResNeXt
    from snnas.plan import export_plan
    from snnas.space import load_space

    if args.plan is not None:
        return args.plan, str(args.plan), frozen_of(args.plan), args.data_dir
    quick = ROOT / "runs" / "quickstart" / "plan"
    if args.space is None and (quick / "plan.json").is_file():
        return quick, "the quickstart's fine-tuned plan", frozen_of(quick), None
    space_file = args.space or ROOT / "search_spaces" / "quickstart.toml"
    space = load_space(space_file)
    policy = space.load_policy(args.policy) if args.policy else dense_policy(space)
    net = space.network
    data_dir = args.data_dir
    if net.input_channels == 3 and net.input_size == 32:
        dataset = "cifar100" if net.num_classes == 100 else "cifar10"
        if data_dir is None:
            data_dir = random_cifar(workdir / "data", dataset, 100, args.images + 10)
    else:
        dataset = "digits"
    data = load_for_space(dataset, space, data_dir)
    torch.manual_seed(0)
    model = SepResNeXt(space).freeze(policy).eval()
    folder = workdir / "bench" / "plan"
    accuracy = {"val_acc": 0.0, "test_acc": 0.0, "selected_epoch": 0}
    export_plan(space, model, data, PROFILES["rpi3b+"], accuracy, folder)
    which = "the given policy" if args.policy else "a dense float32 policy"
    what = f"{space.name} with fresh weights and {which} ({dataset} images)"
    return folder, what, model, data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", type=Path, help="a plan folder to run")
    parser.add_argument("--space", type=Path, help="build a plan of this space here")
    parser.add_argument("--policy", type=Path, help="with --space: the policy (else dense)")
    parser.add_argument("--profile", type=Path, help="this machine's snnas profile file")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--link-rates", help="sweep these rates (e.g. 20mbit,100mbit,300mbit)")
    parser.add_argument("--alphas", default="1,2,3", help="with --link-rates: the alphas")
    parser.add_argument("--out", type=Path, default=Path("links.json"), help="sweep's JSON")
    args = parser.parse_args()
    if args.link_rates:
        from snnas.errors import UsageError
        from snnas.runtime._netns import parse_rate

        if args.plan is not None or args.policy is not None:
            parser.error("--link-rates builds dense plans of --space: no --plan or --policy")
        try:
            for rate in args.link_rates.split(","):
                parse_rate(rate)
        except UsageError as exc:
            parser.error(f"--link-rates: {exc}")
        alphas = args.alphas.split(",")
        if not all(a.strip().isdigit() and 1 <= int(a) <= 64 for a in alphas):
            parser.error(
                f"--alphas: expected integers 1..64 joined by commas, found {args.alphas!r}"
            )
        sweep(args)
        return
    if args.plan is not None and (args.space or args.policy):
        parser.error("--plan runs a plan as it is: no --space or --policy with it")
    if args.policy is not None and args.space is None:
        parser.error("--policy needs --space")
    if args.images < 20:
        parser.error("--images: at least 20 (10 are warm-up)")

    from snnas.cost import get_profile, latency
    from snnas.data import load_dataset
    from snnas.plan import execute_plan, load_plan
    from snnas.runtime import launch_local
    from snnas.runtime._profiler import measure_profile
    from snnas.space import space_from_text

    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]  # other jobs on a shared machine skew every figure
    with tempfile.TemporaryDirectory() as tmp:
        folder, what, frozen, data_dir = build_plan(args, Path(tmp))
        plan = load_plan(folder)
        space = space_from_text((folder / plan.data["space"]["file"]).read_text())
        # 1. The runtime: G processes.
        report = launch_local(
            folder, Path(tmp) / "runtime", images=args.images, warmup=10, data_dir=data_dir
        )
        # 2. One process: the frozen network (all devices' streams batched along the channel
        # axis, as it was trained) at batch 1 on the same images; without the frozen network,
        # every device's program in turn in this process.
        net = plan.data["network"]
        data = load_dataset(plan.data["input"]["dataset"], input_size=net["input_size"],
                            input_channels=net["input_channels"], data_dir=data_dir)  # fmt: skip
        images = data.eval_tensors("test")[0][: args.images]
        nets = {d: plan.net(d) for d in range(plan.groups)}
        one = []
        with torch.inference_mode():
            for i in range(len(images)):
                tic = time.perf_counter()
                if frozen is not None:
                    frozen(images[i : i + 1])
                else:
                    execute_plan(plan, images[i : i + 1], nets)
                one.append(time.perf_counter() - tic)
        one_p50 = statistics.median(one[10:])
        one_what = "frozen network" if frozen is not None else "device programs in turn"
        # 3. The prediction with this machine's profile.
        if args.profile is not None:
            profile = get_profile(str(args.profile), "--profile")
            profile_from = str(args.profile)
        else:
            profile, _ = measure_profile([space], name="here", repeats=30)
            profile_from = "measured now (snnas profile's code, on the plan's space)"
        predicted = latency(space, plan.data["policy"], profile)
    measured_p50 = report["latency_ms"]["p50"]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "torch": torch.__version__,
        "load_average_1min": [load_before, os.getloadavg()[0]],  # at the start and the end
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
        "profile": profile_from,
        "profile_figures": {
            k: v for k, v in profile.to_json().items() if k not in ("table", "source")
        },
        "profile_table_ops": len(profile.table),
        "predicted_latency_ms": 1e3 * predicted.latency_s,
        "predicted_compute_only_ms": 1e3 * predicted.compute_only_s,
        "measured_over_predicted": measured_p50 / (1e3 * predicted.latency_s),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:>34}: {value}")


def alpha_text(text: str, alpha: int) -> str:
    """A space file's text with ``[split] alpha`` set (and its overlap left to the default)."""
    import re

    head, sep, rest = text.partition("[split]")
    if not sep:
        raise SystemExit("the space has no [split] table")
    table, nxt, tail = rest.partition("\n[")
    table = re.sub(r"(?m)^\s*(alpha|overlap)\s*=.*\n", "", table)
    table = f"\nalpha = {alpha}" + table
    return head + sep + table + nxt + tail


def sweep(args: argparse.Namespace) -> None:
    """Measured and predicted latency for every (alpha, link rate) (module docstring)."""
    from dataclasses import replace

    from snnas._plot import pyplot, save_png
    from snnas.cost import PROFILES, get_profile, latency
    from snnas.data import load_for_space
    from snnas.models import SepResNeXt
    from snnas.plan import export_plan
    from snnas.runtime import launch_local
    from snnas.runtime._netns import parse_rate
    from snnas.runtime._profiler import measure_profile
    from snnas.space import space_from_text

    torch.set_num_threads(1)
    space_file = args.space or ROOT / "search_spaces" / "quickstart.toml"
    text = Path(space_file).read_text("utf-8")
    rates = [r.strip() for r in args.link_rates.split(",")]
    alphas = [int(a) for a in args.alphas.split(",")]
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        for alpha in alphas:
            space = space_from_text(alpha_text(text, alpha), f"{space_file} (alpha {alpha})")
            if base is None:
                base = (
                    get_profile(str(args.profile), "--profile")
                    if args.profile
                    else measure_profile([space], name="here", repeats=30)[0]
                )
            policy = dense_policy(space)
            net = space.network
            data_dir = args.data_dir
            if net.input_channels == 3 and net.input_size == 32:
                dataset = "cifar100" if net.num_classes == 100 else "cifar10"
                if data_dir is None:  # written once, read by every alpha
                    data_dir = Path(tmp) / "data"
                    if not data_dir.exists():
                        random_cifar(data_dir, dataset, 100, args.images + 10)
            else:
                dataset = "digits"
            data = load_for_space(dataset, space, data_dir)
            torch.manual_seed(0)
            model = SepResNeXt(space).freeze(policy).eval()
            folder = Path(tmp) / f"alpha{alpha}" / "plan"
            accuracy = {"val_acc": 0.0, "test_acc": 0.0, "selected_epoch": 0}
            export_plan(space, model, data, PROFILES["rpi3b+"], accuracy, folder)
            for rate in rates:
                report = launch_local(
                    folder, Path(tmp) / f"alpha{alpha}" / rate, images=args.images, warmup=5,
                    data_dir=data_dir, link_rate=rate,
                )  # fmt: skip
                profile = replace(base, bandwidth_bps=float(parse_rate(rate)))
                predicted = 1e3 * latency(space, policy, profile).latency_s
                measured = report["latency_ms"]["p50"]
                rows.append({
                    "alpha": alpha, "points": space.num_points, "link_rate": rate,
                    "measured_p50_ms": measured, "predicted_ms": predicted,
                    "measured_over_predicted": measured / predicted,
                    "top1_agreement": report["top1_agreement"],
                })  # fmt: skip
                print(
                    f"alpha {alpha} ({space.num_points} points), {rate:>8}: measured p50 "
                    f"{measured:8.2f} ms, predicted {predicted:8.2f} ms, ratio "
                    f"{measured / predicted:.2f}",
                    file=sys.stderr,
                )
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "torch": torch.__version__,
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "space": str(space_file),
        "images": args.images,
        "rows": rows,
    }
    from snnas._io import atomic_write_json

    atomic_write_json(args.out, result)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, alpha in enumerate(alphas):
        mine = [r for r in rows if r["alpha"] == alpha]
        x = [parse_rate(r["link_rate"]) / 1e6 for r in mine]
        ax.plot(x, [r["measured_p50_ms"] for r in mine], "o-", color=f"C{i}",
                label=f"alpha {alpha}: measured p50")  # fmt: skip
        ax.plot(x, [r["predicted_ms"] for r in mine], "x--", color=f"C{i}",
                label=f"alpha {alpha}: predicted")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("link rate (Mbit/s, tbf on veth)")
    ax.set_ylabel("latency per image (ms)")
    ax.set_title(f"{Path(space_file).name}: measured and predicted latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_png(fig, args.out.with_suffix(".png"))
    print(json.dumps(result, indent=2) if args.json else f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
