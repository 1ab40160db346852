"""Project errors. Every error a user can cause derives from :class:`SnnasError`.

The CLI turns a ``SnnasError`` into one line on stderr and a non-zero exit; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "PlanError",
    "PolicyError",
    "RuntimeFailure",
    "SnnasError",
]


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
        where = self.path
        if where is not None and line is not None:
            where = f"{where}:{line}"
        found_text = found if isinstance(found, str) and found.startswith("<") else repr(found)
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}{key}: expected {expected}, found {found_text}")


class PolicyError(SnnasError):
    """A policy does not belong to its search space (unknown label, bad value, missing label)."""


class DatasetError(SnnasError):
    """A dataset folder is missing or incomplete."""


class CheckpointError(SnnasError):
    """A checkpoint or run folder is corrupt or does not match the requested run."""


class PlanError(SnnasError):
    """A deployment plan is invalid, tampered with, incomplete or from a newer snnas."""


class RuntimeFailure(SnnasError):
    """A device of a running plan failed, hung or answered wrongly."""
