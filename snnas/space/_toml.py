"""Small helpers to read TOML files with errors that name the file, the key and the line."""

from __future__ import annotations

import difflib
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from snnas._numbers import Range, type_name
from snnas.errors import ConfigError, UsageError, shorten

__all__ = ["MAX_FILE_BYTES", "MAX_STRING", "TomlSource", "read_user_file", "type_name"]

#: Largest configuration, space, profile or policy file read (far above any real one).
MAX_FILE_BYTES = 4 * 1024 * 1024
#: Longest string setting (names, descriptions, sources).
MAX_STRING = 1000

_TOML_LINE = re.compile(r"at line (\d+)")
_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-.]+)\s*=")


def read_user_file(path: str | Path, key: str = "<file>", what: str = "file") -> str:
    """The text of a file a user names, refused (a :class:`ConfigError` naming it) when it is
    missing, a folder, not a regular file (a FIFO would block, a device never end), larger
    than :data:`MAX_FILE_BYTES` or not UTF-8. A UTF-8 byte-order mark is dropped."""
    p = Path(path)
    try:
        info = p.stat()
    except FileNotFoundError:
        raise ConfigError(p, key, f"an existing {what}", "<no such file>") from None
    except OSError as exc:  # a symlink loop, a permission problem on the way
        raise ConfigError(p, key, f"a readable {what}", f"<{exc.strerror or exc}>") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(p, key, f"a {what}", "<a folder>")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(p, key, f"a regular {what}", "<a device, pipe or socket>")
    if info.st_size > MAX_FILE_BYTES:
        raise ConfigError(
            p, key, f"a {what} of at most {MAX_FILE_BYTES:,} bytes", f"<{info.st_size:,} bytes>"
        )
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(p, key, f"a readable {what}", f"<{exc.strerror or exc}>") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            p, key, "UTF-8 text", f"<a byte that is not UTF-8 at offset {exc.start}>", line=line
        ) from None


class TomlSource:
    """A parsed TOML document that remembers its path and text to report precise errors.

    ``usage=True`` marks a document made from the command line (``--set``): its errors are
    :class:`UsageError` (exit code 2), named by the option, ``path``.
    """

    def __init__(self, text: str, path: str | Path | None = None, *, usage: bool = False) -> None:
        self.path = None if path is None else str(path)
        self.usage = usage
        self.text = text.removeprefix("\ufeff")  # a byte-order mark is not a statement
        try:
            self.data: dict[str, Any] = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            match = _TOML_LINE.search(str(exc))
            line = int(match.group(1)) if match else None
            raise self._error("<document>", "valid TOML", f"<{exc}>", line) from None
        except RecursionError:
            nested = "<arrays or tables nested too deeply>"
            raise self._error("<document>", "valid TOML", nested, None) from None
        except ValueError:  # an integer of more than 4,300 digits
            huge = "<an integer too long to read (over 4,300 digits)>"
            raise self._error("<document>", "valid TOML", huge, None) from None

    @classmethod
    def from_path(cls, path: str | Path) -> TomlSource:
        """Read and parse ``path``; see :func:`read_user_file` for what is refused."""
        return cls(read_user_file(path, what="TOML file"), path)

    def _error(self, key: str, expected: str, found: object, line: int | None) -> ConfigError:
        if self.usage:
            return UsageError(self.path or "--set", expected, found, key=key)
        return ConfigError(self.path, key, expected, found, line=line)

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
        return self._error(key, expected, found, None if self.usage else self.line_of(key))

    @staticmethod
    def found(value: object) -> str:
        """What a message says was found, in a user's words and bounded: ``<a string: 'x'>``."""
        return f"<{type_name(value)}: {shorten(value, quote=True)}>"

    def check_keys(self, table: Mapping[str, Any], prefix: str, allowed: Iterable[str]) -> None:
        """Refuse keys of ``table`` that are not in ``allowed``, suggesting the closest one."""
        allowed = list(allowed)
        for name in table:
            if name not in allowed:
                key = f"{prefix}.{name}" if prefix else name
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.error(
                    key,
                    f"one of {', '.join(sorted(allowed))}{hint}",
                    f"<unknown key {shorten(name, 100, quote=True)}>",
                )

    def table(self, parent: Mapping[str, Any], name: str, prefix: str = "") -> dict[str, Any]:
        """The sub-table ``name`` of ``parent`` ({} when absent); a non-table is an error."""
        key = f"{prefix}.{name}" if prefix else name
        value = parent.get(name, {})
        if not isinstance(value, dict):
            raise self.error(key, "a table", self.found(value))
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
        valid = Range(minimum, maximum, integer=True)
        value = self._get(table, key, name, default, valid.describe())
        problem = valid.problem(value)
        if problem is not None:
            found = value if type(value) is int else self.found(value)
            raise self.error(self._dotted(key, name), problem, found)
        return int(value)

    def get_number(
        self,
        table: Mapping[str, Any],
        key: str,
        name: str,
        *,
        default: float | None = None,
        valid: Range | None = None,
    ) -> float:
        """A finite float or integer (booleans, NaN and infinities refused) in ``valid``."""
        valid = valid or Range()
        value = self._get(table, key, name, default, valid.describe())
        problem = valid.problem(value)
        if problem is not None:
            raise self.error(self._dotted(key, name), problem, self._found_number(value))
        return float(value)

    def get_str(
        self,
        table: Mapping[str, Any],
        key: str,
        name: str,
        *,
        default: str | None = None,
        choices: Iterable[str] | None = None,
        max_length: int = MAX_STRING,
        multiline: bool = False,
    ) -> str:
        """A string, optionally one of ``choices``; at most ``max_length`` characters and no
        control characters (newlines and tabs too, unless ``multiline``)."""
        dotted = self._dotted(key, name)
        value = self._get(table, key, name, default, "a string")
        if not isinstance(value, str):
            raise self.error(dotted, "a string", self.found(value))
        if choices is not None:
            options = list(choices)
            if value not in options:
                raise self.error(dotted, f"one of {', '.join(map(repr, options))}", value)
        if len(value) > max_length:
            raise self.error(
                dotted, f"at most {max_length:,} characters", f"<{len(value):,} characters>"
            )
        allowed = "\n\t" if multiline else ""
        if not all(ch.isprintable() or ch in allowed for ch in value):
            raise self.error(dotted, "text without control characters", value)
        return value

    def get_bool(self, table: Mapping[str, Any], key: str, name: str, *, default: bool) -> bool:
        """A boolean."""
        value = table.get(name, default)
        if not isinstance(value, bool):
            raise self.error(
                self._dotted(key, name), "a boolean (true or false)", self.found(value)
            )
        return value

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _dotted(key: str, name: str) -> str:
        return f"{key}.{name}" if key else name

    def _get(
        self, table: Mapping[str, Any], key: str, name: str, default: Any, expected: str
    ) -> Any:
        if name in table:
            return table[name]
        if default is None:
            raise self.error(self._dotted(key, name), expected, "<missing>")
        return default

    def _found_number(self, value: object) -> object:
        """A number as itself; anything else as ``<a string: '4'>``."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        return self.found(value)
