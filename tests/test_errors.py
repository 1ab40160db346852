"""Messages: bounded, one line, user words; numbers: type, finiteness and range."""

import math

import pytest

from snnas._numbers import Range, type_name
from snnas.errors import MAX_ECHO, ConfigError, UsageError, shorten


def test_shorten_bounds_and_escapes():
    assert shorten("abc") == "abc"
    assert shorten("a\x00b\nc\x1b[31m") == "a\\x00b\\nc\\x1b[31m"
    long = shorten("x" * 5000)
    assert long.startswith("x" * MAX_ECHO) and "4,700 more characters" in long
    assert len(long) < MAX_ECHO + 40
    assert shorten(list(range(100_000)), 50).endswith("more characters)")
    assert "digits" in shorten(10**5000)  # Python refuses to print it; we do not crash


def test_config_error_names_file_line_key_expected_found():
    error = ConfigError("a.toml", "split.groups", "an integer in [2, 16]", 1, line=3)
    assert str(error) == "a.toml:3: split.groups: expected an integer in [2, 16], found 1"
    huge = ConfigError("a.toml", "k" * 1000, "x", "v" * 10_000)
    assert len(str(huge)) < 600


def test_usage_error_names_the_option_and_key():
    assert str(UsageError("--device", "cpu or cuda", "tpu")) == (
        "--device: expected cpu or cuda, found 'tpu'"
    )
    error = UsageError("--set", "an integer", 0, key="search.iterations")
    assert str(error) == "--set: search.iterations: expected an integer, found 0"
    assert isinstance(error, ConfigError)


@pytest.mark.parametrize(
    ("valid", "value", "problem"),
    [
        (Range(0, 10, low_open=True), 0, "a number in (0, 10]"),
        (Range(0, 10, low_open=True), 10, None),
        (Range(0, 10, low_open=True), 10.5, "a number in (0, 10]"),
        (Range(0, 10), math.nan, "a finite number in [0, 10]"),
        (Range(0, 10), math.inf, "a finite number in [0, 10]"),
        (Range(), -math.inf, "a finite number"),
        (Range(0, 1, high_open=True), 1.0, "a number in [0, 1)"),
        (Range(1, integer=True), 1.0, "an integer >= 1"),
        (Range(1, integer=True), True, "an integer >= 1"),
        (Range(), True, "a number"),
        (Range(), "1", "a number"),
        (Range(high=5, integer=True), 6, "an integer <= 5"),
        (Range(1, 100_000, integer=True), 7, None),
    ],
)
def test_range(valid, value, problem):
    assert valid.problem(value) == problem


def test_type_names_are_user_words():
    assert type_name((1, 2)) == "an array"
    assert type_name({}) == "a table" and type_name({}, "json") == "an object"
    assert type_name(None, "json") == "null"
    assert type_name(1.5) == "a float" and type_name(True) == "a boolean"
