import random

import pytest
import torch

from snnas.cost import communication, compute, liveness
from snnas.models import SepResNeXt
from snnas.space import space_from_text
from tests.conftest import SMALL_TOML

# depth 29: 3 blocks per stage; alpha 2: points after blocks 1, 3, 5, 7 (added after 2, 4, 5, 8)
ALPHA2_TOML = SMALL_TOML.replace("depth = 11", "depth = 29").replace("alpha = 1", "alpha = 2")


def _policy(space, perms, sparsity=100.0, dtype="float32"):
    policy = {}
    for p, perm in enumerate(perms):
        policy |= {f"t{p}.perm": perm, f"t{p}.sparsity": sparsity, f"t{p}.dtype": dtype}
    return space.validate(policy)


def test_a_ring_at_the_last_point_only_feeds_device_0():
    # Tiny space: 3 blocks (one per stage), alpha 1, every transfer added at once.
    space = space_from_text(SMALL_TOML)
    identity = (0, 1, 2, 3)
    live = liveness(space, _policy(space, [identity, identity, (1, 2, 3, 0)]))
    assert [(t.src, t.dst, t.live) for t in live.transfers] == [
        (0, 1, False),
        (1, 2, False),
        (2, 3, False),
        (3, 0, True),
    ]
    # Devices 1 and 2 never send anything that reaches the head: they are dead entirely.
    assert live.live_blocks == ((0, 1, 2), (), (), (0, 1, 2))
    assert live.stem_receivers == (3,)
    assert not live.active(1) and live.active(3)
    assert live.skipped_blocks(1) == (0, 1, 2)


def test_blocks_after_the_last_live_send_are_skipped():
    space = space_from_text(ALPHA2_TOML)
    identity = (0, 1, 2, 3)
    # Device 2 sends to device 0 at point 1 (after block 3) and never again.
    live = liveness(space, _policy(space, [identity, (2, 1, 0, 3), identity, identity]))
    assert live.live_blocks[2] == (0, 1, 2, 3)
    assert live.live_blocks[0] == tuple(range(9))
    # Device 0's payload to device 2 (added after block 4) is dead: device 2 stops at 3.
    assert [(t.src, t.dst, t.live) for t in live.transfers] == [(0, 2, False), (2, 0, True)]
    assert live.live_blocks[1] == live.live_blocks[3] == ()


def test_a_send_does_not_carry_what_arrives_after_it_in_the_same_block():
    space = space_from_text(SMALL_TOML)  # every transfer is added in the block that sends it
    identity = (0, 1, 2, 3)
    # At the last point device 1 sends to 0 and receives from 2 in the same block: what device
    # 2 sends arrives after device 1's payload left, so it cannot reach the head.
    live = liveness(space, _policy(space, [identity, identity, (2, 0, 1, 3)]))
    by_pair = {(t.src, t.dst): t.live for t in live.transfers}
    assert by_pair == {(0, 2): False, (1, 0): True, (2, 1): False}
    assert live.live_blocks[2] == ()


def test_cost_reports_raw_and_live_figures():
    space = space_from_text(SMALL_TOML)
    identity = (0, 1, 2, 3)
    policy = _policy(space, [identity, identity, (1, 2, 3, 0)])
    comm = communication(space, policy)
    point = comm.points[-1]
    assert point.senders == 4 and point.live_senders == 1
    assert point.live_bytes * 4 == point.bytes
    assert comm.live_ratio == pytest.approx(comm.ratio / 4)
    assert comm.live_stem_bytes * 3 == comm.stem_bytes  # only device 3 needs the stem
    report = compute(space, policy)
    assert report.skipped_blocks == ((), (0, 1, 2), (0, 1, 2), ())
    assert report.live_flops_per_device[1] == 0
    assert report.live_flops_per_device[3] == report.flops_per_device[3]


def _perturb(net, device, block):
    """Shift device ``device``'s output channels of block ``block`` (bn3's bias)."""
    bn = net.blocks[block].bn3
    width = bn.bias.numel() // net.groups
    with torch.no_grad():
        bn.bias[device * width : (device + 1) * width] += 1.0


@pytest.mark.parametrize("seed", range(6))
def test_liveness_agrees_with_the_network(seed):
    # A block is live exactly when changing its output changes the answer.
    space = space_from_text(ALPHA2_TOML)
    rng = random.Random(seed)
    policy = space.sample(rng)
    live = liveness(space, policy)
    torch.manual_seed(seed)
    net = SepResNeXt(space).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight)
    x = torch.randn(4, 1, 8, 8)
    reference = net(x, policy)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for device in range(space.groups):
        for block in range(space.arch.num_blocks):
            _perturb(net, device, block)
            changed = not torch.equal(net(x, policy), reference)
            net.load_state_dict(state)
            assert changed == (block in live.live_blocks[device]), (device, block)
