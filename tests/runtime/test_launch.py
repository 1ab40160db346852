"""The local launcher (``snnas run PLAN --local``) as its user meets it: the first failure
reported first and at once, no device left behind by any signal, no option clamped, one run
per name at a time, a run whose answers or bytes are wrong exits 1, pinning."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from snnas.cli import cli
from snnas.cost import PROFILES
from snnas.errors import CheckpointError, SnnasError
from snnas.plan import export_plan, load_plan
from snnas.runtime import WorkerArgs, launch_local
from snnas.runtime._children import plan_cores
from snnas.runtime._launch import check_counts
from snnas.runtime._verdict import check_report, verdict_message
from tests.plan.conftest import (
    ACCURACY,
    coded_network,
    parity_space,
    random_frozen,
    talking_policy,
)

IMAGES = 12


@pytest.fixture(scope="module")
def plan_folder(tmp_path_factory, plan_space, digits) -> Path:
    """A tiny exported plan of 4 devices that all talk (exported once, copied per test)."""
    runs = tmp_path_factory.mktemp("launch")
    model = random_frozen(plan_space, talking_policy(plan_space))
    folder = runs / "tiny" / "plan"
    export_plan(plan_space, model, digits, PROFILES["rpi3b+"], ACCURACY, folder)
    return folder


@pytest.fixture
def plan(plan_folder, tmp_path) -> Path:
    """A copy of the plan that a test may edit."""
    copy = tmp_path / "plan"
    shutil.copytree(plan_folder, copy)
    return copy


def _rehash(folder: Path, name: str) -> None:
    """Record ``name``'s new checksum in plan.json (a tamperer who covers their tracks)."""
    digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    data = json.loads((folder / "plan.json").read_text())
    for entry in [data["reference"]] + [e["weights"] for e in data["devices"] if e["weights"]]:
        if entry["file"] == name:
            entry["sha256"] = digest
    (folder / "plan.json").write_text(json.dumps(data))


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not run)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_gone(pids: list[int], seconds: float = 15.0) -> list[int]:
    """The pids still running after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _running(p)]


def _start(plan: Path, runs: Path, name: str, *extra: str) -> subprocess.Popen[str]:
    """``snnas run PLAN --local`` in a process of its own, slow enough to be caught running
    (device 0 sleeps 50 ms before each send)."""
    command = [sys.executable, "-m", "snnas", "run", str(plan), "--local", "--runs-dir",
               str(runs), "--name", name, "--timeout", "5", "--slow-device", "0",
               "--delay-ms", "50", *extra]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(out: Path, joined: bool, proc: subprocess.Popen[str]) -> list[int]:
    """The device pids once ``pids.json`` is written (and, with ``joined``, every device
    has joined the others)."""
    for _ in range(1800):
        assert proc.poll() is None, proc.communicate()
        if (out / "pids.json").is_file():
            logs = [out / "logs" / f"device{r}.log" for r in range(4)]
            if not joined or all(p.is_file() and "joined" in p.read_text() for p in logs):
                return [int(p) for p in json.loads((out / "pids.json").read_text()).values()]
        time.sleep(0.1)
    raise AssertionError("the devices did not start")


# ------------------------------------------------------------------ 1. the first failure
def test_a_device_that_fails_at_start_is_the_error_reported(plan, tmp_path):
    """Device 2's weights do not fit its blocks (checksum recomputed): the run ends with
    device 2's error, not with device 0 blamed for not joining after --join-timeout."""
    weights = plan / "device2.safetensors"
    save_file({"x": torch.zeros(3)}, str(weights))
    _rehash(plan, "device2.safetensors")
    with pytest.raises(SnnasError) as info:
        launch_local(plan, tmp_path / "out", images=IMAGES, warmup=2, timeout_s=1.0,
                     join_s=600.0)  # fmt: skip
    message = str(info.value)
    assert "device2.safetensors" in message and "weights do not match" in message
    assert "could not join" not in message and "\n" not in message
    if (tmp_path / "out" / "pids.json").is_file():
        pids = json.loads((tmp_path / "out" / "pids.json").read_text())
        assert message.endswith("all 4 device processes stopped")
        assert _wait_gone([int(p) for p in pids.values()], 0.0) == []


