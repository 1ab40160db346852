"""Every bad-input case of the DSL gives one ConfigError naming file, key, expectation, value."""

import contextlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnas.errors import ConfigError, SnnasError
from snnas.space import load_space, space_from_text
from tests.conftest import SMALL_TOML


def _error(write_space, text):
    path = write_space(text)
    with pytest.raises(ConfigError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    return info.value, message


@pytest.mark.parametrize(
    ("old", "new", "key", "expected", "found"),
    [
        ("depth = 11", "dept = 11", "network.dept", "did you mean 'depth'", "unknown key"),
        ("groups = 4", "groups = 1", "split.groups", "integer in [2, 16]", "1"),
        ("groups = 4", 'groups = "4"', "split.groups", "an integer", "a string"),
        ("alpha = 1", "alpha = 0", "split.alpha", "integer in [1, 3]", "0"),
        ("alpha = 1", "alpha = 4", "split.alpha", "integer in [1, 3]", "4"),
        ("alpha = 1", "alpha = true", "split.alpha", "an integer", "a boolean"),
        ("p_min = 50", "p_min = 0", "decisions.sparsity.p_min", "(0, 100]", "0"),
        ("p_min = 50", "p_min = 120", "decisions.sparsity.p_min", "(0, 100]", "120"),
        ("depth = 11", "depth = 12", "network.depth", "3 * blocks_per_stage", "12"),
        ("cardinality = 4", "cardinality = 6", "network.cardinality", "multiple of", "6"),
        (
            'choices = "all"',
            'choices = "some"',
            "decisions.permutation.choices",
            "derangements",
            "some",
        ),
        (
            'choices = "all"',
            "fixed = [0, 1, 1, 3]",
            "decisions.permutation.fixed",
            "a permutation of 0..3",
            "[0, 1, 1, 3]",
        ),
        (
            'choices = "all"',
            "fixed = [0, 1, 2]",
            "decisions.permutation.fixed",
            "a permutation of 0..3",
            "[0, 1, 2]",
        ),
        (
            'choices = "all"',
            "choices = [[0, 1, 2, 3], [0, 0, 2, 3]]",
            "decisions.permutation.choices",
            "permutations of 0..3",
            "[0, 0, 2, 3]",
        ),
        (
            'choices = ["float32", "float16"]',
            'choices = ["float32", "int8"]',
            "decisions.dtype.choices",
            "dtype names",
            "int8",
        ),
        ("[split]", "[splitt]", "splitt", "did you mean 'split'", "unknown key"),
        (
            "levels = 3",
            "levels = 3\nvalues = [50, 100]",
            "decisions.sparsity.values",
            "not both",
            "both",
        ),
        ("input_size = 8", "input_size = 6", "network.input_size", "multiple of 4", "6"),
    ],
)
def test_bad_values_are_named(write_space, old, new, key, expected, found):
    assert old in SMALL_TOML
    error, message = _error(write_space, SMALL_TOML.replace(old, new, 1))
    assert error.key == key
    assert f": {key}: expected " in message
    assert expected in message
    assert found in message.split(", found ", 1)[1]


def test_line_number_points_at_the_key(write_space):
    text = SMALL_TOML.replace("groups = 4", "groups = 1")
    error, message = _error(write_space, text)
    line = text.splitlines().index("groups = 1") + 1
    assert error.line == line
    assert re.match(rf".+:{line}: split.groups:", message)


def test_toml_syntax_error_gives_the_parser_line(write_space):
    text = SMALL_TOML.replace("depth = 11", "depth = = 11")
    error, message = _error(write_space, text)
    assert error.line == text.splitlines().index("depth = = 11") + 1
    assert "valid TOML" in message


def test_sparsity_values_outside_range(write_space):
    text = SMALL_TOML.replace("p_min = 50\nlevels = 3", "values = [50, 0]")
    error, message = _error(write_space, text)
    assert error.key == "decisions.sparsity.values"
    assert "(0, 100]" in message


def test_missing_sections_and_file(write_space, tmp_path):
    error, _ = _error(write_space, 'name = "x"\n[split]\ngroups = 2\n')
    assert error.key == "network"
    with pytest.raises(ConfigError, match="no such file"):
        load_space(tmp_path / "nope.toml")


def test_parity_r_validates(write_space):
    error, _message = _error(write_space, SMALL_TOML + "\n[parity]\nr = -1\n")
    assert error.key == "parity.r"
    space = load_space(write_space(SMALL_TOML + "\n[parity]\nr = 1\n", "ok.toml"))
    assert space.parity.r == 1


_values = st.one_of(
    st.integers(-5, 300),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.booleans(),
    st.lists(st.integers(-2, 5), max_size=5),
    st.just("all"),
    st.just("derangements"),
)
_keys = st.sampled_from(
    [
        "depth",
        "cardinality",
        "bottleneck_width",
        "stage_widths",
        "stem_width",
        "num_classes",
        "input_size",
        "input_channels",
        "groups",
        "alpha",
        "p_min",
        "levels",
        "choices",
        "fixed",
        "tie",
        "values",
        "r",
    ]
)


def _toml_value(value):
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return json.dumps(value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=_keys, value=_values, line=st.integers(0, 40))
def test_fuzz_mutated_files_never_traceback(key, value, line):
    lines = SMALL_TOML.splitlines()
    lines.insert(min(line, len(lines)), f"{key} = {_toml_value(value)}")
    try:
        space_from_text("\n".join(lines), "fuzz.toml")
    except SnnasError as exc:
        assert str(exc).startswith("fuzz.toml")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text_never_tracebacks(text):
    with contextlib.suppress(SnnasError):
        space_from_text(text, "fuzz.toml")
