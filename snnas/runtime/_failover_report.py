"""The report of a run with parity devices (``runtime.json``): the answers every image got,
against the coded network's (normal operation before a failure, the degraded rule after),
bytes, latency, and when a device was lost, how fast it was noticed and what accuracy the
survivors kept against what ``snnas parity eval`` predicts (docs/runtime.md, "Failover")."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import torch
from torch import Tensor

from snnas.errors import RuntimeFailure
from snnas.plan import LoadedPlan, compare_logits
from snnas.runtime._report import percentile, run_prediction

__all__ = ["build_failover_report"]


def _gather_stats(dev: Any, args: Any) -> list[dict[str, Any]]:
    """Every surviving device's figures from the store (waits for them, with a deadline)."""
    deadline = time.monotonic() + args.timeout_s + 30.0
    out = []
    for rank in range(dev.plan.world):
        while not dev.store.check([f"stats/{rank}"]):
            if dev.down is not None and dev.down[0] == rank:
                break
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"device {rank} left no figures in the store")
            time.sleep(0.01)
        else:
            out.append(json.loads(dev.store.get(f"stats/{rank}").decode()))
    return out


def _answer(dev: Any, device: int, image: int, required: bool = True) -> dict[str, Any]:
    """What ``device`` answered for ``image`` (logits, when it took the image and answered;
    wall-clock seconds, one machine), from the store."""
    key = f"answer/{device}/{image}"
    if not dev.store.check([key]):
        if not required:
            return {}
        raise RuntimeFailure(f"image {image} was never answered (device {device} left no answer)")
    answer: dict[str, Any] = json.loads(dev.store.get(key).decode())
    return answer


def _latency(ms: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "mean": statistics.fmean(ms) if ms else 0.0,
        "max": max(ms, default=0.0),
        "images": len(ms),
    }


def build_failover_report(
    plan: LoadedPlan, args: Any, dev: Any, labels: Tensor, count: int
) -> dict[str, Any]:
    """``runtime.json`` of a plan with parity devices (module docstring)."""
    g = plan.groups
    devices = _gather_stats(dev, args)
    reference = plan.reference()
    normal = reference[f"{args.split}.logits"][:count]
    down = dev.down
    failed_at = down[1] if down is not None else count
    expected = normal.clone()
    logits = torch.empty_like(normal)
    latencies: list[float] = []
    erased: dict[int, tuple[int, int]] = {}  # image -> the rule it was answered under
    for i in range(count):
        if dev.store.check([f"from/{i}"]):
            info = json.loads(dev.store.get(f"from/{i}").decode())
            erased[i] = (int(info["device"]), int(info["point"]))
        lost_data = down is not None and down[0] < g  # a lost parity device replaces nothing
        if (
            lost_data
            and down is not None
            and (i > failed_at or (i == failed_at and i not in erased))
        ):
            erased[i] = (down[0], 0)
        by = dev.rules[erased[i]]["answer_by"] if i in erased else 0
        answer = _answer(dev, by, i)
        logits[i] = torch.tensor(answer["logits"])
        taken = [a["taken"] for a in (_answer(dev, d, i, False) for d in (0, g)) if a]
        latencies.append(1e3 * (answer["answered"] - min(taken)))
        if i in erased:
            j, p = erased[i]
            expected[i] = reference[f"{args.split}.degraded.{j}.{p}"][i]
    answers = compare_logits(logits, expected, labels)
    measured: dict[tuple[int, int], int] = {}
    for d in devices:
        for peer, nbytes in d["bytes_sent"].items():
            measured[(d["device"], int(peer))] = nbytes
    planned: dict[tuple[int, int], int] = {}
    for link in (*plan.data["totals"]["links"], *(plan.parity or {}).get("links", [])):
        key2 = (link["from"], link["to"])
        planned[key2] = planned.get(key2, 0) + link["bytes"] * count
    links = sorted(set(measured) | set(planned))
    warm = min(args.warmup, failed_at)
    wall = max(d["finished"] for d in devices) - min(d["started"] for d in devices)
    late = sorted(i for i in erased if down is None or i < failed_at)
    before, after = latencies[warm:failed_at], latencies[failed_at:]
    report: dict[str, Any] = {
        "plan": str(plan.folder),
        "devices": plan.world,
        "data_devices": g,
        "parity_devices": plan.world - g,
        "split": args.split,
        "images": count,
        "answered": len(latencies),
        "top1_agreement": answers["top1_agreement"],
        "max_abs_diff": answers["max_abs_diff"],
        "tolerance": answers["tolerance"],
        "disagreements_beyond_tolerance": answers["disagreements_beyond_tolerance"],
        "accuracy": answers["accuracy"],
        "reference_accuracy": answers["reference_accuracy"],
        "compared_with": "the coded network: normal operation before the failure, the "
        "degraded rule (j, 0) from the failed image on",
        "bytes_measured": {
            "total": sum(measured.values()),
            "per_image": sum(measured.values()) / count,
            "links": [{"from": a, "to": b, "bytes": measured.get((a, b), 0)} for a, b in links],
        },
        "bytes_planned": {  # normal operation: the policy's transfers and the encodings
            "total": sum(planned.values()),
            "per_image": sum(planned.values()) / count,
            "links": [{"from": a, "to": b, "bytes": planned.get((a, b), 0)} for a, b in links],
        },
        "bytes_equal": down is None and all(measured.get(k, 0) == planned.get(k, 0) for k in links),
        "latency_ms": {**_latency(before), "warmup_images": warm},
        "per_device": [
            {
                "device": d["device"],
                "compute_ms": 1e3 * d["compute_s"],
                "send_ms": 0.0,  # sends are started by the device's loop: counted in compute
                "wait_ms": 1e3 * d["wait_s"],
                "bytes_sent": sum(d["bytes_sent"].values()),
            }
            for d in devices
        ],
        "throughput_images_per_s": count / wall if wall > 0 else 0.0,
        "wall_s": wall,
        "timeout_s": args.timeout_s,
        "live_ratio": plan.data["totals"]["live_ratio"],
        # The export's prediction is for the profile named at export (rpi3b+ by default), not
        # for this machine: kept apart; snnas run --profile FILE fills in "prediction".
        "plan_prediction": plan.data["prediction"],
        "prediction": run_prediction(None),
        "erasure_bytes": sum(d.get("standin_bytes", 0) for d in devices),
        "failover": None,
        "straggler": None,
    }
    if args.slow_device is not None:
        report["latency_ms"] = {**_latency(latencies[warm:]), "warmup_images": warm}
        report["straggler"] = {
            "device": args.slow_device,
            "delay_ms": args.delay_ms,
            "deadline_ms": args.deadline_ms,
            "images_replaced": len(late),
            "from_points": {
                str(p): sum(1 for i in late if erased[i][1] == p)
                for p in sorted({erased[i][1] for i in late})
            },
            "unclaimed_standins": sum(d.get("unclaimed_standins", 0) for d in devices),
        }
    if down is not None:
        report["failover"] = _failover(dev, plan, args, logits, labels, reference, failed_at,
                                       count, after, devices, erased, expected)  # fmt: skip
    return report


