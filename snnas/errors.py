"""Project errors. Every error a user can cause derives from :class:`SnnasError`.

The CLI turns a ``SnnasError`` into one line on stderr and exit code 1 (2 for a
:class:`UsageError`); anything else is a bug and keeps its traceback.

Messages echo what the user gave through :func:`shorten`, so they stay one line and bounded
however long or strange the input was.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "MAX_ECHO",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "InputError",
    "PlanError",
    "PolicyError",
    "RuntimeFailure",
    "SnnasError",
    "TrainingError",
    "UsageError",
    "shorten",
]

#: Most characters of one echoed value in a message (the rest becomes an ellipsis).
MAX_ECHO = 300


def _visible(text: str) -> str:
    """``text`` with control characters (newlines, escapes, NUL, ...) written as escapes."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def shorten(value: object, limit: int = MAX_ECHO, *, quote: bool = False) -> str:
    """``value`` as one bounded line for a message.

    Strings are shown as they are (``quote=True``: as Python would quote them), other
    values by their ``repr``; control characters become escapes, and anything past
    ``limit`` characters becomes an ellipsis that says how much was left out.
    """
    if isinstance(value, str) and not quote:
        text = _visible(value)
    else:
        try:
            text = _visible(repr(value))
        except ValueError:  # an integer too long to print (over 4,300 digits)
            bits = value.bit_length() if isinstance(value, int) else 0
            text = f"<an integer of about {bits * 0.30103:,.0f} digits>"
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text) - limit:,} more characters)"
    return text


class SnnasError(Exception):
    """Base class of every error a user can cause (bad files, bad arguments, missing data)."""


class ConfigError(SnnasError):
    """A configuration or search-space file is invalid.

    The message names the file, the line (when known), the dotted key, what was expected and
    what was found.
    """

    def __init__(
        self,
        path: str | Path | None,
        key: str,
        expected: str,
        found: object,
        line: int | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.key = key
        self.expected = expected
        self.found = found
        self.line = line
        where = None if self.path is None else shorten(self.path)
        if where is not None and line is not None:
            where = f"{where}:{line}"
        if isinstance(found, str) and found.startswith("<") and found.endswith(">"):
            found_text = shorten(found)  # already worded: "<missing>", "<a string: 'x'>"
        else:
            found_text = shorten(found, quote=True)
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}{shorten(key, 100)}: expected {expected}, found {found_text}")


class UsageError(ConfigError):
    """A bad command-line option value (``--device tpu``, ``--set x``, ``--name ../x``).

    The CLI exits with code 2 for it, as for click's own usage errors. ``option`` names the
    option (``--device``); ``key``, when given, the setting inside it (``--set``'s
    ``search.lr``).
    """

    def __init__(self, option: str, expected: str, found: object, key: str | None = None) -> None:
        self.option = option
        if key is None:
            super().__init__(None, option, expected, found)
        else:  # "--set: search.lr: expected a number in (0, 10], found -1.0"
            super().__init__(option, key, expected, found)


class PolicyError(SnnasError):
    """A policy does not belong to its search space (unknown label, bad value, missing label)."""


class DatasetError(SnnasError):
    """A dataset folder is missing or incomplete."""


class CheckpointError(SnnasError):
    """A checkpoint or run folder is corrupt or does not match the requested run."""


class InputError(SnnasError):
    """Images given to a plan (``snnas run --input``) cannot be read or do not fit its input
    spec; the message names the file, what was expected and what was found."""


class PlanError(SnnasError):
    """A deployment plan is invalid, tampered with, incomplete or from a newer snnas."""


class RuntimeFailure(SnnasError):
    """A device of a running plan failed, hung or answered wrongly."""


class TrainingError(SnnasError):
    """Training cannot go on (a loss that is no longer a finite number)."""
