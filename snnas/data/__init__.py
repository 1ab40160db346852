"""Datasets: the bundled digits (default, offline), Fashion-MNIST from its IDX files
(torchvision; Debian's dataset-fashion-mnist package installs them offline) and CIFAR-10/100
from a user's folder.

Every dataset has a train, a validation and a test split. The validation split is the
controller's reward split; the test split is only for final reports.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from snnas.data._cifar import CIFAR_LAYOUT, CifarDataset, cifar_transforms, read_cifar
from snnas.data._digits import DIGITS_SPLIT, load_digits_splits
from snnas.data._fashion import DEFAULT_DIR as FASHION_DIR
from snnas.data._fashion import fashion_tensors, read_fashion
from snnas.data._loader import TensorLoader
from snnas.errors import DatasetError
from snnas.space import SearchSpace

__all__ = [
    "DATASETS",
    "DIGITS_SPLIT",
    "FASHION_DIR",
    "Batches",
    "DataSplits",
    "TensorLoader",
    "load_dataset",
    "load_for_space",
]

DATASETS = ("digits", "fashion-mnist", "cifar10", "cifar100")


class Batches(Protocol):
    """What :meth:`DataSplits.loader` returns: batches of ``(images, labels)`` with a length."""

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...


class _EpochSampler(torch.utils.data.Sampler[tuple[int, int]]):
    """Yields ``(index, epoch)``: the order of ``epoch`` (seeded by ``seed`` and the epoch),
    and the epoch the sample's augmentation is seeded with. The sampler runs in the main
    process, so persistent loader workers see every epoch change."""

    def __init__(self, n: int, shuffle: bool, seed: int) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=generator).tolist()
        else:
            order = list(range(self.n))
        return iter((i, self.epoch) for i in order)


class _SeededSamples(torch.utils.data.Dataset[tuple[Tensor, Tensor]]):
    """Each sample's transform draws from a generator seeded by (seed, epoch, index), never
    from the global random state or a worker's: an augmented epoch is the same whoever
    computes it, so a resumed run sees the images an uninterrupted one saw."""

    def __init__(self, dataset: CifarDataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, Tensor]:
        index, epoch = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
            return self.dataset[index]


class EpochDataLoader(torch.utils.data.DataLoader[tuple[Tensor, Tensor]]):
    """A DataLoader whose shuffle order and augmentation depend only on ``seed``, the epoch
    chosen with :meth:`set_epoch` and each sample's index, like :class:`TensorLoader`."""

    def __init__(self, dataset: CifarDataset, seed: int, shuffle: bool, **kwargs: Any) -> None:
        sampler = _EpochSampler(len(dataset), shuffle, seed)
        super().__init__(_SeededSamples(dataset, seed), sampler=sampler, **kwargs)
        self.epoch_sampler = sampler
        self.seed = seed

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle order and the augmentation of ``epoch``."""
        self.epoch_sampler.epoch = epoch


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
    normalization: dict[str, Any] | None = None  # how raw images become inputs (plans)

    def check_space(self, space: SearchSpace) -> None:
        """Refuse a space whose classes or input shape differ from this dataset's."""
        net = space.network
        if net.num_classes != self.num_classes:
            raise DatasetError(
                f"space {space.name!r} has {net.num_classes} classes but {self.name} has "
                f"{self.num_classes}: set network.num_classes = {self.num_classes}"
            )
        if (net.input_size, net.input_channels) != (self.input_size, self.input_channels):
            raise DatasetError(
                f"{self.name} inputs are {self.input_channels}x{self.input_size}x"
                f"{self.input_size} but space {space.name!r} expects {net.input_channels}x"
                f"{net.input_size}x{net.input_size}"
            )

    def size(self, split: str) -> int:
        """Number of examples in ``split``."""
        return len(self.tensors[split][1])

    def subset(self, split: str, count: int | None, seed: int = 0) -> DataSplits:
        """These splits with ``split`` cut to ``count`` examples drawn without replacement
        (a seeded permutation, kept in the split's order); ``None`` or the whole split
        returns ``self``. More examples than the split holds is a :class:`DatasetError`."""
        if count is None or count == self.size(split):
            return self
        if not 1 <= count <= self.size(split):
            raise DatasetError(
                f"expected at most the {self.size(split)} {split} examples of {self.name}, "
                f"found a subset of {count}"
            )
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(self.size(split), generator=generator)[:count].sort().values
        images, labels = self.tensors[split]
        return replace(self, tensors={**self.tensors, split: (images[keep], labels[keep])})

    def eval_tensors(self, split: str) -> tuple[Tensor, Tensor]:
        """``split`` as network inputs (float, normalised, no augmentation) and labels."""
        images, labels = self.tensors[split]
        if self.transforms is None:
            return images, labels
        transform = self.transforms["eval"]
        return torch.stack([transform(img) for img in images]), labels

    def loader(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        augment: bool = False,
        workers: int | None = None,
        pin_memory: bool = False,
    ) -> Batches:
        """Batches of ``split``. ``augment`` applies the training augmentation.

        CIFAR batches come from ``workers`` loader processes; ``None`` means up to 8 when
        feeding a GPU (``pin_memory``) and none on the CPU, where they would compete with
        the model for the same cores.
        """
        images, labels = self.tensors[split]
        if self.transforms is None:
            shift = max(1, self.input_size // 8) if augment else 0
            return TensorLoader(images, labels, batch_size, shuffle=shuffle, seed=seed, shift=shift)
        transform = self.transforms["train" if augment else "eval"]
        if workers is None:
            workers = min(8, os.cpu_count() or 1) if pin_memory else 0
        return EpochDataLoader(
            CifarDataset(images, labels, transform),
            seed,
            shuffle,
            batch_size=batch_size,
            num_workers=workers,
            pin_memory=pin_memory,
            persistent_workers=workers > 0,
        )


def load_for_space(
    name: str, space: SearchSpace, data_dir: str | Path | None = None, download: bool = False
) -> DataSplits:
    """:func:`load_dataset` at the space's input size and channels, checked against it."""
    net = space.network
    data = load_dataset(
        name,
        input_size=net.input_size,
        input_channels=net.input_channels,
        data_dir=data_dir,
        download=download,
    )
    data.check_space(space)
    return data


def load_dataset(
    name: str,
    *,
    input_size: int,
    input_channels: int,
    data_dir: str | Path | None = None,
    download: bool = False,
) -> DataSplits:
    """Load ``name`` (one of :data:`DATASETS`) with fixed splits. ``data_dir``: the folder of
    Fashion-MNIST's or CIFAR's files (Fashion-MNIST: :data:`FASHION_DIR` by default);
    ``download``: let torchvision fetch Fashion-MNIST's files into it first."""
    if download and name != "fashion-mnist":
        raise DatasetError(f"--download: only fashion-mnist can be downloaded, not {name}")
    if name == "digits":
        tensors, norm = load_digits_splits(input_size, input_channels)
        return DataSplits(name, 10, input_size, input_channels, tensors, normalization=norm)
    if name == "fashion-mnist":
        if input_size < 8 or input_size > 32:
            raise DatasetError(
                f"fashion-mnist images are 28x28: expected network.input_size from 8 to 32 "
                f"(resized), found {input_size}"
            )
        raw = read_fashion(data_dir, download)
        tensors, norm = fashion_tensors(raw, input_size, input_channels)
        return DataSplits(name, 10, input_size, input_channels, tensors, normalization=norm)
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
    norm = {
        "source": f"{name} python batches: 3x32x32 uint8 images",
        "scale": 1 / 255,
        "mean": mean,
        "std": std,
        "formula": "x = (pixels * scale - mean) / std, per channel",
    }
    classes = CIFAR_LAYOUT[name].classes
    return DataSplits(name, classes, 32, 3, tensors, transforms, normalization=norm)
