"""Real multi-process runs of a tiny plan: gloo on loopback, one process per device."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from snnas.cost import PROFILES
from snnas.errors import RuntimeFailure
from snnas.plan import export_plan
from snnas.runtime import launch_local, percentile
from tests.plan.conftest import ACCURACY, random_frozen, talking_policy

IMAGES = 24


@pytest.fixture(scope="module")
def tiny_plan(tmp_path_factory, plan_space, digits):
    """(frozen model, plan folder, runs folder) of a plan whose devices all talk."""
    runs = tmp_path_factory.mktemp("runs")
    model = random_frozen(plan_space, talking_policy(plan_space))
    folder = runs / "tiny" / "plan"
    export_plan(plan_space, model, digits, PROFILES["rpi3b+"], ACCURACY, folder)
    return model, folder, runs


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone for our purposes only once reaped; the launcher waits on its children.
    return False


def test_local_run_answers_like_the_frozen_network(tiny_plan, digits):
    model, folder, runs = tiny_plan
    report = launch_local(folder, runs / "out", images=IMAGES, warmup=2)
    images, labels = digits.eval_tensors("test")
    with torch.no_grad():
        expected = model(images[:IMAGES])
    assert report["images"] == IMAGES
    assert report["top1_agreement"] == 1.0
    assert report["max_abs_diff"] < 1e-4
    assert report["accuracy"] == int((expected.argmax(1) == labels[:IMAGES]).sum()) / IMAGES
    # Bytes counted from the tensors handed to isend equal the plan's, link by link.
    plan = json.loads((folder / "plan.json").read_text())
    assert report["bytes_equal"]
    assert report["bytes_measured"]["total"] == IMAGES * plan["totals"]["bytes_per_image"]
    for link in plan["totals"]["links"]:
        measured = next(
            x
            for x in report["bytes_measured"]["links"]
            if (x["from"], x["to"]) == (link["from"], link["to"])
        )
        assert measured["bytes"] == IMAGES * link["bytes"]
    assert set(report["latency_ms"]) >= {"p50", "p95", "p99"}
    assert report["latency_ms"]["images"] == IMAGES - 2
    assert [d["device"] for d in report["per_device"]] == [0, 1, 2, 3]
    out = runs / "out"
    assert json.loads((out / "runtime.json").read_text())["images"] == IMAGES
    assert (out / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    assert all(_gone(pid) for pid in report["pids"])


def test_a_killed_device_ends_the_run_cleanly(tiny_plan):
    _, folder, runs = tiny_plan
    with pytest.raises(RuntimeFailure) as info:
        launch_local(folder, runs / "killed", images=IMAGES, fail_device=2, fail_at=5)
    message = str(info.value)
    assert message.startswith("device 2 died (killed by SIGKILL) at image 5: device ")
    assert "\n" not in message and "all 4 device processes stopped" in message
    pids = json.loads((runs / "killed" / "pids.json").read_text())
    assert all(_gone(pid) for pid in pids.values())


def test_a_hung_device_is_reported_within_the_timeout(tiny_plan):
    _, folder, runs = tiny_plan
    expected = (
        r"device 1 did not deliver point 0 of image 0 to device \d "
        r"\(nothing within 1 s: hung or too slow\); all 4 device processes stopped"
    )
    with pytest.raises(RuntimeFailure, match=expected):
        # Device 1 waits 30 s before each send from image 0 on; the others give up after 1 s.
        launch_local(folder, runs / "slow", images=IMAGES, slow_device=1, delay_ms=30_000,
                     timeout_s=1.0)  # fmt: skip
    pids = json.loads((runs / "slow" / "pids.json").read_text())
    assert all(_gone(pid) for pid in pids.values())


def test_a_worker_killed_from_outside(tiny_plan):
    _, folder, runs = tiny_plan
    out = runs / "outside"
    # Device 0 sleeps 50 ms before each send: the 360 images take long enough to kill one.
    command = [sys.executable, "-m", "snnas", "run", str(folder), "--local", "--runs-dir",
               str(runs), "--name", "outside", "--timeout", "3", "--slow-device", "0",
               "--delay-ms", "50"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def joined():
        logs = [out / "logs" / f"device{r}.log" for r in range(4)]
        return all(p.is_file() and "joined" in p.read_text() for p in logs)

    for _ in range(1200):  # until every device has joined and streams images
        if (out / "pids.json").is_file() and joined():
            break
        time.sleep(0.1)
    pids = json.loads((out / "pids.json").read_text())
    os.kill(pids["3"], signal.SIGKILL)
    _stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: device 3 died (killed by SIGKILL)")
    assert "Traceback" not in stderr
    assert all(_gone(int(pid)) for pid in pids.values())


def test_percentiles():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.5
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0], 95) == 3.0


def test_idle_devices_finish_through_the_store(tmp_path, plan_space, digits):
    """Permutations all [2, 1, 0, 3]: devices 1 and 3 never send or receive (no live block).
    They finish at once and leave their figures in the store, and the run outlives them.
    Before the engine an idle device's figures went by a gloo send that waited 10 s at most
    for device 0, which took them only at the end: a longer run died ("Connection closed")."""
    policy = dict(talking_policy(plan_space))
    for label in plan_space.labels:
        if label.endswith("perm"):
            policy[label] = (2, 1, 0, 3)
    policy = plan_space.validate(policy)
    folder = tmp_path / "idle" / "plan"
    plan = export_plan(plan_space, random_frozen(plan_space, policy), digits,
                       PROFILES["rpi3b+"], ACCURACY, folder)  # fmt: skip
    assert [bool(e["blocks"]) for e in plan["devices"]] == [True, False, True, False]
    sends = sum(1 for s in plan["devices"][0]["sends"])
    images = 30
    assert images * sends * 0.15 > 10.0  # device 0's delays alone outlast the old 10 s
    report = launch_local(folder, tmp_path / "idle-run", images=images, warmup=2,
                          slow_device=0, delay_ms=150, timeout_s=5.0)  # fmt: skip
    assert report["images"] == images and report["top1_agreement"] == 1.0
    assert report["bytes_equal"]
    assert [d["bytes_sent"] for d in report["per_device"]][1::2] == [0, 0]
