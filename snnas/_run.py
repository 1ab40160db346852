"""Run folders (``runs/<name>/``): atomic JSON, JSON-lines and checkpoint files.

A checkpoint is written to a temporary file and renamed over the old one, so a run killed at
any moment leaves either the previous checkpoint or the new one, never a torn file. Every
checkpoint carries the configuration that made it; loading refuses a corrupt file or one made
by another configuration, saying why.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from snnas._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from snnas.errors import CheckpointError

__all__ = ["CHECKPOINT_FORMAT", "Progress", "RunDir"]

CHECKPOINT_FORMAT = "snnas-checkpoint-v1"

#: ``progress(phase, done, total, info)``: how long work reports its steps (the CLI draws
#: rich bars from it; tests use it to interrupt runs).
Progress = Callable[[str, int, int, dict[str, Any]], None]


class RunDir:
    """One run's folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def create(self) -> None:
        """Make the folder (and its parents)."""
        self.path.mkdir(parents=True, exist_ok=True)

    def write_json(self, name: str, data: Any) -> None:
        """Write ``name`` as formatted JSON, atomically."""
        atomic_write_json(self.path / name, data)

    def read_json(self, name: str) -> Any:
        """Read ``name``; a missing or corrupt file is a :class:`CheckpointError`."""
        path = self.path / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc})") from None

    def write_jsonl(self, name: str, records: Iterable[Any]) -> None:
        """Write ``records`` as JSON lines, atomically (the whole file is rewritten)."""
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        atomic_write_text(self.path / name, text)

    def read_jsonl(self, name: str) -> list[Any]:
        """Records of a JSON-lines file ([] when it does not exist)."""
        path = self.path / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> None:
        """Save ``state`` (tensors, numbers, strings, lists and dicts) atomically."""
        import torch

        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
        atomic_write_bytes(self.path / name, buffer.getvalue())

    def has_checkpoint(self, name: str) -> bool:
        """Whether the checkpoint file exists."""
        return (self.path / name).is_file()

    def load_checkpoint(self, name: str) -> dict[str, Any]:
        """Load a checkpoint written by :meth:`save_checkpoint`.

        Only tensors and plain containers are unpickled (``weights_only``); anything else,
        a truncated file or a file of another format is refused with the reason.
        """
        import pickle

        import torch

        path = self.path / name
        if not path.is_file():
            raise CheckpointError(f"{path}: no checkpoint to resume from")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path}: corrupt checkpoint ({first})") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(
                f"{path}: not an snnas checkpoint "
                f"(format {found!r}, expected {CHECKPOINT_FORMAT!r})"
            )
        return state
