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
    # alpha = 1 is synchronous: nothing overlaps. alpha = 2 and 3 divide the 6 blocks of a
    # stage: each transfer overlaps alpha - 1 blocks.
    assert scan[0]["worst_compute_to_transfer"] is None and not scan[0]["hidden"]
    ratios = [r["worst_compute_to_transfer"] for r in scan[1:3]]
    assert ratios[1] == pytest.approx(2 * ratios[0])
    assert not scan[1]["hidden"]
    # alpha = 6: every transfer is sent at a stage's end and added at once; none is hidden.
    assert scan[5]["worst_compute_to_transfer"] is None and not scan[5]["hidden"]
    assert min_hiding_alpha(scan) == next(r["alpha"] for r in scan if r["hidden"])


def test_raspberry_pi_hides_transfers_at_alpha_two(paper):
    # The paper's Fig. 5 claim: the Pi 3B+ (1.7e8 FLOP/s, 300 Mbps) is sufficient at the
    # paper's alpha = 2 (one block of compute under every transfer that is not at a stage end).
    s, _ = paper
    assert min_hiding_alpha(alpha_scan(s, PROFILES["rpi3b+"])) == 2


def test_speedup_is_bounded_by_devices():
    s = space_from_text(SMALL_TOML)
    talk = {
        label: (1, 2, 3, 0)
        if label.endswith("perm")
        else 100.0
        if label.endswith("sparsity")
        else "float32"
        for label in s.labels
    }
    fast = dataclasses.replace(PROFILES["a57x4"], bandwidth_bps=1e15, link_latency_s=0.0)
    report = latency(s, talk, fast)
    assert 1.0 < report.speedup <= s.groups
    # With no communication only device 0 computes anything that reaches the head.
    quiet = latency(s, s.no_communication_policy(), fast)
    assert quiet.speedup == pytest.approx(1.0)


def test_a_send_waits_for_the_data_it_carries():
    # One stage of 8 blocks, alpha 1, overlap 1: a transfer sent after block b is added
    # after block b + 1, right before that block's own send. Swaps 0-1, 1-2, 2-3, 3-0 in turn
    # relay one payload around the ring: each send carries what arrived just before it. With
    # free compute and 1 ms per transfer: device 0's link first carries the stem's three
    # copies (3 ms), then the relay takes 8 hops (8 ms), although no link carries more than
    # 4 of them. Sending before the arrival is added would give less.
    text = (
        SMALL_TOML.replace("depth = 11", "depth = 26")
        .replace("stage_widths = [8, 16, 32]", "stage_widths = [8]")
        .replace("alpha = 1", "alpha = 1\noverlap = 1")
    )
    s = space_from_text(text)
    swaps = [(1, 0, 2, 3), (0, 2, 1, 3), (0, 1, 3, 2), (3, 1, 2, 0)]
    policy = {}
    for p in range(s.num_points):
        policy.update(
            {f"t{p}.perm": swaps[p % 4], f"t{p}.sparsity": 100.0, f"t{p}.dtype": "float32"}
        )
    link = dataclasses.replace(
        PROFILES["rpi3b+"], flops=1e30, bandwidth_bps=1e30, link_latency_s=1e-3
    )
    assert latency(s, policy, link).latency_s == pytest.approx(11e-3)


def test_profile_file(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text("flops = 1e9\nbandwidth_bps = 1e8\nlink_latency_s = 0.001\n")
    assert get_profile(str(path)).flops == 1e9
    path.write_text("flops = -1\nbandwidth_bps = 1e8\n")
    with pytest.raises(ConfigError, match="flops"):
        get_profile(str(path))
    with pytest.raises(ConfigError, match="--profile"):
        get_profile("nonexistent-board")


def _quickstart_parity(encode):
    s = load_space(SPACES / "quickstart_parity.toml")
    policy = {"encoder": "concat"}
    for label in s.labels:
        kind = label.rsplit(".", 1)[-1]
        value = {"perm": (1, 2, 3, 0), "sparsity": 100.0, "dtype": "float32", "encode": encode}
        if kind in value:
            policy[label] = value[kind]
    return s, s.validate(policy)


def test_parity_encodings_are_predicted():
    """The prediction runs the parity devices' programs: the encodings (229,376 bytes per
    image on the data devices' links) and the blocks computed only for them take time. The
    simulation before the engine gave 8.755 ms for both."""
    s, none = _quickstart_parity(0.0)
    _, every = _quickstart_parity(100.0)
    rpi = PROFILES["rpi3b+"]
    assert latency(s, none, rpi).latency_s == pytest.approx(8.755121568627452e-3, rel=1e-12)
    assert latency(s, every, rpi).latency_s == pytest.approx(11.313750588235298e-3, rel=1e-12)


def test_shared_cores_slow_compute_evenly():
    """G = 4 device processes on one core: every compute op takes 4 times as long; with
    free links the whole prediction scales by 4 (docs/cost-model.md)."""
    _, policy = _quickstart_parity(0.0)
    data = load_space(SPACES / "quickstart.toml")
    policy = {k: v for k, v in policy.items() if not k.endswith("encode") and k != "encoder"}
    free = dataclasses.replace(PROFILES["rpi3b+"], bandwidth_bps=1e30, link_latency_s=0.0)
    alone = latency(data, policy, free)
    shared = latency(data, policy, dataclasses.replace(free, cores=1))
    assert shared.latency_s == pytest.approx(4 * alone.latency_s, rel=1e-12)
    assert shared.single_device_s == pytest.approx(alone.single_device_s, rel=1e-12)
    assert latency(data, policy, dataclasses.replace(free, cores=4)).latency_s == (
        pytest.approx(alone.latency_s, rel=1e-12)
    )


def test_software_costs_of_transfers_are_paid_by_both_ends():
    """Free compute and links, 1 ms per send and 0.5 ms per receive: device 0 sends the stem
    to 3 devices (3 ms) and sends and receives once per point."""
    s = space_from_text(SMALL_TOML)
    ring = {
        label: (1, 2, 3, 0)
        if label.endswith("perm")
        else 100.0
        if label.endswith("sparsity")
        else "float32"
        for label in s.labels
    }
    cheap = dataclasses.replace(
        PROFILES["rpi3b+"], flops=1e30, bandwidth_bps=1e30, link_latency_s=0.0
    )
    assert latency(s, ring, cheap).latency_s == pytest.approx(0.0, abs=1e-12)
    costly = dataclasses.replace(cheap, send_s=1e-3, recv_s=0.5e-3)
    report = latency(s, ring, costly)
    assert report.compute_only_s == pytest.approx(0.0, abs=1e-12)
    assert report.latency_s > 3e-3 + s.num_points * 1.5e-3
