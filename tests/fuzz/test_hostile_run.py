"""A hostile pass over the launcher's options (issue 14): ``--images`` and ``--warmup``
against the plan's split, ``--threads-per-device`` and ``--link-rate`` (and ``python -m
snnas.runtime --threads``). Every case is refused before any process starts: one line, exit
code 2, naming the option, nothing written outside the runs folder (:func:`invoke`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from snnas.cost import PROFILES
from snnas.plan import export_plan
from tests.fuzz._cli import invoke
from tests.plan.conftest import ACCURACY, plan_space, random_frozen, talking_policy

__all__ = ["plan_space"]  # the plan tests' space fixture

MARKUP = "[/bold] [red]x[/red] :smile:"
HUGE = "9" * 5000
LOCAL = ["--local", "--images", "4", "--warmup", "1", "--timeout", "2"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, plan_space, digits) -> Path:
    folder = tmp_path_factory.mktemp("hostile-run") / "plan"
    model = random_frozen(plan_space, talking_policy(plan_space))
    export_plan(plan_space, model, digits, PROFILES["rpi3b+"], ACCURACY, folder)
    return folder


@pytest.fixture
def sandbox(tmp_path, exported) -> Path:
    """A folder holding ``runs/p/plan`` (a copy of the plan)."""
    shutil.copytree(exported, tmp_path / "runs" / "p" / "plan")
    return tmp_path


PLAN = "runs/p/plan"
SIZE = 360  # the digits test split

CASES: list[tuple[str, list[str], str]] = [
    ("images-above-split", [*LOCAL, "--images", str(SIZE + 1)], f"at most {SIZE}"),
    ("images-far-above", [*LOCAL, "--images", "10000000"], "--images"),
    ("warmup-equal", [*LOCAL, "--images", "4", "--warmup", "4"], "--warmup"),
    ("warmup-above", [*LOCAL, "--warmup", "9"], "fewer than the 4 images"),
    ("warmup-default", ["--local", "--images", "5"], "--warmup: expected fewer than the 5"),
    ("warmup-whole-split", ["--local", "--warmup", str(SIZE)], f"fewer than the {SIZE}"),
    ("rank-images-above", ["--rank", "1", "--master", "127.0.0.1:1", "--images", "361"], "361"),
    (
        "link-rate-rank",
        ["--rank", "1", "--master", "127.0.0.1:1", "--link-rate", "20mbit"],
        "--link-rate",
    ),
]
for i, bad in enumerate(["", " ", "20", "mbit", "20mb", "20 mbit", "-20mbit", "nan", "nanmbit",
                         "infmbit", "1e400mbit", "1e3mbit", "0mbit", "63kbit", "100.1gbit",
                         "20mbit/s", "20mbit\x00", "0x14mbit", "２０mbit", MARKUP, HUGE,
                         "20mbit;rm -rf /"]):  # fmt: skip
    CASES.append((f"link-rate-{i}", [*LOCAL, "--link-rate", bad], "--link-rate"))
for i, bad in enumerate(["0", "-1", "1.5", "nan", "inf", "abc", "1e400", "1025", HUGE]):
    CASES.append((f"threads-{i}", [*LOCAL, "--threads-per-device", bad], "--threads-per-device"))


@pytest.mark.parametrize(("args", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_run_options(sandbox, args, needle):
    outcome = invoke(sandbox, ["run", PLAN, *args, "--name", "r"])
    assert outcome.code == 2, outcome
    assert needle in outcome.error, outcome.error
    assert not (sandbox / "runs" / "r").exists()


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "x", "2000"])
def test_hostile_runtime_threads(sandbox, capsys, bad):
    from snnas.runtime._worker import main

    here = os.getcwd()
    os.chdir(sandbox)
    try:
        with pytest.raises(SystemExit) as exit:
            main([PLAN, "--rank", "1", "--world", "4", "--threads", bad])
    finally:
        os.chdir(here)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit.value.code == 2 and len(err) == 1 and "--threads" in err[0], err


# --profile: a latency profile for runtime.json's prediction. A bad name is a usage error
# (exit 2), a bad file a failure naming it (exit 1); either is refused before any process
# starts, and nothing is written.
PROFILE_CASES = [
    ("empty", "", 2, "--profile"),
    ("unknown-name", "pi5", 2, "--profile"),
    ("not-toml", "notes.txt", 2, "--profile"),
    ("markup", MARKUP, 2, "--profile"),
    ("huge", HUGE, 2, "--profile"),
    ("missing-file", "nowhere.toml", 1, "nowhere.toml"),
    ("broken-toml", "broken.toml", 1, "broken.toml"),
    ("nan-flops", "nan.toml", 1, "flops"),
]


@pytest.mark.parametrize(
    ("value", "code", "needle"), [c[1:] for c in PROFILE_CASES], ids=[c[0] for c in PROFILE_CASES]
)
def test_hostile_run_profile(sandbox, value, code, needle):
    (sandbox / "broken.toml").write_text("flops = [\n")
    (sandbox / "nan.toml").write_text("flops = nan\nbandwidth_bps = 1e9\n")
    outcome = invoke(sandbox, ["run", PLAN, *LOCAL, "--profile", value, "--name", "r"])
    assert outcome.code == code, outcome
    assert needle in outcome.error, outcome.error
    assert not (sandbox / "runs" / "r").exists()
