"""Finding an existing run folder from a command-line argument (a name or a path)."""

from __future__ import annotations

from pathlib import Path

from snnas._run import RunDir
from snnas.errors import CheckpointError

__all__ = ["existing_run"]


def existing_run(runs_dir: Path, run: str) -> RunDir:
    """The run ``run``: a folder name under ``runs_dir`` or a path to a folder inside it.

    Commands write into the run they are given (``finetune/``, ``plan/``), so a folder
    outside the runs folder is refused rather than written to.
    """
    candidate = Path(run)
    if not candidate.is_absolute() and len(candidate.parts) == 1:
        candidate = runs_dir / candidate
    root = runs_dir.resolve()
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        raise CheckpointError(f"{run}: not a run inside the runs folder {runs_dir}")
    if resolved == root or not resolved.is_dir():
        raise CheckpointError(f"{run}: no such run in {runs_dir}")
    return RunDir(resolved)


def inside_runs(runs_dir: Path, path: str) -> Path:
    """``path`` (a name under ``runs_dir`` or a path), refused unless it lies inside the
    runs folder: nothing a user gives is written elsewhere."""
    candidate = Path(path)
    if not candidate.is_absolute() and len(candidate.parts) == 1:
        candidate = runs_dir / candidate
    root = runs_dir.resolve()
    resolved = candidate.resolve()
    if root not in resolved.parents:
        raise CheckpointError(f"--out {path}: must be a folder inside the runs folder {runs_dir}")
    return resolved
