"""The runtime's report (``runtime.json``) and the timeline of one image (``timeline.png``,
compute, sends and waits per device, like the paper's Fig. 6)."""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any

from torch import Tensor

from snnas._io import atomic_write_json
from snnas.cost import DeviceProfile, latency
from snnas.plan import LoadedPlan, compare_logits
from snnas.runtime._netns import parse_rate
from snnas.space import space_from_text
from snnas.space._toml import read_user_file

__all__ = ["build_report", "percentile", "write_report"]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def build_report(
    plan: LoadedPlan,
    args: Any,
    devices: list[dict[str, Any]],
    logits: Tensor,
    labels: Tensor | None,
    reference: Tensor | None,
    latencies: list[float],
    started: float,
    finished: float,
) -> dict[str, Any]:
    """Everything ``snnas run`` reports, from every device's figures (device 0 first). The
    user's images (no ``labels``, no ``reference``) leave the comparison to the launcher
    (``null`` here) and report the answers themselves: ``logits`` and ``predictions``."""
    images = len(logits)
    if reference is None:
        answers: dict[str, Any] = dict.fromkeys(
            ("top1_agreement", "max_abs_diff", "tolerance", "disagreements_beyond_tolerance",
             "accuracy", "reference_accuracy")
        )  # fmt: skip
    else:
        answers = compare_logits(logits, reference, labels)
    measured: dict[tuple[int, int], int] = {}
    for d in devices:
        for peer, nbytes in d["bytes_sent"].items():
            measured[(d["device"], int(peer))] = nbytes
    planned = {(link["from"], link["to"]): link["bytes"] * images
               for link in plan.data["totals"]["links"]}  # fmt: skip
    links = [
        {"from": a, "to": b, "measured": measured.get((a, b), 0), "planned": planned.get((a, b), 0)}
        for a, b in sorted(set(measured) | set(planned))
    ]
    counted = latencies[args.warmup :] if len(latencies) > args.warmup else latencies
    ms = [1e3 * t for t in counted]
    wall = finished - started
    total_measured = sum(measured.values())
    total_planned = sum(planned.values())
    report: dict[str, Any] = {
        "plan": str(plan.folder),
        "devices": plan.groups,
        "split": args.split if reference is not None else None,
        "images": images,
        "top1_agreement": answers["top1_agreement"],
        "max_abs_diff": answers["max_abs_diff"],
        "tolerance": answers["tolerance"],
        "disagreements_beyond_tolerance": answers["disagreements_beyond_tolerance"],
        "accuracy": answers["accuracy"],
        "reference_accuracy": answers["reference_accuracy"],
        "bytes_measured": {
            "total": total_measured,
            "per_image": total_measured / images,
            "links": [{"from": x["from"], "to": x["to"], "bytes": x["measured"]} for x in links],
        },
        "bytes_planned": {
            "total": total_planned,
            "per_image": total_planned / images,
            "links": [{"from": x["from"], "to": x["to"], "bytes": x["planned"]} for x in links],
        },
        "bytes_equal": all(x["measured"] == x["planned"] for x in links),
        "latency_ms": {
            "p50": percentile(ms, 50),
            "p95": percentile(ms, 95),
            "p99": percentile(ms, 99),
            "mean": statistics.fmean(ms) if ms else 0.0,
            "max": max(ms, default=0.0),
            "images": len(ms),
            "warmup_images": len(latencies) - len(counted),
        },
        "throughput_images_per_s": images / wall if wall > 0 else 0.0,
        "wall_s": wall,
        "per_device": [
            {
                "device": d["device"],
                "compute_ms": 1e3 * d["compute_s"],
                "send_ms": 1e3 * d["send_s"],
                "wait_ms": 1e3 * d["wait_s"],
                "compute_ms_per_image": 1e3 * d["compute_s"] / images,
                "bytes_sent": sum(d["bytes_sent"].values()),
            }
            for d in devices
        ],
        "timeout_s": args.timeout_s,
        "live_ratio": plan.data["totals"]["live_ratio"],
        # The export's prediction is for the profile named at export (rpi3b+ by default), not
        # for this machine: kept apart; snnas run --profile FILE fills in "prediction".
        "plan_prediction": plan.data["prediction"],
        "prediction": run_prediction(None),
    }
    if reference is None:
        report["predictions"] = logits.argmax(1).tolist()
        report["logits"] = logits.tolist()
    return report


