"""How the API reports progress: nothing by default, a ``progress`` callback, or rich bars
on stderr with ``verbose=True``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from snnas._run import Progress

__all__ = ["reporting"]


@contextmanager
def reporting(progress: Progress | None, verbose: bool, title: str) -> Iterator[Progress | None]:
    """Yield the callback long work reports to: ``progress`` when given, rich bars (one per
    phase, on stderr) when ``verbose``, else ``None`` (silent)."""
    if progress is not None or not verbose:
        yield progress
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bars

    bars = Bars(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}", markup=False),
        console=Console(stderr=True, markup=False, emoji=False),
    )
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int, info: dict[str, Any]) -> None:
        if phase not in tasks:
            tasks[phase] = bars.add_task(f"{title} {phase}", total=total, info="")
        elif done <= 1 and phase != "epoch":
            bars.reset(tasks[phase], total=total)
        text = "  ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in info.items()
            if k not in ("time_s", "images_per_s")
        )
        bars.update(tasks[phase], completed=done, total=total, info=text)

    with bars:
        yield update
