"""A plan with a parity device on real processes: normal operation, and a data device killed
for real mid-stream (device 0, whose loss makes the parity device answer, and another one)."""

import json

import pytest

from snnas.cost import PROFILES
from snnas.plan import export_plan
from snnas.runtime import launch_local
from tests.plan.conftest import ACCURACY, coded_network, parity_space
from tests.runtime.test_runtime import _gone

IMAGES = 24


@pytest.fixture(scope="module")
def parity_plan(tmp_path_factory, digits):
    runs = tmp_path_factory.mktemp("runs")
    coded = coded_network(parity_space(1))
    folder = runs / "coded" / "plan"
    export_plan(coded.space, coded.base, digits, PROFILES["rpi3b+"], ACCURACY, folder,
                coded=coded)  # fmt: skip
    return folder, runs


def test_normal_operation_moves_the_planned_bytes(parity_plan):
    folder, runs = parity_plan
    report = launch_local(folder, runs / "normal", images=IMAGES, warmup=2)
    plan = json.loads((folder / "plan.json").read_text())
    assert report["devices"] == 5 and report["answered"] == IMAGES
    assert report["top1_agreement"] == 1.0 and report["max_abs_diff"] < 1e-3
    assert report["failover"] is None and report["bytes_equal"]
    per_image = plan["totals"]["bytes_per_image"] + plan["parity"]["encoding_bytes"]
    assert report["bytes_measured"]["total"] == IMAGES * per_image
    assert all(_gone(pid) for pid in report["pids"])


@pytest.mark.parametrize(("device", "answer_by"), [(0, 4), (2, 0)])
def test_a_killed_data_device_is_survived(parity_plan, device, answer_by):
    folder, runs = parity_plan
    out = runs / f"killed{device}"
    report = launch_local(folder, out, images=IMAGES, fail_device=device, fail_at=7,
                          timeout_s=5.0)  # fmt: skip
    fail = report["failover"]
    assert fail["device"] == device and fail["image"] == 7
    assert fail["how"] == "connection closed" and 0 <= fail["detection_ms"] < 5000
    assert fail["answer_by"] == answer_by and fail["reporter"] == (4 if device == 0 else 0)
    assert fail["survivors"] == [d for d in range(5) if d != device]
    # Every image answered: normal operation before, the plan's degraded rule after, each
    # equal to the coded network's answers for it.
    assert report["answered"] == IMAGES and fail["degraded_images"] == IMAGES - 7
    assert report["top1_agreement"] == 1.0 and report["max_abs_diff"] < 1e-3
    assert fail["degraded_top1_agreement"] == 1.0
    assert fail["degraded_accuracy"] == fail["degraded_reference_accuracy"]
    assert json.loads((out / "runtime.json").read_text())["failover"]["device"] == device
    pids = json.loads((out / "pids.json").read_text())
    assert len(pids) == 5 and all(_gone(pid) for pid in pids.values())
