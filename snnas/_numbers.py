"""Checked numbers: the type, finiteness and documented range of every number a user gives.

One :class:`Range` describes what a setting accepts; the TOML readers, the ``--set``
overrides, the strategies' options and the CLI's option types (``snnas.cli._options``) all
check through it, so every surface refuses the same values with the same words:

    >>> Range(0, 1, high_open=True).problem(float("nan"))
    'a finite number in [0, 1)'
    >>> Range(1, 1000, integer=True).describe()
    'an integer in [1, 1000]'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Range", "type_name"]


def type_name(value: object, words: str = "toml") -> str:
    """A user's name for the type of ``value`` ("an integer", "an array"), for messages.

    ``words="json"`` names mappings "an object" and ``None`` "null", as JSON does; TOML
    (the default) calls a mapping "a table".
    """
    if value is None:
        return "null" if words == "json" else "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float" if words == "toml" else "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object" if words == "json" else "a table"
    if type(value).__name__ == "Tensor":
        return "a tensor"
    return "a date or time" if type(value).__module__ == "datetime" else "an unsupported value"


def _fmt(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) or abs(x) >= 1e4 else f"{x:g}"


@dataclass(frozen=True)
class Range:
    """Finite numbers between ``low`` and ``high`` (each optional, each closed unless marked
    open); whole numbers only when ``integer``. Booleans are never numbers."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        """What the range accepts, in words: ``"a number in (0, 10]"``, ``"an integer >= 1"``."""
        what = "an integer" if self.integer else "a number"
        low, high = self.low, self.high
        if low is not None and high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{what} in {left}{_fmt(low)}, {_fmt(high)}{right}"
        if low is not None:
            return f"{what} {'>' if self.low_open else '>='} {_fmt(low)}"
        if high is not None:
            return f"{what} {'<' if self.high_open else '<='} {_fmt(high)}"
        return what

    def problem(self, value: object) -> str | None:
        """``None`` when ``value`` is in the range, else what was expected (for a message).

        A NaN or an infinity is refused as "a finite number ..." even where the type is right.
        """
        if isinstance(value, bool):
            return self.describe()
        if self.integer:
            if not isinstance(value, int):
                return self.describe()
        elif not isinstance(value, int | float):
            return self.describe()
        elif isinstance(value, float) and not math.isfinite(value):
            return "a finite " + self.describe().removeprefix("a ")
        assert isinstance(value, int | float)
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return self.describe()
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return self.describe()
        return None
