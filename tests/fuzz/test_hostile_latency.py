"""Hostile ``--profile`` values and latency-cost settings of ``snnas search`` and ``snnas
compare``, through the real CLI in-process.

Every case is also checked by :func:`tests.fuzz._cli.invoke` for the general promises: exit
code in {0, 1, 2}, no traceback, a one-line error, nothing written outside the runs folder.
Cases that pass every check stop at the data (``STOP``: CIFAR for the tiny space), before
training.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given

from tests.conftest import SMALL_TOML
from tests.fuzz._cli import invoke
from tests.fuzz.test_fuzz_cli import FUZZ, TEXT, sandbox, write
from tests.fuzz.test_hostile import STOP, Sandbox
from tests.fuzz.test_hostile_profile import HEAD, OP

PENALIZED = ["--set", "reward.mode=penalized"]


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Sandbox], list[str]]
    code: int
    needles: tuple[str, ...] = ()


CASES: list[Case] = []


def cli(command: str, *args: str, stop: bool = True) -> Callable[[Sandbox], list[str]]:
    """``snnas COMMAND SPACE ARGS`` on the tiny space; a ``{file:NAME=TEXT}`` argument is
    written to the sandbox first."""

    def build(sb: Sandbox) -> list[str]:
        out = []
        for arg in args:
            if arg.startswith("{file:"):
                name, _, text = arg[6:-1].partition("=")
                arg = sb.file(name, text)
            out.append(arg)
        tail = ["--runs-dir", str(sb.runs), *(STOP if stop else [])]
        return [command, sb.space(), *out, *tail]

    return build


def add(id: str, build: Callable[[Sandbox], list[str]], code: int, *needles: str) -> None:
    CASES.append(Case(id, build, code, needles))


for command in ("search", "compare"):
    c = command
    add(
        f"{c}-unknown-name",
        cli(c, "--profile", "rpi4", *PENALIZED),
        2,
        "--profile",
        "rpi3b+, a57x4",
    )
    add(f"{c}-empty-name", cli(c, "--profile", "", *PENALIZED), 2, "--profile")
    add(f"{c}-markup-name", cli(c, "--profile", "[/x]", *PENALIZED), 2, "[/x]")
    add(f"{c}-control-chars", cli(c, "--profile", "a\x1b[31mb", *PENALIZED), 2, "--profile")
    add(f"{c}-missing-file", cli(c, "--profile", "missing.toml", *PENALIZED), 1, "missing.toml")
    add(f"{c}-not-toml", cli(c, "--profile", "{file:p.toml=flops = }", *PENALIZED), 1, "p.toml")
    add(
        f"{c}-nan-bandwidth",
        cli(c, "--profile", "{file:p.toml=flops = 1e9\nbandwidth_bps = nan\n}", *PENALIZED),
        1,
        "bandwidth_bps",
    )
    add(
        f"{c}-beside-set-cost",
        cli(c, "--profile", "rpi3b+", *PENALIZED, "--set", "reward.cost=comm"),
        2,
        "--profile",
        "reward.cost",
    )
    add(
        f"{c}-beside-set-profile",
        cli(c, "--profile", "rpi3b+", *PENALIZED, "--set", "reward.profile=a57x4"),
        2,
        "--profile",
        "reward.profile",
    )
    add(f"{c}-set-cost-unknown", cli(c, "--set", "reward.cost=energy"), 2, "reward.cost", "energy")
    add(f"{c}-set-cost-number", cli(c, "--set", "reward.cost=1"), 2, "reward.cost")
    add(
        f"{c}-set-latency-no-profile",
        cli(c, "--set", "reward.cost=latency", *PENALIZED),
        2,
        "reward.profile",
    )
    add(
        f"{c}-set-profile-unknown",
        cli(c, "--set", "reward.cost=latency", "--set", "reward.profile=rpi4", *PENALIZED),
        2,
        "reward.profile",
        "rpi3b+, a57x4",
    )
    add(
        f"{c}-set-profile-without-cost",
        cli(c, "--set", "reward.profile=rpi3b+", *PENALIZED),
        2,
        "reward.profile",
    )
    add(
        f"{c}-config-profile-unknown",
        cli(c, "--config", '{file:c.toml=[reward]\ncost = "latency"\nprofile = "rpi4"\n}'),
        1,
        "c.toml",
        "reward.profile",
        "rpi3b+, a57x4",
    )
    add(f"{c}-good", cli(c, "--profile", "rpi3b+", *PENALIZED), 1, "cifar10")
    add(f"{c}-good-file", cli(c, "--profile", "{file:b.toml=" + HEAD + OP + "}", *PENALIZED), 1)
    # A file name outside the Basic Multilingual Plane: --profile's value goes into a --set
    # item as a TOML string, where JSON's surrogate-pair escapes are not valid.
    add(
        f"{c}-good-file-astral-name",
        cli(c, "--profile", "{file:b\U0001f600.toml=" + HEAD + OP + "}", *PENALIZED),
        1,
        "cifar10",
    )

# A reward mode where a latency cost makes no sense.
add("search-accuracy-mode", cli("search", "--profile", "rpi3b+"), 2, "--profile", "reward.mode")
add(
    "search-accuracy-mode-set",
    cli("search", "--profile", "rpi3b+", "--set", "reward.mode=accuracy"),
    2,
    "--profile",
    "accuracy",
)
add(
    "compare-accuracy-only",
    cli("compare", "--profile", "rpi3b+", "--rewards", "accuracy"),
    2,
    "--rewards",
    "accuracy",
)
add(
    "compare-full-accuracy-first",
    cli("compare", "--profile", "rpi3b+", "--mode", "full", "--rewards", "accuracy,penalized"),
    2,
    "--rewards",
    "first in full mode",
)
add("compare-fixed-constraints", cli("compare", "--set", "constraints.comm_ratio=0.2"), 1,
    "constraints", "--mode full")  # fmt: skip
add("compare-full-constraints", cli("compare", "--mode", "full", "--set",
    "constraints.comm_ratio=0.2"), 1, "cifar10")  # fmt: skip


@pytest.mark.parametrize("item", CASES, ids=[c.id for c in CASES])
def test_hostile_latency_options(tmp_path, item: Case):
    sandbox = Sandbox(tmp_path)
    args = item.build(sandbox)
    outcome = invoke(tmp_path, args, runs=sandbox.runs)
    assert outcome.code == item.code, (args, outcome)
    for needle in item.needles:
        assert needle in outcome.error, (needle, outcome.error)
    if item.code == 2:  # refused before anything: no run folder
        assert not sandbox.runs.exists() or not any(sandbox.runs.iterdir())


def test_a_latency_search_runs_through_the_cli(tmp_path):
    sandbox = Sandbox(tmp_path)
    args = [
        "search", sandbox.space(), "--strategy", "random", "--profile", "a57x4", *PENALIZED,
        "--set", "search.iterations=1", "--set", "search.train_steps=1",
        "--set", "search.strategy_steps=0", "--set", "search.samples=4",
        "--set", "search.rescore=2", "--set", "search.topk=1",
        "--runs-dir", str(sandbox.runs), "--name", "lat", "--json",
    ]  # fmt: skip
    outcome = invoke(tmp_path, args, runs=sandbox.runs)
    assert outcome.code == 0, outcome
    summary = json.loads(outcome.stdout)
    assert summary["cost"]["profile"] == "a57x4"
    assert (
        summary["best_latency_ratio"]
        == summary["best_latency_ms"] / summary["cost"]["reference_ms"]
    )
    # Resuming the same run under the communication cost is refused in one line.
    resumed = [a for a in args if a not in ("--profile", "a57x4")] + ["--resume"]
    outcome = invoke(tmp_path, resumed, runs=sandbox.runs)
    assert outcome.code == 1 and "cannot resume a different search" in outcome.error
    assert "cost" in outcome.error


@FUZZ
@given(name=TEXT)
def test_random_profile_names(name):
    """Any --profile text: one line naming --profile (exit 2), a file problem (exit 1), or
    the options accepted (exit 1 at the data)."""
    with sandbox() as root:
        space = write(root, "space.toml", SMALL_TOML)
        args = ["search", space, "--profile", name, *PENALIZED, "--runs-dir", "runs", *STOP]
        outcome = invoke(root, args)
        assert outcome.code in (1, 2)
        if outcome.code == 2:
            assert "--profile" in outcome.error or "--set" in outcome.error
