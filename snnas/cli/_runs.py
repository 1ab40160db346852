"""Run folders named on the command line: a name under ``--runs-dir``, or a path to one.

Everything goes through :func:`snnas._run.resolve_run`, the one place a run name becomes a
path, so nothing a user gives is written outside the runs folder.
"""

from __future__ import annotations

from pathlib import Path

from snnas._run import RunDir, resolve_run
from snnas.errors import CheckpointError, UsageError, shorten

__all__ = ["existing_run", "inside_runs"]


def inside_runs(runs_dir: Path, value: str, option: str = "--name") -> Path:
    """The folder ``value`` names: a run name, or a path whose parent is the runs folder."""
    candidate = Path(value)
    if len(candidate.parts) > 1 or candidate.is_absolute():
        try:
            parent = candidate.parent.resolve()
        except (OSError, RuntimeError):
            parent = None
        if parent != Path(runs_dir).resolve():
            raise UsageError(
                option, f"a folder directly inside the runs folder {shorten(str(runs_dir))}", value
            )
        value = candidate.name
    return resolve_run(runs_dir, value, option)


def existing_run(runs_dir: Path, run: str) -> RunDir:
    """The existing run ``run`` (commands that write into a run: finetune, export)."""
    path = inside_runs(runs_dir, run, "RUN")
    if not path.is_dir():
        raise CheckpointError(f"{shorten(run)}: no such run in {shorten(str(runs_dir))}")
    return RunDir(path)
