import dataclasses

import pytest

from snnas.cost import PROFILES, alpha_scan, compute, get_profile, latency, min_hiding_alpha
from snnas.errors import ConfigError
from snnas.space import load_space, space_from_text
from tests.conftest import POLICIES, SMALL_TOML, SPACES


@pytest.fixture(scope="module")
def paper():
    s = load_space(SPACES / "sep_resnext56_4x16d_g4.toml")
    return s, s.load_policy(POLICIES / "table6_sparsity_fp16.json")


def test_flops_are_twice_the_macs_and_split_evenly(paper):
    s, policy = paper
    report = compute(s, policy)
    blk = s.arch.blocks[0]  # 16 -> 64 channels per device at 32x32, 16 bottleneck channels
    macs = 16 * 16 * 1024 + 9 * 16 * 16 * 1024 + 16 * 64 * 1024 + 16 * 64 * 1024
    assert blk.projection and report.block_flops[0] == 2 * macs
    assert report.total_flops == sum(report.flops_per_device)
    assert report.flops_per_device[0] == sum(report.block_flops) + report.stem_flops + (
        report.head_flops
    )


def test_free_links_cost_nothing(paper):
    s, policy = paper
    fast = dataclasses.replace(PROFILES["rpi3b+"], bandwidth_bps=1e30, link_latency_s=0.0)
    report = latency(s, policy, fast)
    assert report.exposed_transfer_s == pytest.approx(0.0, abs=1e-12)
    assert report.latency_s == pytest.approx(report.compute_only_s)


def test_slow_links_expose_transfers_and_alpha_helps(paper):
    s, policy = paper
    slow = dataclasses.replace(PROFILES["rpi3b+"], bandwidth_bps=5e6)
    report = latency(s, policy, slow)
    assert report.exposed_transfer_s > 0
    scan = alpha_scan(s, slow)
    # alpha = 1, 2, 3 divide the 6 blocks of a stage: each transfer overlaps alpha blocks.
    ratios = [r["worst_compute_to_transfer"] for r in scan[:3]]
    assert ratios[1] == pytest.approx(2 * ratios[0]) and ratios[2] == pytest.approx(3 * ratios[0])
    assert not scan[0]["hidden"]
    # alpha = 6: every transfer is sent at a stage's end and added at once; none is hidden.
    assert scan[5]["worst_compute_to_transfer"] is None and not scan[5]["hidden"]
    assert min_hiding_alpha(scan) == next(r["alpha"] for r in scan if r["hidden"])


def test_raspberry_pi_hides_transfers_at_alpha_one(paper):
    # The paper's Fig. 5 claim: the Pi 3B+ (1.7e8 FLOP/s, 300 Mbps) is sufficient.
    s, _ = paper
    assert min_hiding_alpha(alpha_scan(s, PROFILES["rpi3b+"])) == 1


def test_speedup_is_bounded_by_devices():
    s = space_from_text(SMALL_TOML)
    report = latency(s, s.policy_from_index(0), PROFILES["a57x4"])
    assert 1.0 < report.speedup <= s.groups


def test_profile_file(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text("flops = 1e9\nbandwidth_bps = 1e8\nlink_latency_s = 0.001\n")
    assert get_profile(str(path)).flops == 1e9
    path.write_text("flops = -1\nbandwidth_bps = 1e8\n")
    with pytest.raises(ConfigError, match="flops"):
        get_profile(str(path))
    with pytest.raises(ConfigError, match="--device"):
        get_profile("nonexistent-board")
