"""The parity devices' plan and cost lines, checked by hand."""

import random

import pytest

from snnas.cost import degraded_rule, liveness, parity_cost, parity_plan
from snnas.space import space_from_text
from tests.conftest import SMALL_TOML

PARITY = """
[parity]
r = {r}

[decisions.encode]
values = [0, 50, 100]

[decisions.encoder]
choices = ["sum", "concat", "mirror"]
"""


def _space(r=1):
    return space_from_text(SMALL_TOML + PARITY.format(r=r))


def _policy(space, **updates):
    policy = space.sample(random.Random(0))
    policy.update(updates)
    return space.validate(policy)


def test_encodings_by_hand():
    space = _space(2)  # tiny: 8x8 inputs, points after blocks 0, 1, 2 (8, 16, 32 channels)
    policy = _policy(
        space,
        **{"t0.encode": 50.0, "t0.dtype": "float16", "t1.encode": 0.0},
        **{"t2.encode": 100.0, "t2.dtype": "float32"},
    )
    plan = parity_plan(space, policy)
    assert {e.point for e in plan.encodings} == {0, 2}
    assert {e.dst for e in plan.encodings} == {4, 5}  # parity devices are G + k
    t0 = [e for e in plan.encodings if e.point == 0]
    assert len(t0) == 4 * 2  # every data device to every parity device
    assert all(e.channels == 4 and e.bytes == 4 * 8 * 8 * 2 for e in t0)
    cost = parity_cost(space, policy)
    assert cost.encoding_bytes_per_point == (2 * 4 * 4 * 64 * 2, 0, 2 * 4 * 32 * 2 * 2 * 4)
    assert cost.image_bytes == 2 * 1 * 8 * 8 * 4
    assert cost.bytes == cost.image_bytes + sum(cost.encoding_bytes_per_point)


def test_encodings_make_blocks_live():
    space = _space(1)
    quiet = _policy(space, **{f"t{p}.encode": 0.0 for p in range(3)})
    cost = parity_cost(space, quiet)
    assert cost.extra_data_blocks == ((), (), (), ())
    assert cost.encoding_bytes == 0
    # Device 0 keeps its data at the last point: the others' last block feeds nothing...
    last = _policy(space, **{"t2.perm": (0, 1, 2, 3), "t2.encode": 100.0})
    head = liveness(space, last).live_blocks
    assert all(2 not in head[d] for d in (1, 2, 3))
    # ... unless the parity device reads it.
    cost = parity_cost(space, last)
    assert all(2 in cost.extra_data_blocks[d] for d in (1, 2, 3))
    assert cost.extra_data_flops[1] >= 2 * space.arch.block_macs(space.arch.blocks[2])


def test_degraded_rules():
    space = _space(1)
    policy = _policy(
        space,
        **{"t0.perm": (1, 2, 3, 0), "t0.sparsity": 100.0, "t0.dtype": "float32"},
        **{"t1.perm": (0, 1, 2, 3), "t2.perm": (3, 2, 1, 0), "t2.sparsity": 50.0},
        **{"t0.encode": 100.0, "t1.encode": 0.0, "t2.encode": 50.0},
    )
    # Device 0 lost before the image: parity device 4 sends the stem and stands in for every
    # payload device 0 would have sent; it answers.
    rule = degraded_rule(space, policy, 0, 0)
    assert (rule.answer_by, rule.stem_by, rule.stem_to) == (4, 4, (1, 2, 3))
    payloads = [s for s in rule.standins if s.point >= 0]
    assert [(s.point, s.dst, s.channels) for s in payloads] == [(0, 1, 8), (2, 3, 16)]
    assert all(s.by == 4 for s in rule.standins)
    assert payloads[0].bytes == 8 * 64 * 4
    # Device 3 (no parity device of its own) from point 1: its receivers and the parity
    # device add the imputation constants, nothing moves; device 0 answers unless told.
    rule = degraded_rule(space, policy, 3, 1)
    assert rule.bytes == 0 and all(s.by is None for s in rule.standins)
    assert {(s.point, s.dst) for s in rule.standins} == {(2, 0), (2, 4)}
    assert rule.answer_by == 0
    assert degraded_rule(space, policy, 3, 1, answers=[True, False, False, True]).answer_by == 4


def test_shadowed_devices_are_stood_in_by_their_parity_device():
    space = _space(2)
    policy = _policy(space, **{"t1.perm": (1, 0, 2, 3), "t1.sparsity": 100.0, "t1.encode": 100.0})
    rule = degraded_rule(space, policy, 1, 1)
    payload = next(s for s in rule.standins if s.point == 1 and s.dst == 0)
    assert payload.by == 5 and payload.bytes == 16 * 16 * payload_bytes(policy)
    # Parity device 5 also sends its stream to parity device 4 in device 1's place.
    assert any(s.dst == 4 and s.by == 5 and s.point == 1 for s in rule.standins)
    assert rule.answer_by == 0


def payload_bytes(policy):
    return 2 if policy["t1.dtype"] == "float16" else 4


def test_no_parity_devices():
    space = space_from_text(SMALL_TOML)
    policy = space.sample(random.Random(0))
    assert parity_cost(space, policy).bytes == 0
    with pytest.raises(ValueError, match="no parity devices"):
        degraded_rule(space, policy, 0, 0)


def test_mirror_encoder_sends_only_what_the_shadowed_devices_receive():
    space = _space(2)
    policy = _policy(
        space,
        encoder="mirror",
        **{"t0.perm": (1, 2, 3, 0), "t0.sparsity": 50.0, "t0.encode": 100.0},
        **{"t1.perm": (0, 1, 3, 2), "t1.encode": 100.0, "t2.encode": 0.0},
    )
    plan = parity_plan(space, policy)
    # Point 0: device 3 sends to device 0, device 0 to device 1 (the shadowed ones), half of
    # their 8 channels; point 1: devices 0 and 1 receive nothing.
    assert [(e.point, e.src, e.dst, e.channels) for e in plan.encodings] == [
        (0, 0, 5, 4),
        (0, 3, 4, 4),
    ]
    mirror = parity_cost(space, policy).params_per_parity
    summed = parity_cost(space, {**policy, "encoder": "sum"}).params_per_parity
    assert [s - m for s, m in zip(summed, mirror, strict=True)] == [2 * 4, 2 * 4]  # no weights
    rule = degraded_rule(space, policy, 3, 0)
    assert [(s.point, s.dst, s.by) for s in rule.standins if s.dst >= 4] == [(0, 4, None)]
