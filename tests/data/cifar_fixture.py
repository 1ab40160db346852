"""Write tiny CIFAR folders in the real python-pickle format of the official archives."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _batch(rng: np.random.Generator, n: int, classes: int, label_key: str) -> dict:
    return {
        "batch_label": "fixture",
        label_key: rng.integers(0, classes, n).tolist(),
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png" for i in range(n)],
    }


def write_cifar(root: Path, name: str, per_batch: int = 20, test: int = 30) -> Path:
    """Create ``root/cifar-10-batches-py`` or ``root/cifar-100-python``; return the folder."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        files = {f"data_batch_{i}": _batch(rng, per_batch, 10, "labels") for i in range(1, 6)}
        files["test_batch"] = _batch(rng, test, 10, "labels")
        files["batches.meta"] = {"label_names": [f"c{i}" for i in range(10)]}
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        train = _batch(rng, 5 * per_batch, 100, "fine_labels")
        train["coarse_labels"] = [label // 5 for label in train["fine_labels"]]
        files = {"train": train, "test": _batch(rng, test, 100, "fine_labels")}
        files["meta"] = {"fine_label_names": [f"c{i}" for i in range(100)]}
    for file_name, content in files.items():
        # Python 2 pickles, as in the archives, are read with encoding="latin1"; protocol 2
        # keeps the format close to the originals.
        with (folder / file_name).open("wb") as handle:
            pickle.dump(content, handle, protocol=2)
    return folder
