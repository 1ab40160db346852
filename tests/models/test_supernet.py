import random

import pytest
import torch

from snnas.cost import communication
from snnas.models import ResNeXt, SepResNeXt, make_plan
from snnas.models.supernet import aggregate, transfer, transmit
from snnas.space import PointPolicy, load_space, space_from_text
from tests.conftest import SMALL_TOML, SPACES

# depth 29: 3 blocks per stage; alpha 2: points after blocks 1, 3, 5, 7.
ALPHA2_TOML = SMALL_TOML.replace("depth = 11", "depth = 29").replace("alpha = 1", "alpha = 2")


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("file", "plain", "sep"),
    [
        ("sep_resnext56_8x16d_g4.toml", 4_394_676, 4_539_444),  # the paper's Table 1
        ("sep_resnext56_4x16d_g4.toml", 2_234_548, 2_379_316),
        ("quickstart.toml", 10_538, 20_618),
    ],
)
def test_torch_parameter_counts_match_the_geometry(file, plain, sep):
    space = load_space(SPACES / file)
    assert _count(ResNeXt(space.network)) == plain == space.arch.params(separable=False)
    assert _count(SepResNeXt(space)) == sep == space.arch.params(separable=True)


@pytest.mark.parametrize("training", [False, True])
def test_frozen_model_equals_supernet_exactly(training):
    space = space_from_text(ALPHA2_TOML)
    torch.manual_seed(0)
    supernet = SepResNeXt(space).train(training)
    x = torch.randn(6, 1, 8, 8)
    rng = random.Random(1)
    for _ in range(5):
        policy = space.sample(rng)
        frozen = supernet.freeze(policy)
        assert frozen.training == training
        assert torch.equal(supernet(x, policy), frozen(x))


def test_frozen_model_has_its_own_weights():
    space = space_from_text(SMALL_TOML)
    supernet = SepResNeXt(space).eval()
    policy = space.sample(random.Random(0))
    frozen = supernet.freeze(policy)
    with torch.no_grad():
        supernet.fc.weight.add_(1.0)
    x = torch.randn(2, 1, 8, 8)
    assert not torch.equal(supernet(x, policy), frozen(x))


def test_transmit_sends_the_first_channels_to_the_destination():
    space = space_from_text(SMALL_TOML)
    geo = space.arch.points[0]  # 8 channels per device at 8x8
    w = geo.channels
    decision = PointPolicy(perm=(1, 2, 0, 3), sparsity=50.0, dtype="float32")
    plan = make_plan(geo, decision, 4, "cpu")
    x = torch.randn(2, 4 * w, geo.size, geo.size)
    streams = x.view(2, 4, w, geo.size, geo.size)
    d = transmit(x, plan)
    n = 4  # floor(8 * 50%)
    assert d.shape == (2, 4, n, geo.size, geo.size)  # only the first n channels travel
    for src, dst in [(0, 1), (1, 2), (2, 0)]:
        assert torch.equal(d[:, dst], streams[:, src, :n])
    assert not d[:, 3].any()  # device 3 keeps its data, receives nothing
    assert plan.channels_sent == 3 * n
    out = aggregate(x, d, plan).view(2, 4, w, geo.size, geo.size)
    for src, dst in [(0, 1), (1, 2), (2, 0)]:
        assert torch.equal(out[:, dst, :n], streams[:, dst, :n] + streams[:, src, :n])
        assert torch.equal(out[:, dst, n:], streams[:, dst, n:])  # eq. (2) on N_send only
    assert torch.equal(out[:, 3], streams[:, 3])


def test_float16_rounding_is_applied_on_the_wire():
    space = space_from_text(SMALL_TOML)
    geo = space.arch.points[0]
    x = torch.full((1, 4 * geo.channels, geo.size, geo.size), 1.0 + 2.0**-12)
    fp32 = transmit(x, make_plan(geo, PointPolicy((1, 0, 3, 2), 100.0, "float32"), 4, "cpu"))
    fp16 = transmit(x, make_plan(geo, PointPolicy((1, 0, 3, 2), 100.0, "float16"), 4, "cpu"))
    assert torch.all(fp32 == 1.0 + 2.0**-12)
    assert torch.all(fp16 == 1.0)  # 1 + 2^-12 is below float16's resolution at 1
    # ...and the network's output sees the difference.
    torch.manual_seed(0)
    net = SepResNeXt(space).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    policy = {
        k: ([1, 0, 3, 2] if k.endswith("perm") else v)
        for k, v in space.sample(random.Random(0)).items()
    }
    half = {k: ("float16" if k.endswith("dtype") else v) for k, v in policy.items()}
    full = {k: ("float32" if k.endswith("dtype") else v) for k, v in policy.items()}
    xin = torch.randn(4, 1, 8, 8) * 3.3
    assert not torch.equal(net(xin, half), net(xin, full))


