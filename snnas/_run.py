"""Run folders (``runs/<name>/``): atomic JSON, JSON-lines and checkpoint files.

A checkpoint is written to a temporary file and renamed over the old one, so a run killed at
any moment leaves either the previous checkpoint or the new one, never a torn file. Every
checkpoint carries the configuration that made it; loading refuses a corrupt file or one made
by another configuration, saying why.

Everything a user names ends up inside the runs folder: :func:`resolve_run` is the one place
a run name becomes a path, and checkpoints are read only from regular files (never a link,
a folder or a FIFO). Loading a checkpoint checks its contents before use
(:func:`check_state`, :func:`load_module_state`, :func:`load_optimizer_state`), so a
checkpoint with the right format tag but wrong contents is a :class:`CheckpointError`, not a
``KeyError`` or a shape mismatch deep inside torch.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snnas._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from snnas._numbers import type_name
from snnas.errors import CheckpointError, UsageError, shorten

if TYPE_CHECKING:
    import torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "MAX_RUN_NAME",
    "Progress",
    "RunDir",
    "check_state",
    "explicit_folder",
    "load_module_state",
    "load_optimizer_state",
    "resolve_run",
]

CHECKPOINT_FORMAT = "snnas-checkpoint-v1"
#: Longest run name (a folder name; file systems allow 255 bytes).
MAX_RUN_NAME = 128

_LOG = logging.getLogger(__name__)
_TYPE_WORDS: dict[type, str] = {
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}

#: ``progress(phase, done, total, info)``: how long work reports its steps (the CLI draws
#: rich bars from it; tests use it to interrupt runs).
Progress = Callable[[str, int, int, dict[str, Any]], None]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (a run writes null for it)")


def resolve_run(runs_dir: str | Path, name: str, option: str = "--name") -> Path:
    """The folder of run ``name`` under ``runs_dir``, refusing any name that could land
    elsewhere: empty, ``.``/``..`` or any name starting with a dot, a path separator, an
    absolute path, control characters (NUL, newlines, escapes), more than
    :data:`MAX_RUN_NAME` characters or 255 bytes. The resolved folder (following any link
    already there) must stay inside ``runs_dir``.

    Every run name goes through here, those a user gives (``--name``) and those made from a
    space's name. A refusal is a :class:`UsageError` naming ``option``.
    """
    expected = (
        f"a folder name of 1 to {MAX_RUN_NAME} characters, without '/', '\\\\', control "
        "characters or a leading '.'"
    )
    if (
        not isinstance(name, str)
        or not name
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or os.sep in name
        or (os.altsep is not None and os.altsep in name)
        or not name.isprintable()
        or len(name) > MAX_RUN_NAME
        or len(name.encode("utf-8", "surrogatepass")) > 255
        or Path(name).is_absolute()
    ):
        raise UsageError(option, expected, name)
    root = Path(runs_dir)
    path = root / name
    inside = root.resolve()
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise UsageError(option, f"a run folder inside {shorten(str(root))}", name) from None
    if resolved.parent != inside:
        raise UsageError(
            option,
            f"a run folder inside {shorten(str(root))} (this one is a link to "
            f"{shorten(str(resolved))})",
            name,
        )
    return path


def explicit_folder(value: str | Path, option: str = "--out") -> Path:
    """A folder a user names explicitly by its path (``--out``, ``out=``): honoured wherever
    it is (only names, such as ``--name``, stay inside the runs folder; :func:`resolve_run`).

    What is written there is written atomically and never through a link (the writers'
    business); refused here, as a :class:`UsageError` naming ``option``: an empty path,
    ``.`` or ``..`` (a folder that holds the work itself), control characters (NUL,
    newlines, escapes), a component of more than 255 bytes or a path of more than 4,096.
    """
    text = str(value)
    expected = (
        "a folder path without control characters, at most 255 bytes per component and "
        "4,096 in all (not '.' or '..')"
    )
    encoded = text.encode("utf-8", "surrogatepass")
    path = Path(text)
    if (
        not text
        or not text.isprintable()
        or len(encoded) > 4096
        or any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in path.parts)
        or path.name in ("", ".", "..")
    ):
        raise UsageError(option, expected, text)
    return path


def check_state(
    path: str | Path, state: Mapping[str, Any], schema: Mapping[str, type | tuple[type, ...]]
) -> None:
    """Refuse a loaded checkpoint whose ``schema`` keys are missing or of the wrong type.

    ``schema`` maps each key the run needs to its type(s): ``{"epoch": int, "model": dict,
    "metrics": list}``. ``bool`` never passes for ``int``; a float must be finite.
    """
    for key, types in schema.items():
        if key not in state:
            raise CheckpointError(f"{shorten(str(path))}: corrupt checkpoint (no {key!r} entry)")
        value = state[key]
        wanted = types if isinstance(types, tuple) else (types,)
        ok = isinstance(value, wanted) and not (isinstance(value, bool) and bool not in wanted)
        if ok and isinstance(value, float) and not math.isfinite(value):
            ok = False
        if not ok:
            if isinstance(value, float) and float in wanted:  # NaN or an infinity
                problem = f"should be a finite number, found {value}"
            else:
                names = " or ".join(_TYPE_WORDS.get(t, t.__name__) for t in wanted)
                problem = f"should be {names}, found {type_name(value, 'json')}"
            raise CheckpointError(f"{shorten(str(path))}: corrupt checkpoint ({key!r} {problem})")


def load_module_state(
    module: torch.nn.Module, state: object, path: str | Path, what: str = "model"
) -> None:
    """Load ``state`` into ``module`` after checking it holds exactly the module's tensors,
    with the same shapes and finite values; a mismatch is a :class:`CheckpointError` naming
    the first difference (a checkpoint of another network, a hand-edited file)."""
    import torch

    where = shorten(str(path))
    own = module.state_dict()
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where}: corrupt checkpoint ({what} is {type_name(state, 'json')})")
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        first = (
            f"missing {shorten(missing[0], 100, quote=True)}"
            if missing
            else f"unexpected {shorten(extra[0], 100, quote=True)}"
        )
        raise CheckpointError(
            f"{where}: the checkpoint's {what} does not match this network "
            f"({len(missing)} missing and {len(extra)} unexpected tensors; {first})"
        )
    for key, tensor in own.items():
        saved = state[key]
        if not isinstance(saved, torch.Tensor):
            raise CheckpointError(
                f"{where}: corrupt checkpoint ({what} entry {key!r} is {type_name(saved, 'json')})"
            )
        if saved.shape != tensor.shape or saved.dtype != tensor.dtype:
            raise CheckpointError(
                f"{where}: the checkpoint's {what} does not match this network ({key}: "
                f"{tuple(saved.shape)} {saved.dtype} saved, {tuple(tensor.shape)} "
                f"{tensor.dtype} expected)"
            )
        if saved.is_floating_point() and not bool(torch.isfinite(saved).all()):
            raise CheckpointError(
                f"{where}: corrupt checkpoint ({what} entry {key!r} holds NaN or infinite values)"
            )
    module.load_state_dict(state)


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, state: object, path: str | Path, what: str = "optimizer"
) -> None:
    """Load an optimizer's state, refusing one that does not fit its parameters."""
    where = shorten(str(path))
    if not isinstance(state, Mapping) or not isinstance(state.get("param_groups"), list):
        raise CheckpointError(f"{where}: corrupt checkpoint ({what} state is not one)")
    try:
        optimizer.load_state_dict(state)  # type: ignore[arg-type]
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError):
        raise CheckpointError(
            f"{where}: the checkpoint's {what} state does not match this network"
        ) from None


