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


def test_a_device_lost_mid_image(parity_plan):
    """Device 1 dies after delivering what it sends before point 2 of image 5: that image is
    answered under the rule (1, 2), the later ones under (1, 0)."""
    folder, runs = parity_plan
    report = launch_local(folder, runs / "mid", images=12, fail_device=1, fail_at=5,
                          fail_point=2, timeout_s=5.0)  # fmt: skip
    fail = report["failover"]
    assert (fail["device"], fail["image"], fail["from_point"]) == (1, 5, 2)
    assert fail["degraded_top1_agreement"] == 1.0 and fail["degraded_max_abs_diff"] < 1e-3
    assert report["answered"] == 12 and report["top1_agreement"] == 1.0
    assert report["max_abs_diff"] < 1e-3


def test_a_straggler_is_replaced_after_the_deadline(parity_plan):
    folder, runs = parity_plan
    slow = dict(images=12, warmup=2, slow_device=2, delay_ms=60.0, timeout_s=5.0)
    report = launch_local(folder, runs / "straggler", deadline_ms=15.0, **slow)
    straggler = report["straggler"]
    assert straggler["deadline_ms"] == 15.0 and straggler["images_replaced"] >= 10
    # Each image equals the coded network under the rule it was answered with.
    assert report["answered"] == 12 and report["top1_agreement"] == 1.0
    assert report["failover"] is None
    waited = launch_local(folder, runs / "waited", **slow)
    assert waited["straggler"]["images_replaced"] == 0 and waited["top1_agreement"] == 1.0
    assert report["latency_ms"]["p50"] < waited["latency_ms"]["p50"]


def test_a_killed_parity_device_changes_no_answer(parity_plan):
    folder, runs = parity_plan
    report = launch_local(folder, runs / "parity-lost", images=12, fail_device=4, fail_at=6,
                          timeout_s=5.0)  # fmt: skip
    fail = report["failover"]
    assert (fail["device"], fail["image"], fail["answer_by"]) == (4, 6, 0)
    assert fail["how"] == "connection closed" and fail["survivors"] == [0, 1, 2, 3]
    # Device 0 answers every image as in normal operation; the encodings just stop.
    assert report["answered"] == 12 and report["top1_agreement"] == 1.0
    assert report["max_abs_diff"] < 1e-3 and report["erasure_bytes"] == 0


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (["--local", "--fail-point", "1"], "--fail-point: expected --fail-device as well"),
        (["--local", "--fail-device", "4", "--fail-point", "1"], "--fail-point: expected 0"),
        (["--local", "--fail-device", "1", "--fail-point", "99"], "--fail-point: expected a"),
        (["--local", "--fail-device", "1", "--fail-at", "23"], "--fail-at: expected an image"),
        (["--rank", "1", "--master", "127.0.0.1:1", "--fail-device", "4"], "highest-ranked"),
        (["--rank", "1", "--master", "127.0.0.1:1", "--fail-point", "1"], "--fail-point"),
    ],
)
def test_failover_options_that_cannot_happen_are_usage_errors(parity_plan, extra, option):
    """On every path (--local and --rank), before any process starts: a fault that would
    never happen, or that --rank cannot survive, exits 2 with one line."""
    from click.testing import CliRunner

    from snnas.cli import cli

    folder, runs = parity_plan
    args = ["run", str(folder), *extra, "--images", str(IMAGES), "--runs-dir", str(runs)]
    result = CliRunner().invoke(cli, [*args, "--name", "refused"])
    assert result.exit_code == 2, result.output
    assert option in result.output and len(result.output.strip().splitlines()) == 1
    assert not (runs / "refused").exists()


def test_a_parity_plan_that_cannot_join_fails_in_one_line_within_the_join_timeout(parity_plan):
    """--rank/--master with nobody at the address: a one-line failure after --join-timeout,
    not torch's 120 s and a traceback."""
    from click.testing import CliRunner

    from snnas.cli import cli

    folder, runs = parity_plan
    args = ["run", str(folder), "--rank", "1", "--master", "127.0.0.1:9", "--join-timeout", "1"]
    result = CliRunner().invoke(cli, [*args, "--runs-dir", str(runs), "--name", "nojoin"])
    assert result.exit_code == 1, result.output
    assert "could not join" in result.output and "within 1 s" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_rank_master_survives_losing_device_0(parity_plan, tmp_path):
    """With --rank/--master the store lives on the highest-ranked device (the parity device
    here), not on device 0: device 0 killed at image 4 is survived, parity device 4 answers
    and reports."""
    import socket
    import subprocess
    import sys

    folder, _ = parity_plan
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    common = ["--world", "5", "--rendezvous", "master", "--address", f"127.0.0.1:{port}",
              "--images", "12", "--timeout", "5", "--fail-device", "0", "--fail-at", "4",
              "--runs-dir", str(tmp_path), "--name", "lost0"]  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "snnas.runtime", str(folder), "--rank", str(r), *common],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in (4, 0, 1, 2, 3)  # the host first
    ]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0, -9, 0, 0, 0], outputs
    report = json.loads((tmp_path / "lost0" / "runtime.json").read_text())
    fail = report["failover"]
    assert (fail["device"], fail["answer_by"], fail["reporter"]) == (0, 4, 4)
    assert report["answered"] == 12 and report["top1_agreement"] == 1.0
