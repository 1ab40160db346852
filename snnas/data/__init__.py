"""Datasets: the bundled digits (default, offline) and CIFAR-10/100 from a user's folder.

Every dataset has a train, a validation and a test split. The validation split is the
controller's reward split; the test split is only for final reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from snnas.data._cifar import CIFAR_LAYOUT, CifarDataset, cifar_transforms, read_cifar
from snnas.data._digits import DIGITS_SPLIT, load_digits_tensors
from snnas.data._loader import TensorLoader
from snnas.errors import DatasetError

__all__ = ["DATASETS", "DIGITS_SPLIT", "Batches", "DataSplits", "TensorLoader", "load_dataset"]

DATASETS = ("digits", "cifar10", "cifar100")


class Batches(Protocol):
    """What :meth:`DataSplits.loader` returns: batches of ``(images, labels)`` with a length."""

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]: ...

    def __len__(self) -> int: ...


#: Fraction of the CIFAR training set held out for validation (the paper: 10%).
VAL_FRACTION = 0.1


@dataclass
class DataSplits:
    """The three splits of a dataset and how to batch them."""

    name: str
    num_classes: int
    input_size: int
    input_channels: int
    tensors: dict[str, tuple[Tensor, Tensor]]  # split -> (images, labels)
    transforms: dict[str, Any] | None = None  # CIFAR: split -> per-sample transform

    def size(self, split: str) -> int:
        """Number of examples in ``split``."""
        return len(self.tensors[split][1])

    def loader(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        augment: bool = False,
        workers: int = 0,
        pin_memory: bool = False,
    ) -> Batches:
        """Batches of ``split``. ``augment`` applies the training augmentation."""
        images, labels = self.tensors[split]
        if self.transforms is None:
            shift = max(1, self.input_size // 8) if augment else 0
            return TensorLoader(images, labels, batch_size, shuffle=shuffle, seed=seed, shift=shift)
        transform = self.transforms["train" if augment else "eval"]
        generator = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(
            CifarDataset(images, labels, transform),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=workers,
            pin_memory=pin_memory,
            persistent_workers=workers > 0,
        )


def load_dataset(
    name: str, *, input_size: int, input_channels: int, data_dir: str | Path | None = None
) -> DataSplits:
    """Load ``name`` ("digits", "cifar10" or "cifar100") with fixed, seeded splits."""
    if name == "digits":
        tensors = load_digits_tensors(input_size, input_channels)
        return DataSplits(name, 10, input_size, input_channels, tensors)
    if name not in CIFAR_LAYOUT:
        raise DatasetError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    if input_size != 32 or input_channels != 3:
        raise DatasetError(
            f"{name} images are 3x32x32 but the space expects {input_channels}x{input_size}"
            f"x{input_size}: set network.input_size = 32 and input_channels = 3"
        )
    raw = read_cifar(name, data_dir)
    images, labels = raw["train"]
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    n_val = round(VAL_FRACTION * len(labels))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    tensors = {
        "train": (images[train_idx], labels[train_idx]),
        "val": (images[val_idx], labels[val_idx]),
        "test": raw["test"],
    }
    train_float = tensors["train"][0].float() / 255.0
    mean = train_float.mean(dim=(0, 2, 3)).tolist()
    std = train_float.std(dim=(0, 2, 3)).tolist()
    transforms = {
        "train": cifar_transforms(mean, std, train=True),
        "eval": cifar_transforms(mean, std, train=False),
    }
    return DataSplits(name, CIFAR_LAYOUT[name].classes, 32, 3, tensors, transforms)
