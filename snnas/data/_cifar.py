"""CIFAR-10 / CIFAR-100 from the python-pickle batches a user has on disk.

The files are read in their real format (the ``cifar-10-batches-py`` / ``cifar-100-python``
folders of the official archives); nothing is downloaded. Augmentation follows the paper:
random crop with 4-pixel padding, horizontal flip and AutoAugment's CIFAR policy, on the
training split only (torchvision's transforms).

The batches are pickles, and unpickling an untrusted file runs whatever code it names. They
are read with :class:`_CifarUnpickler`, which admits only the few numpy and builtin globals a
real batch refers to; a file that names anything else is refused before any of it runs.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from snnas.errors import DatasetError, shorten

__all__ = ["CIFAR_LAYOUT", "CifarDataset", "find_cifar_folder", "read_cifar"]


@dataclass(frozen=True)
class _Layout:
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: str
    classes: int


CIFAR_LAYOUT = {
    "cifar10": _Layout(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "labels",
        10,
    ),
    "cifar100": _Layout("cifar-100-python", ("train",), ("test",), "fine_labels", 100),
}


def find_cifar_folder(name: str, data_dir: str | Path | None) -> Path:
    """The folder holding the batches: ``data_dir`` itself or ``data_dir/<archive folder>``.

    A missing folder or file is a :class:`DatasetError` naming the folder and every file
    that was looked for.
    """
    layout = CIFAR_LAYOUT[name]
    files = layout.train + layout.test
    if data_dir is None:
        raise DatasetError(
            f"{name} needs --data-dir: a folder holding {layout.folder}/ "
            f"({', '.join(files)}) from the official python archive"
        )
    root = Path(data_dir)
    for candidate in (root / layout.folder, root):
        if all((candidate / f).is_file() for f in files):
            return candidate
    folder = root / layout.folder if (root / layout.folder).is_dir() else root
    missing = [f for f in files if not (folder / f).is_file()]
    if not root.is_dir():
        raise DatasetError(f"{name}: folder {root} does not exist (looked for {layout.folder}/)")
    raise DatasetError(
        f"{name}: {folder} is incomplete: missing {', '.join(missing)} "
        f"(expected {', '.join(files)} from the official python archive)"
    )


class _Refused(pickle.UnpicklingError):
    """A pickle names a global that a CIFAR batch never needs."""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR batch refers to: numpy's array reconstruction (as pickled by
    numpy 1.x, ``numpy.core``, and 2.x, ``numpy._core``), the array and dtype types, and
    ``_codecs.encode`` (how Python 3 writes bytes in a protocol-2 pickle)."""
    import codecs

    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    frombuffer = core.numeric._frombuffer
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray}
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("_codecs", "encode")] = codecs.encode
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{module}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds dicts, lists, strings, numbers and numpy arrays, and refuses
    every other global (``os.system``, ``builtins.eval``, ...) before calling it."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if _CifarUnpickler._allowed is None:
            _CifarUnpickler._allowed = _allowed_globals()
        try:
            return _CifarUnpickler._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def _unpickle(data: bytes) -> Any:
    """Load a python-2-era pickle (bytes as latin-1 text) with :class:`_CifarUnpickler`."""
    return _CifarUnpickler(io.BytesIO(data), encoding="latin1").load()


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, list[int]]:
    where = shorten(str(path))
    try:
        entry = _unpickle(path.read_bytes())
    except _Refused as exc:
        raise DatasetError(
            f"{where}: not a CIFAR python batch: it would call {shorten(str(exc), 100)}, which "
            "a CIFAR batch never does (refused before running anything)"
        ) from None
    except Exception as exc:  # any unpickling problem means a corrupt file
        raise DatasetError(
            f"{where}: not a CIFAR python batch ({type(exc).__name__}: {shorten(str(exc), 100)})"
        ) from None
    if not isinstance(entry, dict) or "data" not in entry or label_key not in entry:
        raise DatasetError(f"{where}: not a CIFAR python batch (no 'data' and {label_key!r})")
    data, labels = entry["data"], entry[label_key]
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "ui":
        raise DatasetError(f"{where}: expected 'data' to be an integer array of pixels")
    if not isinstance(labels, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in labels
    ):
        raise DatasetError(f"{where}: expected {label_key!r} to be a list of integers")
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != data.shape[0]:
        raise DatasetError(
            f"{where}: expected 'data' of shape (N, 3072) and N labels, "
            f"found {shorten(str(data.shape), 100)} and {len(labels)} labels"
        )
    if data.size and (data.min() < 0 or data.max() > 255):
        raise DatasetError(f"{where}: expected pixels in 0..255")
    return data.astype(np.uint8, copy=False), labels


def read_cifar(name: str, data_dir: str | Path | None) -> dict[str, tuple[Tensor, Tensor]]:
    """``{"train": (images, labels), "test": (...)}`` as uint8 (N, 3, 32, 32) tensors."""
    layout = CIFAR_LAYOUT[name]
    folder = find_cifar_folder(name, data_dir)
    out = {}
    for split, files in (("train", layout.train), ("test", layout.test)):
        parts = [_read_batch(folder / f, layout.label_key) for f in files]
        data = np.concatenate([p[0] for p in parts])
        labels = [label for p in parts for label in p[1]]
        images = torch.from_numpy(data).view(-1, 3, 32, 32)
        target = torch.tensor(labels, dtype=torch.long)
        if target.numel() and (target.min() < 0 or target.max() >= layout.classes):
            raise DatasetError(f"{folder}: labels outside 0..{layout.classes - 1}")
        out[split] = (images, target)
    return out


class CifarDataset(Dataset[tuple[Tensor, Tensor]]):
    """uint8 images with a torchvision transform applied per sample."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Any) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.transform(self.images[i]), self.labels[i]


def cifar_transforms(mean: list[float], std: list[float], train: bool) -> Any:
    """The paper's training augmentation, or plain normalisation for evaluation."""
    from torchvision.transforms import v2

    steps: list[Any] = []
    if train:
        steps += [
            v2.RandomCrop(32, padding=4),
            v2.RandomHorizontalFlip(),
            v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10),
        ]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)
