"""Small helpers to read TOML files with errors that name the file, the key and the line."""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from snnas.errors import ConfigError

__all__ = ["TomlSource", "type_name"]

_TOML_LINE = re.compile(r"at line (\d+)")
_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-.]+)\s*=")


def type_name(value: object) -> str:
    """A TOML-flavoured name for the type of ``value``, for error messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


class TomlSource:
    """A parsed TOML document that remembers its path and text to report precise errors."""

    def __init__(self, text: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.text = text
        try:
            self.data: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            match = _TOML_LINE.search(str(exc))
            line = int(match.group(1)) if match else None
            raise ConfigError(
                self.path, "<document>", "valid TOML", f"<{exc}>", line=line
            ) from None

    @classmethod
    def from_path(cls, path: str | Path) -> TomlSource:
        """Read and parse ``path``; a missing or unreadable file is a :class:`ConfigError`."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(p, "<file>", "an existing TOML file", "<no such file>")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(p, "<file>", "a readable UTF-8 file", f"<{exc}>") from None
        return cls(text, p)

    def line_of(self, key: str) -> int | None:
        """Best-effort line number of a dotted key (its assignment, or its table header)."""
        parts = key.split(".")
        table: list[str] = []
        header_line: int | None = None
        for number, raw in enumerate(self.text.splitlines(), start=1):
            header = _HEADER.match(raw)
            if header:
                table = [p.strip().strip("\"'") for p in header.group(1).split(".")]
                if table == parts:
                    header_line = number
                continue
            assign = _ASSIGN.match(raw)
            if assign:
                name = [p.strip("\"'") for p in assign.group(1).split(".")]
                if table + name == parts:
                    return number
        return header_line

    def error(self, key: str, expected: str, found: object) -> ConfigError:
        """A :class:`ConfigError` for ``key`` with the line filled in when it can be found."""
        return ConfigError(self.path, key, expected, found, line=self.line_of(key))

    def check_keys(self, table: Mapping[str, Any], prefix: str, allowed: Iterable[str]) -> None:
        """Refuse keys of ``table`` that are not in ``allowed``, suggesting the closest one."""
        allowed = list(allowed)
        for name in table:
            if name not in allowed:
                key = f"{prefix}.{name}" if prefix else name
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.error(
                    key, f"one of {', '.join(sorted(allowed))}{hint}", f"<unknown key {name!r}>"
                )

    def table(self, parent: Mapping[str, Any], name: str, prefix: str = "") -> dict[str, Any]:
        """The sub-table ``name`` of ``parent`` ({} when absent); a non-table is an error."""
        key = f"{prefix}.{name}" if prefix else name
        value = parent.get(name, {})
        if not isinstance(value, dict):
            raise self.error(key, "a table", f"<{type_name(value)}: {value!r}>")
        return value

    def get_int(
        self,
        table: Mapping[str, Any],
        key: str,
        name: str,
        *,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        """An integer (booleans refused) within ``[minimum, maximum]``."""
        dotted = f"{key}.{name}"
        if name not in table:
            if default is None:
                raise self.error(dotted, "an integer", "<missing>")
            return default
        value = table[name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(dotted, "an integer", f"<{type_name(value)}: {value!r}>")
        if minimum is not None and value < minimum:
            raise self.error(dotted, f"an integer >= {minimum}", value)
        if maximum is not None and value > maximum:
            raise self.error(dotted, f"an integer <= {maximum}", value)
        return value

    def get_number(
        self, table: Mapping[str, Any], key: str, name: str, *, default: float | None = None
    ) -> float:
        """A float or integer (booleans refused)."""
        dotted = f"{key}.{name}"
        if name not in table:
            if default is None:
                raise self.error(dotted, "a number", "<missing>")
            return default
        value = table[name]
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.error(dotted, "a number", f"<{type_name(value)}: {value!r}>")
        return float(value)

    def get_str(
        self,
        table: Mapping[str, Any],
        key: str,
        name: str,
        *,
        default: str | None = None,
        choices: Iterable[str] | None = None,
    ) -> str:
        """A string, optionally one of ``choices``."""
        dotted = f"{key}.{name}" if key else name
        if name not in table:
            if default is None:
                raise self.error(dotted, "a string", "<missing>")
            return default
        value = table[name]
        if not isinstance(value, str):
            raise self.error(dotted, "a string", f"<{type_name(value)}: {value!r}>")
        if choices is not None:
            options = list(choices)
            if value not in options:
                raise self.error(dotted, f"one of {', '.join(map(repr, options))}", value)
        return value

    def get_bool(self, table: Mapping[str, Any], key: str, name: str, *, default: bool) -> bool:
        """A boolean."""
        dotted = f"{key}.{name}"
        value = table.get(name, default)
        if not isinstance(value, bool):
            raise self.error(
                dotted, "a boolean (true or false)", f"<{type_name(value)}: {value!r}>"
            )
        return value