def _failover(
    dev: Any,
    plan: LoadedPlan,
    args: Any,
    logits: Tensor,
    labels: Tensor,
    reference: dict[str, Tensor],
    failed_at: int,
    count: int,
    after: list[float],
    devices: list[dict[str, Any]],
    erased: dict[int, tuple[int, int]],
    expected: Tensor,
) -> dict[str, Any]:
    """What happened after the failure: detection, degraded accuracy measured and predicted."""
    if dev.down is None or dev.detection is None:
        raise RuntimeFailure("a failover report without a lost device")
    j = dev.down[0]
    split = args.split
    # A lost parity device changes no answer: the coded network in normal operation.
    degraded = reference.get(f"{split}.degraded.{j}.0", reference[f"{split}.logits"])
    all_labels = reference[f"{split}.labels"]
    # Against the coded network under each image's rule: (j, p) for the image in flight,
    # (j, 0) after it.
    part = compare_logits(logits[failed_at:], expected[failed_at:], labels[failed_at:])
    killed = None
    if dev.store.check(["killed"]):
        killed = json.loads(dev.store.get("killed").decode())
    detection = dev.detection
    positions = [k for k in reference if k.startswith(f"{split}.degraded.")]
    mean_degraded = sum(
        float((reference[k].argmax(1) == all_labels).float().mean()) for k in positions
    ) / max(len(positions), 1)
    return {
        "device": j,
        "image": failed_at,
        "from_point": erased[failed_at][1] if failed_at in erased else 0,
        "detected_by": detection["by"],
        "detected_at_point": detection["point"],
        "how": detection["how"],
        "detection_ms": 1e3 * (detection["time"] - killed["time"]) if killed else None,
        "reporter": args.rank,
        "answer_by": dev.rules[(j, 0)]["answer_by"] if j < plan.groups else 0,
        "survivors": [d["device"] for d in devices],
        "degraded_images": count - failed_at,
        "degraded_accuracy": part["accuracy"],
        "degraded_reference_accuracy": part["reference_accuracy"],
        "degraded_top1_agreement": part["top1_agreement"],
        "degraded_max_abs_diff": part["max_abs_diff"],
        "predicted_accuracy_device_lost": float((degraded.argmax(1) == all_labels).float().mean()),
        "predicted_degraded_acc": mean_degraded,
        "predicted_on": f"the full {split} split (the coded network, as snnas parity eval)",
        "latency_ms_after": _latency(after),
    }
