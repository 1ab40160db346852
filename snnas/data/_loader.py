"""A seeded in-memory batch loader for small tensor datasets (digits, test fixtures).

``torch.utils.data.DataLoader`` indexes samples one at a time; for a dataset that already
sits in memory as one tensor, slicing whole batches is an order of magnitude faster on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TensorLoader", "random_shift"]


def random_shift(x: Tensor, pad: int, generator: torch.Generator) -> Tensor:
    """Random translation by up to ``pad`` pixels (zero padding, then a random crop)."""
    if pad == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    return torch.stack(
        [padded[i, :, y : y + h, x_ : x_ + w] for i, (y, x_) in enumerate(zip(dy, dx, strict=True))]
    )


class TensorLoader:
    """Batches of ``(images, labels)`` from in-memory tensors, reshuffled every epoch.

    The order depends only on ``seed`` and the epoch number, so a resumed run sees the same
    batches as an uninterrupted one.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        shift: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.shift = shift
        self.drop_last = drop_last
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle order of ``epoch`` (as ``DistributedSampler.set_epoch``)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.labels)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.images[idx]
            if self.shift:
                x = random_shift(x, self.shift, generator)
            yield x, self.labels[idx]
