"""Hostile inputs to the search's [constraints] table (issue 16), through the real CLI: the
exit code and the words of the one-line message each must give (see test_hostile.py)."""

from __future__ import annotations

import pytest

from tests.conftest import SMALL_TOML
from tests.fuzz._cli import invoke

STOP = ["--dataset", "cifar10", "--data-dir", "no-such-folder"]

CASES = [
    # (id, --set items, exit code, words)
    ("ratio-nan", ["constraints.comm_ratio=nan"], 2, "finite"),
    ("ratio-negative", ["constraints.comm_ratio=-0.1"], 2, "[0, 100]"),
    ("ratio-string", ["constraints.comm_ratio=low"], 2, "constraints.comm_ratio"),
    ("ratio-bool", ["constraints.comm_ratio=true"], 2, "constraints.comm_ratio"),
    ("latency-zero", ["constraints.latency_ms=0", "constraints.profile=rpi3b+"], 2, "(0,"),
    ("latency-inf", ["constraints.latency_ms=inf", "constraints.profile=rpi3b+"], 2, "finite"),
    ("latency-no-profile", ["constraints.latency_ms=5"], 2, "constraints.profile"),
    ("profile-unknown", ["constraints.profile=tpu"], 2, "constraints.profile"),
    ("profile-missing-file", ["constraints.profile=no.toml"], 2, "constraints.profile"),
    ("profile-number", ["constraints.profile=3"], 2, "constraints.profile"),
    ("unknown-key", ["constraints.energy=1"], 2, "constraints"),
    ("multivariate-string", ["strategy.optuna.multivariate=yes"], 2, "a boolean"),
    ("ratio-fine-stops-at-data", ["constraints.comm_ratio=0.2"], 1, "cifar10"),
]


@pytest.mark.parametrize(("sets", "code", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_hostile_constraints(tmp_path, sets, code, words):
    space = tmp_path / "space.toml"
    space.write_text(SMALL_TOML)
    args = ["search", str(space), "--runs-dir", str(tmp_path / "runs"), *STOP]
    for item in sets:
        args += ["--set", item]
    outcome = invoke(tmp_path, args)
    assert outcome.code == code, (args, outcome)
    assert words in outcome.error, (words, outcome.error)


def test_a_constraints_file_error_names_the_file_and_line(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(SMALL_TOML)
    config = tmp_path / "c.toml"
    config.write_text("[constraints]\n\ncomm_ratio = nan\n")
    args = ["search", str(space), "--config", str(config), "--runs-dir", str(tmp_path / "runs")]
    outcome = invoke(tmp_path, args + STOP)
    assert outcome.code == 1 and "c.toml:3: constraints.comm_ratio" in outcome.error
