"""Tiny Fashion-MNIST files in the real IDX format (big-endian header, uint8 data), written
by the tests: a few images, ``.gz`` or not, in either accepted layout."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch

FILES = {
    "train-images-idx3-ubyte": ("train", True),
    "train-labels-idx1-ubyte": ("train", False),
    "t10k-images-idx3-ubyte": ("test", True),
    "t10k-labels-idx1-ubyte": ("test", False),
}


def idx_images(images: torch.Tensor) -> bytes:
    """An idx3-ubyte file: magic 0x00000803, then N, rows, columns, then the pixels."""
    n, rows, cols = images.shape
    return struct.pack(">IIII", 0x803, n, rows, cols) + images.to(torch.uint8).numpy().tobytes()


def idx_labels(labels: torch.Tensor) -> bytes:
    """An idx1-ubyte file: magic 0x00000801, then N, then the labels."""
    return struct.pack(">II", 0x801, len(labels)) + labels.to(torch.uint8).numpy().tobytes()


def fashion_arrays(train: int = 24, test: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random 28x28 images whose label is the image's brightest row band (learnable), and
    their labels."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for split, n in (("train", train), ("test", test)):
        labels = torch.arange(n) % 10
        images = torch.randint(0, 60, (n, 28, 28), generator=generator)
        for i, y in enumerate(labels.tolist()):
            images[i, 2 * y : 2 * y + 3] += 180
        out[f"{split}_images"], out[f"{split}_labels"] = images.clamp(0, 255), labels
    return out


def write_fashion(
    folder: Path,
    *,
    gz: bool | dict[str, bool] = True,
    raw_layout: bool = False,
    train: int = 24,
    test: int = 10,
    override: dict[str, bytes] | None = None,
) -> dict[str, torch.Tensor]:
    """Write the four files into ``folder`` (``folder/FashionMNIST/raw`` with
    ``raw_layout``), gzip-compressed where ``gz`` says; ``override`` replaces a file's
    uncompressed bytes. Returns the arrays written."""
    arrays = fashion_arrays(train, test)
    target = folder / "FashionMNIST" / "raw" if raw_layout else folder
    target.mkdir(parents=True, exist_ok=True)
    for name, (split, images) in FILES.items():
        data = (
            idx_images(arrays[f"{split}_images"])
            if images
            else idx_labels(arrays[f"{split}_labels"])
        )
        data = (override or {}).get(name, data)
        compress = gz if isinstance(gz, bool) else gz.get(name, True)
        if compress:
            (target / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (target / name).write_bytes(data)
    return arrays
