import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from snnas import __version__
from snnas.cli import cli
from tests.conftest import POLICIES, SMALL_TOML, SPACES


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_space_show_json_paper_space():
    result = run("space", "show", SPACES / "sep_resnext56_8x16d_g4.toml", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["size"] == 2641807540224
    assert data["params"] == 4_539_444 and data["baseline_params"] == 4_394_676
    assert data["groups"] == 4 and data["alpha"] == 2
    assert len(data["decisions"]) == 9
    assert {d["num_choices"] for d in data["decisions"]} == {24}
    assert data["decisions"][0]["label"] == "t0.perm"
    assert len(data["hash"]) == 16


def test_space_show_table():
    result = run("space", "show", SPACES / "quickstart.toml")
    assert result.exit_code == 0
    assert "t5.dtype" in result.output and "20,618" in result.output


def test_space_list_json():
    result = run("space", "list", SPACES, "--json")
    names = {r["name"] for r in json.loads(result.output)}
    assert {"quickstart", "sep_resnext56_4x16d_g4", "sep_resnext110_8x16d_g4"} <= names


def test_cost_json_ratio():
    result = run(
        "cost",
        SPACES / "sep_resnext56_4x16d_g4.toml",
        "--policy",
        POLICIES / "table6_sparsity.json",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert round(data["ratio"], 4) == 0.2440
    assert data["policy_bytes"] == 4_030_464
    assert data["min_hiding_alpha"] == 2
    assert len(data["points"]) == 9
    # Only the payload into device 0 at the last point reaches the head there.
    assert data["live_ratio"] < data["ratio"]
    assert data["points"][-1]["live_senders"] == 1
    assert data["latency"]["speedup"] > 1


def test_bad_space_is_one_line_exit_1(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(SMALL_TOML.replace("groups = 4", "groups = 1"))
    result = run("space", "show", path)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "split.groups" in lines[0] and str(path) in lines[0]


def test_policy_from_wrong_space_is_refused():
    result = run("cost", SPACES / "quickstart.toml", "--policy", POLICIES / "table6_perm.json")
    assert result.exit_code == 1
    assert "space hash" in result.output


def test_usage_error_exit_2():
    assert run("cost", SPACES / "quickstart.toml").exit_code == 2
    assert run("nonsense").exit_code == 2


@pytest.mark.parametrize("debug", ["0", "1"])
def test_real_process_error_and_debug_traceback(tmp_path, debug):
    path = tmp_path / "bad.toml"
    path.write_text(SMALL_TOML.replace("alpha = 1", "alpha = 99"))
    env = dict(os.environ, SNNAS_DEBUG=debug)
    proc = subprocess.run(
        [sys.executable, "-m", "snnas", "space", "show", str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 1
    assert "split.alpha" in proc.stderr
    assert ("Traceback" in proc.stderr) == (debug == "1")
    assert "\x1b[" not in proc.stderr  # no colour when not a terminal
