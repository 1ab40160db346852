"""One terminal object for styled output: info and tables on stdout, problems on stderr.

Colour follows rich's detection (none when the stream is not a terminal, none with NO_COLOR);
``--quiet`` silences info, ``--verbose`` shows debug lines.

User text is never markup: the consoles are made with ``markup=False`` and ``emoji=False``,
so a space named ``x[/y]`` or a label ``:smile:`` prints as written, in messages, tables and
titles alike. Styling is added with :func:`styled` (rich ``Text`` objects), never by
formatting ``[bold]`` into a string. Control characters in any printed string (escape
sequences, NUL, bidirectional overrides) are shown as escapes, so a file name cannot drive
the terminal.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from snnas.errors import shorten

__all__ = ["MAX_ERROR", "Terminal", "format_count", "json_safe", "styled", "visible"]

#: Most characters of an error line (each echoed value is bounded further by its message).
MAX_ERROR = 1000


def visible(text: str) -> str:
    """``text`` with control and invisible formatting characters written as escapes
    (newlines and tabs are kept: a table cell or a description may span lines)."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch in "\n\t" else ch.encode("unicode_escape").decode()
        for ch in text
    )


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line made of plain strings and ``(text, style)`` pairs, none of it read as markup.

    ``styled((space.name, "bold"), "  ", description)`` prints the name in bold and the
    description as written, whatever brackets either contains.
    """
    out = Text()
    for part in parts:
        if isinstance(part, tuple):
            out.append(visible(part[0]), style=part[1])
        else:
            out.append(visible(part))
    return out


def format_count(n: int) -> str:
    """A count that may be astronomically large (a space's size) in 3 significant digits."""
    if n < 10**300:
        return f"{float(n):.3g}"
    exponent = math.log10(n)  # exact enough for big integers, never overflows
    return f"{10 ** (exponent % 1):.2f}e+{int(exponent)}"


def json_safe(data: Any) -> Any:
    """``data`` with every NaN or infinity replaced by ``None`` (JSON has no such numbers)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [json_safe(v) for v in data]
    return data


class _Console(Console):
    """A console that never reads markup or emoji codes, and shows control characters in
    strings as escapes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(visible(text), **kwargs)


class Terminal:
    """Styled output for the CLI."""

    def __init__(self, quiet: bool = False, verbose: bool = False) -> None:
        self.quiet = quiet
        self.verbose = verbose
        # Pipes and files get 120 columns rather than rich's 80 so tables are not truncated.
        width = None if sys.stdout.isatty() else 120
        self.out = _Console(soft_wrap=False, width=width)
        self.err = _Console(stderr=True)

    @staticmethod
    def _text(message: str | Text) -> Text:
        return message if isinstance(message, Text) else Text(visible(message))

    def info(self, message: str | Text) -> None:
        """A normal line (hidden with --quiet)."""
        if not self.quiet:
            self.out.print(self._text(message))

    def debug(self, message: str | Text) -> None:
        """A line shown only with --verbose."""
        if self.verbose:
            self.err.print(self._text(message), style="dim")

    def success(self, message: str | Text) -> None:
        """A green line (hidden with --quiet)."""
        if not self.quiet:
            self.out.print(self._text(message), style="green")

    def warn(self, message: str | Text) -> None:
        """A yellow line on stderr."""
        self.err.print(Text.assemble(("warning:", "yellow"), " ", self._text(message)))

    def error(self, message: str) -> None:
        """A red line on stderr: one line whatever the message holds, at most ``MAX_ERROR``
        characters."""
        line = shorten(" ".join(str(message).split()), MAX_ERROR)
        self.err.print(Text.assemble(("error:", "bold red"), " ", line), soft_wrap=True)

    def print(self, renderable: Any) -> None:
        """A rich renderable (table, panel) on stdout, shown even with --quiet."""
        self.out.print(renderable)

    def json(self, data: Any) -> None:
        """Machine-readable output: plain JSON on stdout, no styling, never NaN."""
        sys.stdout.write(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()


class TerminalLog(logging.Handler):
    """Routes the library's ``snnas`` log records to the terminal: debug lines with
    ``--verbose``, warnings always."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.terminal: Terminal | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.terminal is None:
            return
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.terminal.warn(message)
        else:
            self.terminal.debug(message)