@pytest.mark.parametrize("toml", [SMALL_TOML, ALPHA2_TOML])
def test_traffic_equals_the_cost_model(toml):
    space = space_from_text(toml)
    net = SepResNeXt(space)
    rng = random.Random(3)
    for _ in range(20):
        policy = space.sample(rng)
        expected = [p.bytes for p in communication(space, policy).points]
        assert net.traffic_bytes(policy) == expected


def test_paper_space_traffic_equals_the_cost_model():
    space = load_space(SPACES / "sep_resnext56_4x16d_g4.toml")
    net = SepResNeXt(space)
    policy = space.load_policy(SPACES / "policies" / "table6_sparsity_fp16.json")
    assert sum(net.traffic_bytes(policy)) == communication(space, policy).policy_bytes == 2_344_960


def _device_slices(net, device):
    """Weights of the first block's conv1 that belong to ``device``."""
    conv = net.blocks[0].conv1
    per = conv.out_channels // 4
    return conv.weight[device * per : (device + 1) * per]


def test_without_communication_only_device_0_matters():
    space = space_from_text(SMALL_TOML)
    torch.manual_seed(0)
    net = SepResNeXt(space).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight)
    x = torch.randn(3, 1, 8, 8)
    no_comm = space.no_communication_policy()
    talk = {k: ([1, 0, 3, 2] if k.endswith("perm") else v) for k, v in no_comm.items()}
    before_quiet, before_talk = net(x, no_comm), net(x, talk)
    with torch.no_grad():
        _device_slices(net, 1).add_(0.5)
    assert torch.equal(net(x, no_comm), before_quiet)  # device 1 is cut off
    assert not torch.equal(net(x, talk), before_talk)  # device 1 sends to device 0


def _block_outputs(net, x, policy):
    outputs = {}
    hooks = [
        block.register_forward_hook(lambda m, i, o, b=b: outputs.__setitem__(b, o))
        for b, block in enumerate(net.blocks)
    ]
    net(x, policy)
    for h in hooks:
        h.remove()
    return outputs


@pytest.mark.parametrize(("alpha", "overlap", "sent", "added"), [(2, None, 3, 4), (2, 2, 3, 5)])
def test_staleness_adds_a_transfer_alpha_minus_one_blocks_later(alpha, overlap, sent, added):
    text = (
        ALPHA2_TOML
        if overlap is None
        else ALPHA2_TOML.replace("alpha = 2", f"alpha = {alpha}\noverlap = {overlap}")
    )
    space = space_from_text(text)
    point = space.arch.points[1]
    assert (point.block, point.aggregate_block) == (sent, added)
    torch.manual_seed(0)
    net = SepResNeXt(space).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight)
    x = torch.randn(2, 1, 8, 8)
    quiet = space.no_communication_policy()
    reference = _block_outputs(net, x, quiet)
    outputs = _block_outputs(net, x, dict(quiet, **{"t1.perm": (1, 0, 3, 2)}))
    # The blocks up to ``added`` run before the transfer sent after block 3 is added.
    for b in range(added + 1):
        assert torch.equal(outputs[b], reference[b]), b
    assert not torch.equal(outputs[added + 1], reference[added + 1])


def test_alpha_one_adds_before_the_next_block():
    space = space_from_text(ALPHA2_TOML.replace("alpha = 2", "alpha = 1"))
    assert space.overlap == 0
    torch.manual_seed(0)
    net = SepResNeXt(space).eval()
    x = torch.randn(2, 1, 8, 8)
    quiet = space.no_communication_policy()
    reference = _block_outputs(net, x, quiet)
    outputs = _block_outputs(net, x, dict(quiet, **{"t3.perm": (1, 0, 3, 2)}))
    for b in range(4):  # the transfer is sent after block 3 and added at once
        assert torch.equal(outputs[b], reference[b]), b
    assert not torch.equal(outputs[4], reference[4])


