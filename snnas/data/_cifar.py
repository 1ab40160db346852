"""CIFAR-10 / CIFAR-100 from the python-pickle batches a user has on disk.

The files are read in their real format (the ``cifar-10-batches-py`` / ``cifar-100-python``
folders of the official archives); nothing is downloaded. Augmentation follows the paper:
random crop with 4-pixel padding, horizontal flip and AutoAugment's CIFAR policy, on the
training split only (torchvision's transforms).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from snnas.errors import DatasetError

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


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, list[int]]:
    try:
        with path.open("rb") as handle:
            entry: dict[str, Any] = pickle.load(handle, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = list(entry[label_key])
    except Exception as exc:  # any unpickling or key problem means a corrupt file
        raise DatasetError(
            f"{path}: not a CIFAR python batch ({type(exc).__name__}: {exc})"
        ) from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != data.shape[0]:
        raise DatasetError(
            f"{path}: expected 'data' of shape (N, 3072) and N labels, "
            f"found {data.shape} and {len(labels)} labels"
        )
    return data, labels


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
