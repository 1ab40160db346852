"""Parity devices: normal operation unchanged, exact shadows at start, stand-ins, export."""

import random

import pytest
import torch

from snnas.cost import parity_cost
from snnas.models import SepResNeXt
from snnas.models.parity import (
    NEVER,
    CodedNetwork,
    ParityDevice,
    ParityStreams,
    fail_at_tensor,
    parity_block_geometry,
    slice_block,
)
from snnas.models.resnext import Bottleneck
from snnas.space import space_from_text
from tests.conftest import SMALL_TOML

PARITY = """
[parity]
r = {r}
bottleneck_scale = {scale}

[decisions.encode]
values = [0, 50, 100]

[decisions.encoder]
choices = ["sum", "concat", "mirror"]
"""


def _space(r=1, scale=1):
    return space_from_text(SMALL_TOML + PARITY.format(r=r, scale=scale))


def _net(space, seed=0, noisy_encoders=False):
    torch.manual_seed(seed)
    base = SepResNeXt(space).eval()
    streams = ParityStreams(space)
    streams.init_from(base)
    if noisy_encoders:
        for w in streams.sum.values():
            torch.nn.init.normal_(w)
        for conv in streams.concat.values():
            torch.nn.init.normal_(conv.weight, std=0.1)
        for p in streams.impute(0), streams.impute(1), streams.impute(2):
            p.normal_()
    return CodedNetwork(base, streams).eval()


def _protective(space, rng):
    policy = space.sample(rng)
    return {k: (100.0 if k.endswith(".encode") else v) for k, v in policy.items()}


@pytest.mark.parametrize("r", [1, 2])
def test_normal_operation_is_the_base_network(r):
    space = _space(r)
    net = _net(space, noisy_encoders=True)
    x = torch.randn(4, 1, 8, 8)
    for policy in [space.sample(random.Random(i)) for i in range(4)]:
        out = net(x, policy)
        assert torch.equal(out.logits, net.base(x, policy))
        all_up = torch.full((4, space.groups), NEVER)
        assert torch.equal(net(x, policy, all_up).logits, out.logits)


@pytest.mark.parametrize(("r", "scale"), [(1, 1), (2, 1), (1, 2)])
def test_parity_devices_start_as_exact_shadows(r, scale):
    # With every point protected at 100%, parity device k rebuilds what data device k
    # receives from the encodings and computes what it computes.
    space = _space(r, scale)
    net = _net(space)
    x = torch.randn(3, 1, 8, 8)
    for i in range(4):
        out = net(x, _protective(space, random.Random(i)))
        for q, stream in out.streams.items():
            torch.testing.assert_close(out.shadows[q], stream[:, :r], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.parity_logits, out.device_logits, atol=1e-5, rtol=1e-5)


def test_mirror_shadows_exactly_with_the_senders_encodings_only():
    space = _space(1)
    net = _net(space, noisy_encoders=True)  # mirror ignores the learned encoders
    x = torch.randn(3, 1, 8, 8)
    policy = {**_protective(space, random.Random(7)), "encoder": "mirror"}
    out = net(x, policy)
    torch.testing.assert_close(out.parity_logits, out.device_logits, atol=1e-5, rtol=1e-5)


def test_an_unprotected_point_breaks_the_shadow():
    space = _space(1)
    net = _net(space)
    x = torch.randn(3, 1, 8, 8)
    policy = _protective(space, random.Random(0))
    policy["t0.perm"] = (1, 2, 3, 0)  # device 0 receives at point 0
    policy["t0.encode"] = 0.0
    out = net(x, policy)
    assert not torch.allclose(out.parity_logits, out.device_logits)


def test_unavailable_devices_are_stood_in_for():
    space = _space(2)
    net = _net(space, noisy_encoders=True)
    x = torch.randn(2, 1, 8, 8)
    policy = _protective(space, random.Random(3))
    policy["t1.perm"] = (1, 2, 3, 0)  # everyone sends at point 1
    policy["t1.sparsity"] = 100.0
    clean = net(x, policy)
    # Device 3 (no parity device of its own) from point 1: its receivers get the means.
    fail = torch.tensor([[NEVER, NEVER, NEVER, 1]] * 2)
    out = net(x, policy, fail)
    torch.testing.assert_close(out.streams[0], clean.streams[0])  # before the failure
    assert not torch.allclose(out.streams[2], clean.streams[2])
    net.standin = "zeros"
    zeros = net(x, policy, fail)
    assert not torch.allclose(zeros.streams[2], out.streams[2])
    # Device 1 (shadowed by parity device 1) from point 0: the shadow's stream replaces it;
    # replacing the impute constants changes nothing then.
    net.standin = "parity"
    fail = torch.tensor([[NEVER, 0, NEVER, NEVER]] * 2)
    first = net(x, policy, fail)
    net.parity.impute(1).add_(5.0)
    second = net(x, policy, fail)
    torch.testing.assert_close(first.logits, second.logits)


