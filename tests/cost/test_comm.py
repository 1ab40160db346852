import pytest

from snnas.cost import communication
from snnas.space import load_space, space_from_text
from tests.conftest import POLICIES, SMALL_TOML, SPACES


@pytest.fixture(scope="module")
def paper_space():
    return load_space(SPACES / "sep_resnext56_4x16d_g4.toml")


@pytest.mark.parametrize(
    ("name", "policy_bytes", "ratio"),
    [
        ("table6_perm", 4_980_736, 0.3016),
        ("table6_sparsity", 4_030_464, 0.2440),
        ("table6_sparsity_fp16", 2_344_960, 0.1420),
    ],
)
def test_table6_policies(paper_space, name, policy_bytes, ratio):
    report = communication(paper_space, paper_space.load_policy(POLICIES / f"{name}.json"))
    assert report.policy_bytes == policy_bytes
    assert report.baseline_bytes == 16_515_072
    assert report.stem_bytes == 196_608
    assert round(report.ratio, 4) == ratio
    assert report.ratio < report.ratio_with_stem < report.ratio_stem_policy_only


def test_point_bytes_formula(paper_space):
    report = communication(paper_space, paper_space.load_policy(POLICIES / "table6_sparsity.json"))
    p1 = report.points[1]  # permutation 10 = (1, 3, 0, 2), level 3 = 68.75%
    assert p1.perm == (1, 3, 0, 2) and p1.sparsity == 68.75
    assert p1.n_send == 44  # floor(64 * 0.6875)
    assert p1.bytes_per_sender == 44 * 32 * 32 * 4
    assert p1.bytes == 4 * p1.bytes_per_sender
    p0 = report.points[0]  # identity permutation: nobody sends
    assert p0.senders == 0 and p0.bytes == 0
    assert sum(p.baseline_bytes for p in report.points) == report.baseline_bytes


def test_no_communication_costs_nothing():
    s = space_from_text(SMALL_TOML)
    report = communication(s, s.no_communication_policy())
    assert report.policy_bytes == 0 and report.ratio == 0.0


def test_float16_halves_bytes():
    s = space_from_text(SMALL_TOML)
    policy = s.policy_from_index(0)
    policy = {k: ([1, 2, 3, 0] if k.endswith("perm") else v) for k, v in policy.items()}
    f32 = communication(
        s, {k: ("float32" if k.endswith("dtype") else v) for k, v in policy.items()}
    )
    f16 = communication(
        s, {k: ("float16" if k.endswith("dtype") else v) for k, v in policy.items()}
    )
    assert f16.policy_bytes * 2 == f32.policy_bytes > 0