def test_a_parity_device_that_fails_at_start_is_not_taken_for_a_lost_one(tmp_path, digits):
    """A plan with a parity device survives one lost data device, but a data device that
    exits with its own error before joining is a failure, reported at once."""
    coded = coded_network(parity_space(1))
    plan = tmp_path / "coded" / "plan"
    export_plan(coded.space, coded.base, digits, PROFILES["rpi3b+"], ACCURACY, plan,
                coded=coded)  # fmt: skip
    save_file({"x": torch.zeros(3)}, str(plan / "device1.safetensors"))
    _rehash(plan, "device1.safetensors")
    with pytest.raises(SnnasError) as info:
        launch_local(plan, tmp_path / "out", images=IMAGES, warmup=2, timeout_s=1.0,
                     join_s=600.0)  # fmt: skip
    message = str(info.value)
    assert "device1.safetensors" in message and "could not join" not in message


# --------------------------------------------------------------------- 3. no clamping
def test_counts_are_checked_not_clamped(plan_folder):
    loaded = load_plan(plan_folder)
    size = int(loaded.data["reference"]["splits"]["test"])
    assert check_counts(loaded, "test", None, 5) == size
    assert check_counts(loaded, "test", size, size - 1) == size
    with pytest.raises(SnnasError, match=rf"^--images: expected at most {size} \(the test split"):
        check_counts(loaded, "test", size + 1, 0)
    with pytest.raises(SnnasError, match=r"^--warmup: expected fewer than the 4 images"):
        check_counts(loaded, "test", 4, 4)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--images", "100000"], "--images: expected at most"),
        (["--images", "3"], "--warmup: expected fewer than the 3 images answered"),
        (["--images", "6", "--warmup", "6"], "--warmup: expected fewer than the 6 images"),
        (["--rank", "1", "--master", "127.0.0.1:1", "--images", "100000"], "--images"),
    ],
)
def test_counts_beyond_the_split_are_usage_errors(plan_folder, tmp_path, extra, words):
    args = ["run", str(plan_folder), *extra, "--runs-dir", str(tmp_path), "--name", "n"]
    if "--rank" not in extra:
        args.append("--local")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert words in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "n").exists()


# ---------------------------------------------------------- 2. the launcher owns its children
@pytest.mark.parametrize(
    ("sig", "joined"),
    [
        (signal.SIGINT, True),
        (signal.SIGTERM, True),
        (signal.SIGKILL, True),
        (signal.SIGINT, False),
    ],
)
def test_no_device_outlives_the_launcher(plan_folder, tmp_path, sig, joined):
    """Killed while streaming (or while its devices still start), the launcher leaves no
    device process; SIGINT and SIGTERM end it in one line with exit code 130."""
    proc = _start(plan_folder, tmp_path, "sig")
    pids = _wait_for(tmp_path / "sig", joined, proc)
    proc.send_signal(sig)
    _stdout, stderr = proc.communicate(timeout=60)
    assert _wait_gone(pids) == []
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        return
    assert proc.returncode == 130, stderr
    assert [line for line in stderr.splitlines() if line.strip()] == ["error: interrupted"]


def test_a_second_run_of_the_same_name_is_refused_while_one_runs(plan_folder, tmp_path):
    proc = _start(plan_folder, tmp_path, "same")
    try:
        pids = _wait_for(tmp_path / "same", False, proc)
        before = (tmp_path / "same" / "pids.json").read_text()
        with pytest.raises(CheckpointError, match=rf"another snnas run \(pid {proc.pid}\)"):
            launch_local(plan_folder, tmp_path / "same", images=IMAGES, warmup=2)
        assert (tmp_path / "same" / "pids.json").read_text() == before  # nothing touched
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert _wait_gone(pids) == []
    # Once it has ended, the name is free again (a rerun replaces the report).
    report = launch_local(plan_folder, tmp_path / "same", images=IMAGES, warmup=2)
    assert report["images"] == IMAGES and report["checks"]["passed"]