def test_parity_devices_leave_the_data_network_unchanged():
    # Parity devices only receive in normal operation: the data network, its parameters and
    # its outputs are those of the same space without parity (snnas.models.parity adds them).
    plain = space_from_text(SMALL_TOML)
    coded = space_from_text(SMALL_TOML + "\n[parity]\nr = 1\n")
    torch.manual_seed(0)
    a = SepResNeXt(plain).eval()
    b = SepResNeXt(coded).eval()
    b.load_state_dict(a.state_dict())
    policy = plain.sample(random.Random(3))
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(a(x, policy), b(x, policy))


def test_bfloat16_autocast_keeps_the_stream_and_the_wire_in_float32():
    """Under autocast only convolutions (and the head) run in bfloat16: the residual stream
    and the payloads stay float32, so float16 on the wire is a real rounding, not a no-op on
    an already-bfloat16 stream."""
    space = space_from_text(ALPHA2_TOML)
    torch.manual_seed(0)
    net = SepResNeXt(space).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight)
    streams = {}
    hooks = [
        block.register_forward_hook(lambda m, i, o, b=b: streams.__setitem__(b, o))
        for b, block in enumerate(net.blocks)
    ]
    talk = {
        k: ([1, 0, 3, 2] if k.endswith("perm") else 100.0 if k.endswith("sparsity") else v)
        for k, v in space.no_communication_policy().items()
    }
    half = {k: ("float16" if k.endswith("dtype") else v) for k, v in talk.items()}
    full = {k: ("float32" if k.endswith("dtype") else v) for k, v in talk.items()}
    x = torch.randn(4, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_full = net(x, full)
        out_half = net(x, half)
        frozen = net.freeze(half)(x)
    for h in hooks:
        h.remove()
    assert {s.dtype for s in streams.values()} == {torch.float32}
    # What a float16 transfer adds is the float32 stream rounded through float16.
    geo = space.arch.points[0]
    stream = streams[geo.block]
    plan = make_plan(geo, space.resolve(half)[0], 4, "cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sent = transfer(stream, stream, plan)
    assert sent.dtype == torch.float32
    view = stream.view(4, 4, geo.channels, geo.size, geo.size)
    expected = view + view[:, [1, 0, 3, 2]].to(torch.float16).float()
    assert torch.equal(sent, expected.flatten(1, 2))
    assert not torch.equal(sent, (view + view[:, [1, 0, 3, 2]]).flatten(1, 2))
    assert not torch.equal(out_half, out_full)
    assert torch.equal(frozen, out_half)  # the frozen network computes the same


@pytest.mark.parametrize("same", [True, False])
def test_fused_transfer_equals_transmit_then_aggregate(same):
    """The fused transfer the forward uses computes exactly eqs. (2)-(3) as written
    (transmit, then aggregate), and its gradients are theirs with a straight-through cast."""
    space = space_from_text(SMALL_TOML)
    geo = space.arch.points[1]
    rng = random.Random(5)
    for _ in range(12):
        decision = space.resolve(space.sample(rng))[1]
        plan = make_plan(geo, decision, 4, "cpu")
        x = torch.randn(3, 4 * geo.channels, geo.size, geo.size, requires_grad=True)
        sent = x if same else torch.randn_like(x).requires_grad_()
        reference = aggregate(x, transmit(sent, plan), plan)
        fused = transfer(x, sent, plan)
        assert torch.equal(fused, reference), decision
        weight = torch.randn_like(fused)
        grads_ref = torch.autograd.grad((reference * weight).sum(), [x, sent])
        grads = torch.autograd.grad((fused * weight).sum(), [x, sent])
        for a, b in zip(grads, grads_ref, strict=True):
            if plan.half:  # the reference rounds its gradient through float16 too
                assert torch.allclose(a, b, atol=1e-2, rtol=1e-3)
            else:
                assert torch.equal(a, b)
