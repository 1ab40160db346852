"""scikit-learn's bundled handwritten digits (1797 real 8x8 images), the offline default."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DIGITS_SPLIT", "load_digits_splits", "load_digits_tensors"]

#: Fixed split sizes (seed 0, stratified by class): train / validation / test.
DIGITS_SPLIT = (1257, 180, 360)


def load_digits_tensors(size: int, channels: int) -> dict[str, tuple[Tensor, Tensor]]:
    """Train, validation and test tensors, resized to ``size`` x ``size`` and normalised with
    the training split's mean and standard deviation. The split is the same for every run."""
    return load_digits_splits(size, channels)[0]


def _normalization(size: int, channels: int, mean: float, std: float) -> dict[str, object]:
    """How raw 8x8 digits become network inputs (for a deployment plan's input spec)."""
    return {
        "source": "scikit-learn load_digits: 8x8 images, pixel values 0..16",
        "scale": 1 / 16,
        "resize": {"size": size, "mode": "bilinear", "align_corners": False},
        "channels": f"the gray channel repeated {channels} time(s)",
        "mean": [mean] * channels,
        "std": [std] * channels,
        "formula": "x = (resize(pixels * scale) - mean) / std",
    }


def load_digits_splits(
    size: int, channels: int
) -> tuple[dict[str, tuple[Tensor, Tensor]], dict[str, object]]:
    """:func:`load_digits_tensors` and the normalisation it applied (for plans)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    labels = torch.tensor(bunch.target, dtype=torch.long)
    index = list(range(len(labels)))
    _n_train, n_val, n_test = DIGITS_SPLIT
    rest, test = train_test_split(index, test_size=n_test, random_state=0, stratify=bunch.target)
    train, val = train_test_split(
        rest, test_size=n_val, random_state=0, stratify=bunch.target[rest]
    )
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    if channels != 1:
        images = images.repeat(1, channels, 1, 1)
    mean = images[train].mean()
    std = images[train].std()
    images = (images - mean) / std
    out = {}
    for name, idx in (("train", train), ("val", val), ("test", test)):
        t = torch.tensor(sorted(idx))
        out[name] = (images[t].contiguous(), labels[t])
    assert tuple(len(out[k][1]) for k in ("train", "val", "test")) == DIGITS_SPLIT
    return out, _normalization(size, channels, float(mean), float(std))
