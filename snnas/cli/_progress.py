"""Rich progress bars for long work, silent when quiet or not on a terminal (CI, pipes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from snnas._run import Progress
from snnas.cli._terminal import Terminal

__all__ = ["progress_bars"]


@contextmanager
def progress_bars(terminal: Terminal, title: str) -> Iterator[Progress]:
    """Yield a ``progress(phase, done, total, info)`` callback that drives rich bars: one
    per phase (``epoch``, ``train``, ``eval``, ...), with the latest figures beside them."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    enabled = not terminal.quiet and terminal.out.is_terminal
    bars = Progress(
        # markup=False: descriptions and figures hold user text (strategy names).
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}", markup=False),
        console=terminal.out,
        disable=not enabled,
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int, info: dict[str, Any]) -> None:
        if phase not in tasks:
            tasks[phase] = bars.add_task(f"{title} {phase}", total=total, info="")
        text = "  ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in info.items()
            if k not in ("time_s", "images_per_s")
        )
        if done <= 1 and phase != "epoch":
            bars.reset(tasks[phase], total=total)
        bars.update(tasks[phase], completed=done, total=total, info=text)

    with bars:
        yield update
