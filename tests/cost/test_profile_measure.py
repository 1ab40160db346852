"""The measuring side of ``snnas profile`` (``snnas/runtime/_profiler.py``), without timing
anything: which shapes it times, that each is built as a device runs it, and the fits."""

import pytest
import torch

from snnas.errors import UsageError
from snnas.plan import DeviceNet
from snnas.runtime._profiler import _fit_link, build_op, fit_flops, op_shapes, parse_peer
from snnas.space import load_space, space_from_text
from tests.conftest import SMALL_TOML, SPACES


def test_shapes_of_the_tiny_space_once_each():
    tiny = space_from_text(SMALL_TOML)
    keys = [s.key for s in op_shapes([tiny, tiny])]
    assert keys == [
        "stem 1-4 8x8",
        "block 4-8 m2 g1 s1 8x8",
        "block 8-16 m4 g1 s2 8x8",
        "block 16-32 m8 g1 s2 4x4",
        "head 32-10 2x2",
    ]


def test_parity_devices_add_their_wider_blocks():
    text = (SPACES / "quickstart_parity.toml").read_text()
    one = op_shapes([space_from_text(text)])
    assert one == op_shapes([load_space(SPACES / "quickstart.toml")])  # scale 1: same shapes
    wide = text.replace("bottleneck_scale = 1 ", "bottleneck_scale = 2 ")
    keys = [s.key for s in op_shapes([space_from_text(wide)])]
    assert keys[len(one) - 1 :] == [
        "block 8-16 m2 g2 s1 16x16",
        "block 16-16 m2 g2 s1 16x16",
        "block 16-32 m4 g2 s2 16x16",
        "block 32-32 m4 g2 s1 8x8",
        "block 32-64 m8 g2 s2 8x8",
        "block 64-64 m8 g2 s1 4x4",
        "head 64-10 4x4",
    ]


def test_a_block_is_what_a_device_runs():
    """The timed module computes exactly what the plan's DeviceNet computes with the same
    weights (so the table times the ops a device runs)."""
    tiny = space_from_text(SMALL_TOML)
    arch = tiny.arch
    for b in range(arch.num_blocks):
        shape = op_shapes([tiny])[1 + b]
        module, x = build_op(shape, seed=b)
        weights = {f"blocks.{b}.{k}": v for k, v in module.state_dict().items()}
        net = DeviceNet(arch, [b], weights)
        with torch.inference_mode():
            assert torch.equal(module(x), net.run_block(b, x))
    stem, x = build_op(op_shapes([tiny])[0])
    net = DeviceNet(arch, [], {"stem.weight": stem.conv.weight, "stem.bias": stem.conv.bias})
    with torch.inference_mode():
        assert torch.equal(stem(x), net.run_stem(x))
    head, x = build_op(op_shapes([tiny])[-1])
    net = DeviceNet(arch, [], {"fc.weight": head.fc.weight, "fc.bias": head.fc.bias})
    with torch.inference_mode():
        assert torch.equal(head(x), net.run_head(x))


def test_fit_flops_recovers_rate_and_overhead():
    points = [(f, 2e-5 + f / 4e10) for f in (1e5, 1e6, 3e6, 1e7)]
    flops, overhead = fit_flops(points)
    assert flops == pytest.approx(4e10)
    assert overhead == pytest.approx(2e-5)
    # A negative intercept falls back to a rate through the origin.
    flops, overhead = fit_flops([(1e6, 1e-6), (2e6, 5e-6)])
    assert overhead == 0.0 and flops == pytest.approx((1e12 + 4e12) / (1 + 10))
    assert fit_flops([(1e6, 1e-3)]) == (pytest.approx(1e9), 0.0)
    with pytest.raises(ValueError):
        fit_flops([])


def test_fit_link_splits_the_fixed_time():
    one_way = {256: 1e-4 + 256 * 8 / 1e9, 1 << 20: 1e-4 + (1 << 20) * 8 / 1e9}
    link = _fit_link({"one_way_s": one_way, "send_s": 2e-5, "recv_s": 3e-5}, "loopback")
    assert link.bandwidth_bps == pytest.approx(1e9)
    assert (link.send_s, link.recv_s) == (2e-5, 3e-5)
    assert link.link_latency_s == pytest.approx(5e-5)
    # A receive slower than the whole trip (a busy machine) is cut to what the trip leaves.
    slow = _fit_link({"one_way_s": one_way, "send_s": 2e-5, "recv_s": 1.0}, "loopback")
    assert slow.recv_s == pytest.approx(8e-5) and slow.link_latency_s == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.2:29600", ("10.0.0.2", 29600)),
        ("[::1]:80", ("::1", 80)),
        ("pi-3.lan:1", ("pi-3.lan", 1)),
    ],
)
def test_peer_addresses(text, expected):
    assert parse_peer(text) == expected


@pytest.mark.parametrize("text", ["host", "host:", ":80", "host:0", "host:65536", "a b:80", "h:8x"])
def test_bad_peer_addresses(text):
    with pytest.raises(UsageError, match="--peer"):
        parse_peer(text)
