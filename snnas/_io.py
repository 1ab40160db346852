"""Atomic file writes and JSON formatting shared by runs, policies and plans."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from snnas.errors import SnnasError, shorten

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "dumps_json"]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The bytes go to a temporary file in the same folder (created exclusively, so never
    through an existing link), are flushed to disk, and the file is renamed over ``path``
    (an atomic operation on POSIX file systems).

    A ``path`` that is a symbolic link, or anything but a regular file, is refused: the rename
    would replace the link itself rather than write through it, but a link in a run folder
    was not made by the run, and replacing it silently would hide that.
    """
    target = Path(path)
    if target.is_symlink():
        raise SnnasError(
            f"{shorten(str(target))}: is a symbolic link; refusing to replace it (a run writes "
            "only regular files it created; remove the link)"
        )
    if target.exists() and not target.is_file():
        raise SnnasError(
            f"{shorten(str(target))}: is a folder or a special file, not a file this run wrote"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(data: Any) -> str:
    """JSON with two-space indentation where arrays of scalars stay on one line.

    NaN and infinities (a diverged loss) are written as ``null``: JSON has no such numbers.
    """

    def scalar(value: Any) -> str:
        if isinstance(value, float) and not math.isfinite(value):
            return "null"
        return json.dumps(value)

    def render(value: Any, depth: int) -> str:
        pad, inner = "  " * depth, "  " * (depth + 1)
        if isinstance(value, dict):
            if not value:
                return "{}"
            items = [
                f"{inner}{json.dumps(str(k))}: {render(v, depth + 1)}" for k, v in value.items()
            ]
            return "{\n" + ",\n".join(items) + f"\n{pad}}}"
        if isinstance(value, list | tuple):
            if all(not isinstance(v, dict | list | tuple) for v in value):
                return "[" + ", ".join(scalar(v) for v in value) + "]"
            if (
                all(
                    isinstance(v, list | tuple)
                    and all(not isinstance(x, dict | list | tuple) for x in v)
                    for v in value
                )
                and len(value) <= 64
            ):
                return "[" + ", ".join(render(v, depth + 1) for v in value) + "]"
            items = [f"{inner}{render(v, depth + 1)}" for v in value]
            return "[\n" + ",\n".join(items) + f"\n{pad}]"
        return scalar(value)

    return render(data, 0) + "\n"


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as formatted JSON, atomically."""
    atomic_write_text(path, dumps_json(data))