# ------------------------------------------------------------ 4. answers and bytes checked
def test_answers_that_differ_from_the_reference_exit_1(plan, tmp_path):
    """The plan's reference logits moved by 0.5 (checksum recomputed): the run itself is
    fine, but its answers differ from the reference beyond verify's tolerance."""
    name = "reference.safetensors"
    tensors = load_file(str(plan / name))
    tensors["test.logits"] = tensors["test.logits"] + 0.5
    save_file(tensors, str(plan / name))
    _rehash(plan, name)
    args = ["run", str(plan), "--local", "--images", str(IMAGES), "--warmup", "2",
            "--runs-dir", str(tmp_path), "--name", "moved"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(
        "error: the answers differ from the plan's reference beyond plan verify's tolerance "
        "(max abs logit difference 0.5"
    )
    assert "bytes" not in error[0]
    checks = json.loads((tmp_path / "moved" / "runtime.json").read_text())["checks"]
    assert checks["answers"]["passed"] is False and checks["bytes"]["passed"] is True
    assert checks["answers"]["max_abs_diff"] == pytest.approx(0.5, abs=1e-3)
    assert checks["passed"] is False


def test_a_passing_run_records_its_checks(plan_folder, tmp_path):
    report = launch_local(plan_folder, tmp_path / "ok", images=IMAGES, warmup=2)
    checks = json.loads((tmp_path / "ok" / "runtime.json").read_text())["checks"]
    assert checks == report["checks"]
    assert checks["passed"] and checks["answers"]["passed"] and checks["bytes"]["passed"]
    plan = json.loads((plan_folder / "plan.json").read_text())
    assert checks["bytes"]["measured"] == IMAGES * plan["totals"]["bytes_per_image"]
    assert checks["bytes"]["planned"] == checks["bytes"]["measured"]
    logits = load_file(str(plan_folder / "reference.safetensors"))["test.logits"][:IMAGES]
    assert checks["answers"]["tolerance"] == pytest.approx(1e-3 * (1 + float(logits.abs().max())))
    assert verdict_message(checks, "x") is None
    # The same run, had one link carried a byte more than planned: exit 1, naming the bytes.
    loaded = load_plan(plan_folder)
    wrong = check_report(loaded, {**report, "bytes_equal": False}, "test")
    assert wrong["passed"] is False and wrong["answers"]["passed"] is True
    measured = f"{checks['bytes']['measured']:,}"
    assert verdict_message(wrong, "r.json") == (
        f"the bytes on the wire differ from the plan's ({measured} measured, {measured} "
        "planned); see r.json"
    )
    # A lost device changes the bytes by design: not compared.
    lost = check_report(loaded, {**report, "bytes_equal": False, "failover": {"device": 1}}, "test")
    assert lost["bytes"]["passed"] is None and lost["passed"] is True


# ---------------------------------------------------------------------------- 5. pinning
def test_cores_are_planned_one_set_per_process():
    cores = sorted(os.sched_getaffinity(0))
    assert plan_cores(len(cores) + 1, 1) is None
    assert plan_cores(1, len(cores) + 1) is None
    assert plan_cores(len(cores), 1) == [{c} for c in cores]
    assert plan_cores(1, len(cores)) == [set(cores)]


def test_a_child_dies_with_its_parent_and_keeps_to_its_core(tmp_path):
    """The child set-up (``preexec_fn``): pinned to its core, and SIGKILLed when the process
    that started it dies, even by SIGKILL."""
    core = min(os.sched_getaffinity(0))
    script = (
        "import os, subprocess, sys, time\n"
        "from snnas.runtime._children import child_setup\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import os, time; "
        f"print(sorted(os.sched_getaffinity(0)), flush=True); time.sleep(600)'], "
        f"preexec_fn=child_setup(os.getpid(), {{{core}}}, None), "
        f"stdout=open({str(tmp_path / 'o')!r}, 'w'))\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    for _ in range(300):
        if (tmp_path / "o").read_text().strip():
            break
        time.sleep(0.05)
    assert (tmp_path / "o").read_text().strip() == f"[{core}]"
    parent.kill()
    parent.wait()
    assert _wait_gone([child]) == []


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_two_devices_on_two_cores_are_pinned(tmp_path, digits):
    """A plan of 2 devices where 2 cores are free: each device process is pinned to a core
    of its own (read from /proc while they stream), and the run answers as usual."""
    import random
    import threading

    from snnas.space import space_from_text
    from tests.plan.conftest import PLAN_TOML

    space = space_from_text(PLAN_TOML.replace("groups = 4", "groups = 2"))
    model = random_frozen(space, space.validate(space.sample(random.Random(1))))
    plan = tmp_path / "g2" / "plan"
    export_plan(space, model, digits, PROFILES["rpi3b+"], ACCURACY, plan)
    cores = sorted(os.sched_getaffinity(0))[:2]
    said: list[str] = []
    result: dict = {}

    def run() -> None:
        result["report"] = launch_local(plan, tmp_path / "out", images=40, warmup=2,
                                        slow_device=0, delay_ms=50.0, info=said.append)  # fmt: skip

    thread = threading.Thread(target=run)
    thread.start()
    seen: dict[int, str] = {}
    pids_file = tmp_path / "out" / "pids.json"
    while thread.is_alive() and len(seen) < 2:
        if pids_file.is_file():
            for pid in json.loads(pids_file.read_text()).values():
                with contextlib.suppress(OSError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    line = next(x for x in status.splitlines() if x.startswith("Cpus_allowed_list"))
                    seen[int(pid)] = line.split(":")[1].strip()
        time.sleep(0.05)
    thread.join()
    report = result["report"]
    pids = report["pids"]
    assert [seen[p] for p in pids] == [str(c) for c in cores[:1]] + [str(c) for c in cores[1:2]]
    assert report["placement"] == {
        "threads_per_device": 1,
        "pinned_cores": [[cores[0]], [cores[1]]],
    }
    assert said == [] and report["top1_agreement"] == 1.0


def test_not_enough_cores_is_said_in_one_line(plan_folder, tmp_path):
    cores = len(os.sched_getaffinity(0))
    said: list[str] = []
    report = launch_local(
        plan_folder, tmp_path / "t", images=IMAGES, warmup=2, threads=cores, info=said.append
    )
    written = json.loads((tmp_path / "t" / "runtime.json").read_text())
    assert written["placement"] == {"threads_per_device": cores, "pinned_cores": None}
    assert report["top1_agreement"] == 1.0
    assert said == [
        f"4 device processes x {cores} thread(s) share {cores} core(s): not pinned (one "
        "process per core needs as many cores)"
    ]


def test_threads_reach_the_device_process():
    args = WorkerArgs(Path("p"), 1, 4, "store", "127.0.0.1:1", threads=3)
    argv = args.to_argv()
    assert argv[argv.index("--threads") + 1] == "3"


def test_the_verdict_names_only_the_check_that_failed():
    from snnas.runtime._verdict import verdict_message

    def checks(diff, tolerance, disagreements):
        answers = {"passed": False, "max_abs_diff": diff, "tolerance": tolerance,
                   "disagreements_beyond_tolerance": disagreements}  # fmt: skip
        return {"passed": False, "answers": answers, "bytes": {"passed": True}}

    only_answers = verdict_message(checks(1e-4, 2e-3, 2), "r/runtime.json")
    assert only_answers is not None and "2 answer(s) differ" in only_answers
    assert ">" not in only_answers  # the logits are within the tolerance: not claimed
    both = verdict_message(checks(0.5, 2e-3, 0), "r/runtime.json")
    assert both is not None and "max abs logit difference 0.5 > 0.002" in both


def test_the_prediction_is_for_the_profile_given_never_the_plans(plan, tmp_path):
    """runtime.json: the export's prediction apart (plan_prediction), and the prediction of
    the machine the run used only from --profile (a link rate as its bandwidth)."""
    from snnas.cost import PROFILES, latency
    from snnas.space import space_from_text

    args = ["run", str(plan), "--local", "--images", str(IMAGES), "--warmup", "2",
            "--runs-dir", str(tmp_path), "--name", "p", "--json"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    bare = json.loads((tmp_path / "p" / "runtime.json").read_text())
    plan_json = json.loads((plan / "plan.json").read_text())
    assert bare["plan_prediction"] == plan_json["prediction"]
    assert bare["prediction"]["latency_ms"] is None and "--profile" in bare["prediction"]["why"]
    result = CliRunner().invoke(cli, [*args[:-3], "--name", "q", "--profile", "a57x4", "--json"])
    assert result.exit_code == 0, result.output
    given = json.loads((tmp_path / "q" / "runtime.json").read_text())["prediction"]
    space = space_from_text((plan / "space.toml").read_text())
    expected = 1e3 * latency(space, plan_json["policy"], PROFILES["a57x4"]).latency_s
    assert given["profile"] == "a57x4" and given["latency_ms"] == pytest.approx(expected)
    bad = CliRunner().invoke(cli, [*args[:-3], "--name", "r", "--profile", "nowhere"])
    assert bad.exit_code == 2 and "--profile" in bad.stderr
    assert not (tmp_path / "r").exists()  # refused before any process started
