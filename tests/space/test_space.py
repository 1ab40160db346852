import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snnas.errors import PolicyError
from snnas.space import load_space, space_from_text
from tests.conftest import POLICIES, SMALL_TOML, SPACES


def test_paper_space_sizes():
    s56 = load_space(SPACES / "sep_resnext56_8x16d_g4.toml")
    assert len(s56.decisions) == 9
    assert all(len(d) == 24 and d.kind == "permutation" for d in s56.decisions)
    assert s56.size == 24**9 == 2641807540224
    s110 = load_space(SPACES / "sep_resnext110_8x16d_g4.toml")
    assert len(s110.decisions) == 18
    assert s110.size == 24**18
    s4 = load_space(SPACES / "sep_resnext56_4x16d_g4.toml")
    assert s4.num_points == 9
    assert len(s4.decisions) == 27
    assert s4.size == (24 * 9 * 2) ** 9


def test_table4_sparsity_levels():
    s = load_space(SPACES / "sep_resnext56_4x16d_g4.toml")
    levels = s.decision("t0.sparsity").choices
    assert levels == (50.0, 56.25, 62.5, 68.75, 75.0, 81.25, 87.5, 93.75, 100.0)


def test_encode_decode_round_trip():
    s = space_from_text(SMALL_TOML)
    for number in (0, 1, 12345, s.size - 1):
        policy = s.policy_from_index(number)
        assert s.decode(s.encode(policy)) == policy
    assert s.size == math.prod(len(d) for d in s.decisions) == (24 * 3 * 2) ** 3


def test_json_round_trip_through_text():
    s = space_from_text(SMALL_TOML)
    policy = s.policy_from_index(987654)
    text = json.dumps(s.policy_to_json(policy))
    assert s.policy_from_json(json.loads(text)) == policy


def test_factorized_lehmer_view_round_trip():
    s = space_from_text(SMALL_TOML)
    fact = s.factorized_decisions()
    # 3 points x (4 Lehmer digits + sparsity + dtype)
    assert len(fact) == 3 * 6
    assert [n for label, n in fact if label.startswith("t0.perm.")] == [4, 3, 2, 1]
    policy = s.policy_from_index(4242)
    assert s.from_factorized(s.to_factorized(policy)) == policy


def test_restricted_permutations_stay_one_categorical(write_space):
    text = SMALL_TOML.replace('choices = "all"', 'choices = "derangements"')
    s = load_space(write_space(text))
    assert len(s.decision("t0.perm")) == 9
    assert ("t0.perm", 9) in s.factorized_decisions()


def test_tied_and_fixed_decisions(write_space):
    text = SMALL_TOML.replace(
        'choices = ["float32", "float16"]', 'choices = ["float32", "float16"]\ntie = true'
    ).replace("levels = 3", "levels = 3\nfixed = 75")
    s = load_space(write_space(text))
    assert s.labels == ("dtype", "t0.perm", "t1.perm", "t2.perm")
    assert s.decision("dtype").points == (0, 1, 2)
    assert s.size == 2 * 24**3
    points = s.resolve(
        {
            "dtype": "float16",
            "t0.perm": [1, 0, 3, 2],
            "t1.perm": [0, 1, 2, 3],
            "t2.perm": [3, 2, 1, 0],
        }
    )
    assert [p.sparsity for p in points] == [75.0] * 3
    assert [p.dtype for p in points] == ["float16"] * 3


def test_check_names_the_bad_label_and_value():
    s = space_from_text(SMALL_TOML)
    policy = s.policy_from_index(0)
    assert s.check(policy) is None
    bad = dict(policy, **{"t1.perm": [0, 0, 1, 2]})
    assert "t1.perm" in s.check(bad) and "[0, 0, 1, 2]" in s.check(bad)
    bad = dict(policy, **{"t2.sparsity": 60})
    assert "t2.sparsity" in s.check(bad)
    missing = dict(policy)
    del missing["t0.dtype"]
    assert "t0.dtype" in s.check(missing)
    extra = dict(policy, bogus=1)
    assert "bogus" in s.check(extra)
    with pytest.raises(PolicyError, match=r"t1\.perm"):
        s.validate(dict(policy, **{"t1.perm": [0, 0, 1, 2]}))


def test_hash_is_stable_and_ignores_name(write_space):
    a = load_space(write_space(SMALL_TOML, "a.toml"))
    b = load_space(write_space(SMALL_TOML.replace('name = "tiny"', 'name = "other"'), "b.toml"))
    c = load_space(write_space(SMALL_TOML.replace("levels = 3", "levels = 5"), "c.toml"))
    assert a.hash == b.hash
    assert a.hash != c.hash
    assert len(a.hash) == 16
    # The shipped policies pin the paper space's hash: changing it must be deliberate.
    data = json.loads((POLICIES / "table6_perm.json").read_text())
    assert data["space_hash"] == load_space(SPACES / "sep_resnext56_4x16d_g4.toml").hash


def test_policy_with_other_space_hash_is_refused():
    s = load_space(SPACES / "sep_resnext56_8x16d_g4.toml")
    with pytest.raises(PolicyError, match="space hash"):
        s.load_policy(POLICIES / "table6_perm.json")


def test_corrupt_policy_file_is_refused(tmp_path):
    s = space_from_text(SMALL_TOML)
    path = tmp_path / "p.json"
    path.write_text("{not json")
    with pytest.raises(PolicyError, match=r"p\.json:1: not valid JSON"):
        s.load_policy(path)
    with pytest.raises(PolicyError, match="no such file"):
        s.load_policy(tmp_path / "missing.json")


def test_no_communication_policy_uses_identity():
    s = space_from_text(SMALL_TOML)
    points = s.resolve(s.no_communication_policy())
    assert all(p.perm == (0, 1, 2, 3) for p in points)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 30)
    | st.floats(allow_nan=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from(["t0.perm", "t1.sparsity", "t2.dtype", "policy", "space_hash", "x"]),
        _json_values,
        max_size=6,
    )
)
def test_fuzz_policy_json_never_tracebacks(data):
    s = space_from_text(SMALL_TOML)
    try:
        policy = s.policy_from_json(data)
    except PolicyError:
        return
    assert s.check(policy) is None