def write_report(
    report: dict[str, Any], devices: list[dict[str, Any]], out: Path, image: int
) -> None:
    """``runtime.json`` and ``timeline.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    report = {**report, "timeline_image": image}
    atomic_write_json(out / "runtime.json", report)
    plan = Path(report["plan"])  # the folder's own name, not the absolute path
    plot_timeline(devices, out / "timeline.png", f"{plan.parent.name}/{plan.name}: image {image}")


def plot_timeline(devices: list[dict[str, Any]], path: Path, title: str) -> None:
    """One row per device: compute (blue), starting a send (orange), waiting (red)."""
    from snnas._plot import pyplot, save_png

    plt = pyplot()
    events = [e for d in devices for e in d["timeline"]]
    if not events:
        return
    # Time 0 is when device 0 takes the image; waits that began earlier (a device idle since
    # its previous image) are drawn from 0.
    first = [e["start"] for e in devices[0]["timeline"]]
    origin = min(first) if first else min(e["start"] for e in events)
    colours = {"compute": "C0", "send": "C1", "recv": "C3"}
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(devices) + 1.5))
    for d in devices:
        row = d["device"]
        for kind in colours:
            spans = [
                (1e3 * max(e["start"] - origin, 0.0), 1e3 * (e["end"] - max(e["start"], origin)))
                for e in d["timeline"]
                if e["kind"] == kind and e["end"] > origin
            ]
            if spans:
                ax.broken_barh(spans, (row - 0.35, 0.7), color=colours[kind])
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    labels = ["compute", "send (start)", "wait"]
    answered = [e["end"] for e in devices[0]["timeline"] if e["kind"] == "compute"]
    if answered:  # work drawn after this line is not on the image's critical path
        line = ax.axvline(1e3 * (max(answered) - origin), color="k", ls="--", lw=1)
        handles.append(line)
        labels.append("device 0 answers (later bars: sends\nand waits of other devices)")
    # Outside the axes, so that it never covers device 0's bars.
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_yticks([d["device"] for d in devices])
    ax.set_yticklabels([f"device {d['device']}" for d in devices])
    ax.invert_yaxis()
    ax.set_xlabel("ms since the image started")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    save_png(fig, path)


def run_prediction(
    profile: DeviceProfile | None,
    plan: LoadedPlan | None = None,
    link_rate: str | None = None,
) -> dict[str, Any]:
    """``runtime.json``'s ``prediction``: the cost model's latency for the machine and links
    the run used, from ``profile`` (``snnas profile`` of this machine) with the emulated link's
    rate as its bandwidth; without a profile, no figure and why."""
    if profile is None or plan is None:
        return {
            "latency_ms": None,
            "why": "no profile of the machine that ran: pass snnas run --profile FILE "
            "(written by snnas profile) for a prediction beside the measured latency",
        }
    space_file = plan.folder / plan.model.space.file
    space = space_from_text(read_user_file(space_file, "<space>", "space file"), str(space_file))
    used = (
        dataclasses.replace(profile, bandwidth_bps=float(parse_rate(link_rate)))
        if link_rate
        else profile
    )
    predicted = latency(space, plan.data["policy"], used)
    return {
        "profile": profile.name,
        "link_rate": link_rate,
        "latency_ms": 1e3 * predicted.latency_s,
        "compute_only_ms": 1e3 * predicted.compute_only_s,
        "exposed_transfer_ms": 1e3 * predicted.exposed_transfer_s,
    }