class RunDir:
    """One run's folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def check_own(self, names: Iterable[str], kind: str, option: str = "--name") -> None:
        """Refuse a folder that already holds anything but ``names`` (what a ``kind`` writes):
        a run is never written into a folder of another kind (a search run, a plan)."""
        if not self.exists():
            return
        known = set(names)
        others = sorted(p.name for p in self.path.iterdir() if p.name not in known)
        others = [n for n in others if not n.startswith(".")]  # atomic writes' leftovers
        if others:
            raise CheckpointError(
                f"{shorten(str(self.path))}: not a {kind} folder (it holds "
                f"{shorten(', '.join(others[:5]), 200)}); choose another {option}"
            )

    def exists(self) -> bool:
        """Whether the folder exists (a link to a folder does not count)."""
        return self.path.is_dir() and not self.path.is_symlink()

    def create(self) -> None:
        """Make the folder (and its parents); a file or a link in its place is refused."""
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_dir()):
            raise CheckpointError(
                f"{shorten(str(self.path))}: is not a run folder (a file or a link is there)"
            )
        self.path.mkdir(parents=True, exist_ok=True)

    def write_json(self, name: str, data: Any) -> None:
        """Write ``name`` as formatted JSON, atomically."""
        atomic_write_json(self.path / name, data)

    def write_text(self, name: str, text: str) -> None:
        """Write ``name`` atomically (a temporary file renamed over it: never in place, never
        through a symbolic link, which is refused)."""
        atomic_write_text(self.path / name, text)

    def read_json(self, name: str) -> Any:
        """Read ``name``; a missing or corrupt file is a :class:`CheckpointError`."""
        path = self.path / name
        where = shorten(str(path))
        try:
            return json.loads(self._read(path).decode("utf-8"), parse_constant=_no_constant)
        except FileNotFoundError:
            raise CheckpointError(f"{where}: missing") from None
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{where}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        except ValueError as exc:  # NaN or Infinity: a run writes neither (dumps_json)
            raise CheckpointError(f"{where}: {exc}") from None
        except (UnicodeDecodeError, RecursionError):
            raise CheckpointError(f"{where}: not valid JSON") from None

    def write_jsonl(self, name: str, records: Iterable[Any]) -> None:
        """Write ``records`` as JSON lines, atomically (the whole file is rewritten)."""
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        atomic_write_text(self.path / name, text)

    def read_jsonl(
        self, name: str, keys: Mapping[str, type | tuple[type, ...]] | None = None
    ) -> list[Any]:
        """Records of a JSON-lines file ([] when it does not exist).

        A last line cut short by a crash (no newline at its end, not valid JSON) is dropped,
        and said at debug level: that is what a killed writer leaves. Any other bad line is
        a :class:`CheckpointError` naming the file and the line. With ``keys``, every record
        must be an object holding those keys with those types (see :func:`check_state`).
        """
        path = self.path / name
        try:
            raw = self._read(path)
        except FileNotFoundError:
            return []
        where = shorten(str(path))
        lines = raw.split(b"\n")
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                if number == len(lines):  # the last line, with no newline after it
                    _LOG.debug("%s:%d: dropped a torn last line (a crash cut it)", where, number)
                    break
                raise CheckpointError(f"{where}:{number}: not a JSON record") from None
            if keys is not None:
                if not isinstance(records[-1], dict):
                    raise CheckpointError(f"{where}:{number}: not a JSON object")
                check_state(f"{where}:{number}", records[-1], keys)
        return records

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> None:
        """Save ``state`` (tensors, numbers, strings, lists and dicts) atomically."""
        import torch

        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
        atomic_write_bytes(self.path / name, buffer.getvalue())

    def check_resume(
        self, name: str, resume: bool, kind: str = "run", elsewhere: str = "use another --name"
    ) -> None:
        """Refuse ``--resume`` where there is nothing to resume (no folder, no checkpoint
        ``name``), and a start without it where a checkpoint is already there: a run never
        starts over silently, nor on top of another. ``elsewhere`` is the advice for starting
        anew that is true of the command (a command without ``--name`` says what else)."""
        where = shorten(str(self.path))
        if resume and not self.exists():
            raise CheckpointError(
                f"{where}: no {kind} to resume (no such folder); drop --resume to start it"
            )
        if resume and not self.has_checkpoint(name):
            raise CheckpointError(
                f"{where}: no checkpoint ({name}) to resume from; drop --resume to start over "
                f"in this folder, or {elsewhere}"
            )
        if not resume and self.has_checkpoint(name):
            raise CheckpointError(
                f"{where} already holds a {kind}: pass --resume to continue it, or {elsewhere}"
            )

    def has_checkpoint(self, name: str) -> bool:
        """Whether anything is there under the checkpoint's name: a file, but also a folder,
        a link or a FIFO, which :meth:`load_checkpoint` then refuses with the reason (a run
        never starts over on top of something it cannot read)."""
        return os.path.lexists(self.path / name)

    def load_checkpoint(self, name: str) -> dict[str, Any]:
        """Load a checkpoint written by :meth:`save_checkpoint`.

        Only tensors and plain containers are unpickled (``weights_only``); anything else,
        a truncated file, a file of another format, a link, a folder or an unreadable file is
        refused with the reason.
        """
        import pickle
        import struct

        import torch

        path = self.path / name
        where = shorten(str(path))
        try:
            data = self._read(path)
        except FileNotFoundError:
            raise CheckpointError(f"{where}: no checkpoint to resume from") from None
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except (
            RuntimeError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            ImportError,
            IndexError,
            KeyError,
            MemoryError,
            pickle.UnpicklingError,
            struct.error,  # a file of a few bytes: the legacy format's header cut short
        ):
            # torch's own message advises turning the weights-only guard off, which would
            # run the file's code: never shown.
            raise CheckpointError(
                f"{where}: corrupt checkpoint (truncated, not a checkpoint, or holding "
                "objects other than tensors, numbers, strings, lists and dicts)"
            ) from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type_name(state, "json")
            raise CheckpointError(
                f"{where}: not an snnas checkpoint "
                f"(format {shorten(found, 100, quote=True)}, expected {CHECKPOINT_FORMAT!r})"
            )
        return state

    @staticmethod
    def _read(path: Path) -> bytes:
        """The bytes of a regular file of the run; a link, a folder, a FIFO, a device or an
        unreadable file is a :class:`CheckpointError` saying which (``FileNotFoundError``
        when nothing is there)."""
        where = shorten(str(path))
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise CheckpointError(f"{where}: unreadable ({exc.strerror or exc})") from None
        if stat.S_ISLNK(info.st_mode):
            raise CheckpointError(
                f"{where}: is a symbolic link, not a file this run wrote; remove it or use "
                "another --name"
            )
        if stat.S_ISDIR(info.st_mode):
            raise CheckpointError(f"{where}: is a folder, not a file this run wrote")
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{where}: is a pipe, socket or device, not a file")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"{where}: unreadable ({exc.strerror or exc})") from None
