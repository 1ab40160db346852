"""``snnas profile`` for real: measure this machine on the tiny space and read the file back."""

import json
import os

from click.testing import CliRunner

from snnas.cli import cli
from snnas.cost import get_profile
from snnas.runtime._profiler import op_shapes
from snnas.space import space_from_text
from tests.conftest import SMALL_TOML, TINY_SPACE


def test_profile_measures_and_writes_a_profile_cost_reads(tmp_path):
    out = tmp_path / "runs" / "here.toml"
    args = ["profile", "--space", str(TINY_SPACE), "--out", str(out), "--repeats", "3"]
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    profile = get_profile(str(out))
    assert report["profile"] == profile.to_json()  # the file holds what was printed
    keys = [s.key for s in op_shapes([space_from_text(SMALL_TOML)])]
    assert list(report["profile"]["table"]) == keys
    assert all(s.count == 3 for _, s in profile.stats)
    assert profile.name == "here" and report["spaces"] == ["tiny"]
    assert profile.cores == len(os.sched_getaffinity(0))
    assert sorted(map(int, report["link_one_way_s"])) == [256, 4096, 1 << 16, 1 << 18, 1 << 20]
    # The fixed costs of a transfer add up to the smallest message's one-way time, less its
    # bytes at the fitted bandwidth.
    fixed = profile.send_s + profile.link_latency_s + profile.recv_s
    small = report["link_one_way_s"]["256"] - 256 * 8 / profile.bandwidth_bps
    assert abs(fixed - max(small, 0.0)) < 1e-9
    assert profile.flops > 0 and profile.op_overhead_s >= 0
    cost = CliRunner().invoke(
        cli,
        ["cost", str(TINY_SPACE), "--policy", str(_policy(tmp_path)), "--profile", str(out)],
    )
    assert cost.exit_code == 0, cost.output
    assert "here: latency" in cost.stdout


def _policy(tmp_path):
    from tests.fuzz.test_hostile import GOOD_POLICY

    path = tmp_path / "policy.json"
    path.write_text(json.dumps(GOOD_POLICY))
    return path


def test_peer_measures_the_link_to_a_serving_profile(tmp_path):
    """``snnas profile --serve PORT`` in another process is the far end of ``--peer``."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "snnas", "profile", "--serve", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        out = tmp_path / "peer.toml"
        args = ["profile", "--space", str(TINY_SPACE), "--out", str(out), "--repeats", "2"]
        result = CliRunner().invoke(
            cli, [*args, "--peer", f"127.0.0.1:{port}", "--json"], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        said = server.communicate(timeout=60)[0].decode()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0 and said.strip().endswith("done"), said
    profile = get_profile(str(out))
    assert f"ping-pong to 127.0.0.1:{port}" in profile.source
    assert len(profile.table) == 5
