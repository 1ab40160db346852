"""One terminal object for styled output: info and tables on stdout, problems on stderr.

Colour follows rich's detection (none when the stream is not a terminal, none with NO_COLOR);
``--quiet`` silences info, ``--verbose`` shows debug lines.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

__all__ = ["Terminal"]


class Terminal:
    """Styled output for the CLI."""

    def __init__(self, quiet: bool = False, verbose: bool = False) -> None:
        self.quiet = quiet
        self.verbose = verbose
        # Pipes and files get 120 columns rather than rich's 80 so tables are not truncated.
        width = None if sys.stdout.isatty() else 120
        self.out = Console(highlight=False, soft_wrap=False, width=width)
        self.err = Console(stderr=True, highlight=False)

    def info(self, message: str) -> None:
        """A normal line (hidden with --quiet)."""
        if not self.quiet:
            self.out.print(message)

    def debug(self, message: str) -> None:
        """A line shown only with --verbose."""
        if self.verbose:
            self.err.print(f"[dim]{message}[/dim]")

    def success(self, message: str) -> None:
        """A green line (hidden with --quiet)."""
        if not self.quiet:
            self.out.print(f"[green]{message}[/green]")

    def warn(self, message: str) -> None:
        """A yellow line on stderr."""
        self.err.print(f"[yellow]warning:[/yellow] {message}")

    def error(self, message: str) -> None:
        """A red line on stderr."""
        self.err.print(f"[bold red]error:[/bold red] {message}", markup=True, soft_wrap=True)

    def print(self, renderable: Any) -> None:
        """A rich renderable (table, panel) on stdout, shown even with --quiet."""
        self.out.print(renderable)

    def json(self, data: Any) -> None:
        """Machine-readable output: plain JSON on stdout, no styling."""
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        sys.stdout.flush()
