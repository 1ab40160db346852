"""The [parity] table and the parity decisions (encode, encoder) of the DSL."""

import json
import random

import pytest

from snnas.errors import ConfigError
from snnas.space import load_space, space_from_text
from tests.conftest import SMALL_TOML, SPACES

PARITY = """
[parity]
r = 1

[decisions.encode]
values = [0, 50, 100]

[decisions.encoder]
choices = ["sum", "concat"]
"""


def _error(write_space, text):
    path = write_space(text)
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(info.value).startswith(str(path))
    return info.value


@pytest.mark.parametrize(
    ("old", "new", "key", "expected"),
    [
        ("values = [0, 50, 100]", "values = [0, 120]", "decisions.encode.values", "[0, 100]"),
        ("values = [0, 50, 100]", "values = []", "decisions.encode.values",
         "an array of 1 to 101 percents"),
        ("values = [0, 50, 100]", 'values = "all"', "decisions.encode.values", "percents"),
        ("values = [0, 50, 100]", "fixed = -1", "decisions.encode.fixed", "[0, 100]"),
        ("values = [0, 50, 100]", "valuse = [0]", "decisions.encode.valuse", "did you mean"),
        ('choices = ["sum", "concat"]', 'choices = ["xor"]', "decisions.encoder.choices", "sum"),
        ('choices = ["sum", "concat"]', 'choices = ["sum", "sum"]', "decisions.encoder.choices",
         "distinct"),
        ('choices = ["sum", "concat"]', 'fixed = "max"', "decisions.encoder.fixed", "'concat'"),
        ("r = 1", "r = 1\nbottleneck_scale = 0", "parity.bottleneck_scale", "[1, 4]"),
        ("r = 1", "r = 1\nbottleneck_scale = 5", "parity.bottleneck_scale", "[1, 4]"),
        ("r = 1", "r = 1\nwidth = 2", "parity.width", "bottleneck_scale"),
    ],
)  # fmt: skip
def test_parity_keys_are_validated(write_space, old, new, key, expected):
    text = SMALL_TOML + PARITY
    assert old in text
    error = _error(write_space, text.replace(old, new, 1))
    assert error.key == key
    assert expected in str(error)
    assert error.line is not None


def test_parity_decisions_need_parity_devices(write_space):
    error = _error(write_space, SMALL_TOML + PARITY.replace("r = 1", "r = 0"))
    assert error.key == "decisions.encode"
    assert "parity.r = 0" in str(error)
    error = _error(write_space, SMALL_TOML + "\n[parity]\nr = 0\nbottleneck_scale = 2\n")
    assert error.key == "parity.bottleneck_scale"


def test_parity_decisions_are_labelled_searchable_and_hashed():
    plain = space_from_text(SMALL_TOML)
    coded = space_from_text(SMALL_TOML + PARITY)
    # The encoder is tied by default (one label, first); encode is one decision per point.
    assert coded.labels[0] == "encoder"
    assert [d.label for d in coded.decisions if d.kind == "encode"] == [
        "t0.encode",
        "t1.encode",
        "t2.encode",
    ]
    assert coded.decision("t1.encode").choices == (0.0, 50.0, 100.0)
    assert coded.size == plain.size * 3**3 * 2
    assert coded.hash != plain.hash
    policy = coded.sample(random.Random(0))
    assert coded.policy_from_json(json.loads(json.dumps(coded.policy_to_json(policy)))) == policy
    assert coded.decode(coded.encode(policy)) == policy
    # Integers in JSON are read as percents, like sparsity.
    as_ints = {**policy, "t0.encode": 50}
    assert coded.validate(as_ints)["t0.encode"] == 50.0
    points = coded.resolve_parity(policy)
    assert len(points) == coded.num_points
    assert points[0].encode == policy["t0.encode"] and points[0].encoder == policy["encoder"]
    assert points[2].dtype == coded.resolve(policy)[2].dtype  # encodings use the point's dtype
    assert coded.no_communication_policy()["t2.encode"] == 0.0
    assert plain.resolve_parity(plain.sample(random.Random(0))) == ()


def test_parity_defaults_are_constants_of_the_space():
    s = space_from_text(SMALL_TOML + "\n[parity]\nr = 2\n")
    assert s.labels == space_from_text(SMALL_TOML).labels  # nothing new to search
    fixed = s.to_json()["fixed"]
    assert fixed["encode"] == 100.0 and fixed["encoder"] == "concat"
    point = s.resolve_parity(s.sample(random.Random(1)))[0]
    assert (point.encode, point.encoder, point.m_send(8)) == (100.0, "concat", 8)
    assert s.to_json()["parity"] == {"r": 2, "bottleneck_scale": 1}


def test_spaces_without_parity_keep_their_hash():
    # The shipped Table 6 policies pin this hash; adding parity keys must not move it.
    data = json.loads((SPACES / "policies" / "table6_perm.json").read_text())
    assert data["space_hash"] == load_space(SPACES / "sep_resnext56_4x16d_g4.toml").hash
    assert space_from_text(SMALL_TOML).to_json()["parity"] == {"r": 0}


def test_quickstart_parity_is_the_quickstart_with_one_parity_device():
    base = load_space(SPACES / "quickstart.toml")
    coded = load_space(SPACES / "quickstart_parity.toml")
    assert (coded.network, coded.split) == (base.network, base.split)
    assert coded.parity.r == 1
    assert {d.kind for d in coded.decisions} == {
        "permutation",
        "sparsity",
        "dtype",
        "encode",
        "encoder",
    }