def test_who_answers():
    space = _space(1)
    net = _net(space, noisy_encoders=True)
    policy = space.sample(random.Random(0))
    x = torch.randn(2, 1, 8, 8)
    fail = fail_at_tensor([(0, 1), (2, 1)], space.groups, 2)
    out = net(x.repeat(2, 1, 1, 1), policy, fail)
    assert torch.equal(out.logits[:2], out.parity_logits[:2])  # device 0 lost: parity answers
    assert torch.equal(out.logits[2:], out.device_logits[2:])  # answers[2] is False
    net.parity.answers[2] = True
    out = net(x.repeat(2, 1, 1, 1), policy, fail)
    assert torch.equal(out.logits[2:], out.parity_logits[2:])


def test_slice_block_is_one_device_of_the_batched_block():
    space = _space(1)
    torch.manual_seed(0)
    base = SepResNeXt(space).eval()
    block = base.blocks[1]
    geo = parity_block_geometry(space.arch.blocks[1], groups=4, scale=1, r=1)
    single = Bottleneck(geo, space.network.cardinality // 4, 1).eval()
    x = torch.randn(2, 4 * space.arch.blocks[1].in_width, 4, 4)
    w_in, w_out = space.arch.blocks[1].in_width, space.arch.blocks[1].out_width
    for d in range(4):
        single.load_state_dict(slice_block(block, d, 4))
        torch.testing.assert_close(
            single(x[:, d * w_in : (d + 1) * w_in]), block(x)[:, d * w_out : (d + 1) * w_out]
        )


@pytest.mark.parametrize("r", [1, 2])
def test_one_parity_device_from_its_own_weights_equals_the_batched_model(r):
    space = _space(r)
    net = _net(space, noisy_encoders=True)
    x = torch.randn(3, 1, 8, 8)
    for i in range(3):
        policy = space.sample(random.Random(10 + i))
        plans = net.base.transfer_plans(policy)
        positions = [(j, p) for j in range(space.groups) for p in range(space.num_points)]
        out = net(x.repeat(len(positions), 1, 1, 1), policy, fail_at_tensor(positions, 4, 3))
        devices = [ParityDevice(net.parity, k, policy) for k in range(r)]
        for n, (j, p) in enumerate(positions):
            rows = slice(3 * n, 3 * (n + 1))
            encodings = {}
            for q, stream in out.streams.items():
                sent = stream[rows].clone()
                if q >= p:  # what the parity devices get in j's place (P2)
                    sent[:, j] = (
                        out.shadows[q][rows, j] if j < r else net.parity.impute(q)[j].view(-1, 1, 1)
                    )
                encodings[q] = sent
            for k, device in enumerate(devices):
                answer, states = device(x, encodings, plans)
                for q, state in states.items():
                    torch.testing.assert_close(state, out.shadows[q][rows, k], atol=1e-5, rtol=1e-4)
                if k == 0:
                    torch.testing.assert_close(
                        answer, out.parity_logits[rows], atol=1e-5, rtol=1e-4
                    )
                else:
                    assert answer is None


def test_parameter_and_flop_counts_match_the_cost_model():
    for scale in (1, 2):
        space = _space(1, scale)
        streams = ParityStreams(space)
        blocks = sum(p.numel() for p in streams.blocks.parameters())
        policy = {**space.sample(random.Random(0)), **{f"t{q}.encode": 0.0 for q in range(3)}}
        cost = parity_cost(space, policy)
        arch = space.arch
        imputes = sum(g.channels for g in arch.points) * space.groups
        assert (
            cost.params_per_parity[0] == blocks + arch.stem_params() + arch.head_params() + imputes
        )
        if scale == 1:  # one data device's blocks, stem and head: device 0's parameters
            assert blocks + arch.stem_params() + arch.head_params() == arch.params_per_device()[0]
