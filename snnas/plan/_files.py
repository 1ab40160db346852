"""The files of a plan folder: names, checksums, and reading them safely.

Every file a plan names is a plain file inside the folder whose SHA-256 matches the plan's;
``plan.json`` is read strictly; a safetensors file's header is checked against the file's
size before any tensor is read (a header may claim terabytes), and a weights file must hold
exactly the tensors, dtypes and shapes its device needs, all finite. Safetensors never runs
code.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from snnas.errors import PlanError, SnnasError, shorten

__all__ = [
    "MAX_HEADER_BYTES",
    "PLAN_FILE",
    "check_file",
    "checked_tensors",
    "read_plan_json",
    "read_safetensors",
    "safetensors_header",
    "sha256_bytes",
    "sha256_file",
]

PLAN_FILE = "plan.json"


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data`` (a file reference's checksum)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: A safetensors header larger than this is refused before it is read.
MAX_HEADER_BYTES = 1 << 24
_DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2,
                "I8": 1, "U8": 1, "BOOL": 1}  # fmt: skip


def safetensors_header(path: Path) -> dict[str, Any]:
    """The header of a safetensors file, checked against the file's size before any tensor
    is read: a header claiming more bytes than the file holds is refused."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            n = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
            if n < 2 or n > min(MAX_HEADER_BYTES, size - 8):
                raise PlanError(f"{path}: not a safetensors file (its header claims {n} bytes, "
                                f"the file holds {size})")  # fmt: skip
            header = json.loads(handle.read(n))
    except OSError as exc:
        raise PlanError(f"{path}: cannot be read ({exc.strerror})") from None
    except (ValueError, RecursionError):
        raise PlanError(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise PlanError(f"{path}: not a safetensors file (its header is not an object)")
    body = size - 8 - n
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            shape, (begin, end) = [int(s) for s in info["shape"]], info["data_offsets"]
            width = _DTYPE_BYTES[info["dtype"]]
            ok = all(s >= 0 for s in shape) and 0 <= begin <= end <= body
            ok = ok and end - begin == math.prod(shape) * width
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise PlanError(f"{path}: tensor {shorten(name, 60, quote=True)}: its header entry "
                            f"claims sizes the file ({size} bytes) does not hold")  # fmt: skip
        spans.append((begin, end))
    spans.sort()
    if any(a[1] > b[0] for a, b in itertools.pairwise(spans)):
        raise PlanError(f"{path}: not a safetensors file (tensors overlap)")
    return header


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """A safetensors file of the plan (its header checked first; never runs code)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    safetensors_header(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PlanError(f"{path}: not a readable safetensors file ({exc})") from None


def checked_tensors(
    path: Path, shapes: Mapping[str, tuple[int, ...]], what: str
) -> dict[str, Tensor]:
    """The tensors of ``path``: exactly ``shapes``' names, float32, those shapes, finite."""
    header = safetensors_header(path)
    names = set(header) - {"__metadata__"}
    if names != set(shapes):
        missing = sorted(set(shapes) - names)
        extra = sorted(names - set(shapes))
        raise PlanError(f"{path}: {what} do not match the blocks (missing {missing[:3]}, "
                        f"unexpected {[shorten(x, 40) for x in extra[:3]]})")  # fmt: skip
    for name, shape in shapes.items():
        info = header[name]
        if info["dtype"] != "F32" or tuple(info["shape"]) != shape:
            raise PlanError(f"{path}: {name} is {info['dtype']} {tuple(info['shape'])}, "
                            f"expected float32 {shape}")  # fmt: skip
    tensors = read_safetensors(path)
    for name, t in tensors.items():
        if not bool(torch.isfinite(t).all()):
            raise PlanError(f"{path}: {name} holds NaN or infinite values")
    return tensors


def read_plan_json(path: Path) -> Any:
    """``plan.json``, strictly (no key twice, no NaN or Infinity, a regular file)."""
    from snnas.space._space import load_json

    if not path.exists() and not path.is_symlink():
        raise PlanError(f"{shorten(str(path))}: missing (not a plan folder?)")
    if path.is_symlink():  # like every file a plan names: a plain file inside the folder
        raise PlanError(f"{shorten(str(path))}: is a symbolic link, not a plain file of the plan")
    try:
        return load_json(path, "<plan>", "plan file")
    except SnnasError as exc:
        raise PlanError(str(exc)) from None


def check_file(folder: Path, ref: Any, what: str) -> None:
    """``ref.file`` is a plain file inside ``folder`` whose SHA-256 is ``ref.sha256``."""
    path = folder / ref.file
    if path.is_symlink() or not path.is_file():
        raise PlanError(f"{path}: {what} is missing (or not a plain file)")
    digest = sha256_file(path)
    if digest != ref.sha256:
        raise PlanError(
            f"{path}: checksum mismatch (sha256 {digest[:16]}..., the plan says "
            f"{ref.sha256[:16]}...): the file was changed after export"
        )
