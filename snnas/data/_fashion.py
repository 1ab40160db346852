"""Fashion-MNIST (Xiao et al., 2017: 70,000 real 28x28 gray images, 10 classes) from the
original IDX files, read by torchvision's ``FashionMNIST``.

torchvision reads uncompressed files from ``ROOT/FashionMNIST/raw/``. The files may sit in a
folder in either layout (``DIR/FashionMNIST/raw/`` or the four files directly in ``DIR``),
each ``.gz`` or not: they are staged into a temporary ``ROOT`` (uncompressed files linked,
``.gz`` files decompressed, at most :data:`MAX_FILE_BYTES` each) that torchvision reads, then
removed. Debian's ``dataset-fashion-mnist`` package installs them in
:data:`DEFAULT_DIR`, the folder used when none is given. ``download=True`` lets torchvision
fetch them into the folder given.

Splits: the official test set (10,000 images) is the test split; the last twelfth of the
official training set (its last 5,000 images) is the validation split, the rest (55,000)
training. The files' own order decides, so the split is the same on every machine.
"""

from __future__ import annotations

import gzip
import tempfile
import zlib
from pathlib import Path

import torch
from torch import Tensor

from snnas.errors import DatasetError, shorten

__all__ = [
    "DEFAULT_DIR",
    "FASHION_FILES",
    "MAX_FILE_BYTES",
    "VAL_DIVISOR",
    "find_fashion_files",
    "read_fashion",
]

#: Where ``apt-get install dataset-fashion-mnist`` puts the files (Debian and derivatives).
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
#: The four files of the official release, without ``.gz``: (train images, train labels,
#: test images, test labels).
FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
#: Largest file accepted, uncompressed (the training images are 47,040,016 bytes).
MAX_FILE_BYTES = 64 * 1024 * 1024
#: The validation split is the last ``n // VAL_DIVISOR`` training images: 5,000 of 60,000.
VAL_DIVISOR = 12
_RAW = Path("FashionMNIST") / "raw"  # where torchvision looks under its root
_SIDE = 28  # Fashion-MNIST images are 28x28
_CLASSES = 10
_INSTALL = "apt-get install dataset-fashion-mnist (files in /usr/share/datasets/fashion-mnist)"


def find_fashion_files(data_dir: Path) -> dict[str, Path]:
    """The file found for each of :data:`FASHION_FILES` in ``data_dir/FashionMNIST/raw`` or
    ``data_dir`` (uncompressed preferred to ``.gz``); a :class:`DatasetError` naming the
    folder and the missing files when a layout is incomplete."""
    if not data_dir.is_dir():
        raise DatasetError(
            f"fashion-mnist: folder {shorten(str(data_dir))} does not exist (expected the four "
            f"IDX files, .gz or not; install them with {_INSTALL}, or pass --download)"
        )
    missing_in: list[tuple[int, Path, list[str]]] = []
    for folder in (data_dir / _RAW, data_dir):
        found: dict[str, Path] = {}
        for name in FASHION_FILES:
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    found[name] = candidate
                    break
        missing = [n for n in FASHION_FILES if n not in found]
        if not missing:
            return found
        missing_in.append((len(missing), folder, missing))
    _, folder, missing = min(missing_in, key=lambda m: m[0])  # the more complete layout
    raise DatasetError(
        f"fashion-mnist: {shorten(str(folder))} is incomplete: missing "
        f"{', '.join(missing)} (.gz or not; expected in DIR or DIR/FashionMNIST/raw; "
        f"install them with {_INSTALL})"
    )


def _stage(files: dict[str, Path], root: Path) -> None:
    """Put every file, uncompressed, where torchvision reads it under ``root``."""
    raw = root / _RAW
    raw.mkdir(parents=True)
    for name, source in files.items():
        target = raw / name
        if source.suffix != ".gz":
            if source.stat().st_size > MAX_FILE_BYTES:
                raise DatasetError(
                    f"{shorten(str(source))}: expected at most {MAX_FILE_BYTES:,} bytes for a "
                    f"Fashion-MNIST file, found {source.stat().st_size:,}"
                )
            target.symlink_to(source.resolve())
            continue
        try:
            with gzip.open(source, "rb") as f, target.open("wb") as out:
                written = 0
                while chunk := f.read(1 << 20):
                    written += len(chunk)
                    if written > MAX_FILE_BYTES:
                        raise DatasetError(
                            f"{shorten(str(source))}: expected at most {MAX_FILE_BYTES:,} bytes "
                            "uncompressed for a Fashion-MNIST file, found more"
                        )
                    out.write(chunk)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(
                f"{shorten(str(source))}: expected a gzip-compressed IDX file, found a file "
                f"that does not decompress ({shorten(str(exc), 120)})"
            ) from None


def _file_problem(path: Path, images: bool) -> str | None:
    """Why torchvision's IDX reader refuses ``path`` (an images or a labels file), or None."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    try:
        (read_image_file if images else read_label_file)(str(path))
    except (AssertionError, KeyError, IndexError):
        return "a bad IDX header (magic number or dimensions)"
    except (RuntimeError, ValueError, TypeError) as exc:
        return shorten(str(exc), 120) or type(exc).__name__
    return None


def _load_split(
    root: Path, files: dict[str, Path], train: bool, download: bool
) -> tuple[Tensor, Tensor]:
    """``(images (N, 28, 28) uint8, labels (N,) int64)`` of one split, checked."""
    from torchvision.datasets import FashionMNIST

    prefix = "train" if train else "t10k"
    image_file, label_file = (
        files[f"{prefix}-images-idx3-ubyte"],
        files[f"{prefix}-labels-idx1-ubyte"],
    )
    try:
        dataset = FashionMNIST(str(root), train=train, download=download)
        images, labels = dataset.data, dataset.targets
    except (AssertionError, KeyError, IndexError, RuntimeError, ValueError, TypeError):
        # Which file torchvision refused: each read alone, by torchvision's own readers.
        for key, is_images in (
            (f"{prefix}-images-idx3-ubyte", True),
            (f"{prefix}-labels-idx1-ubyte", False),
        ):
            path = files[key]
            problem = _file_problem(root / _RAW / key, is_images)
            if problem is not None:
                kind = "images (idx3, uint8)" if is_images else "labels (idx1, uint8)"
                raise DatasetError(
                    f"{shorten(str(path))}: expected a Fashion-MNIST IDX file of {kind}, "
                    f"found {problem}"
                ) from None
        raise
    if images.ndim != 3 or tuple(images.shape[1:]) != (_SIDE, _SIDE):
        raise DatasetError(
            f"{shorten(str(image_file))}: expected images of {_SIDE}x{_SIDE} pixels, found "
            f"{'x'.join(str(s) for s in images.shape[1:])}"
        )
    if len(images) != len(labels):
        raise DatasetError(
            f"{shorten(str(label_file))}: expected as many labels as {image_file.name} has "
            f"images ({len(images):,}), found {len(labels):,}"
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= _CLASSES):
        raise DatasetError(
            f"{shorten(str(label_file))}: expected labels 0 to {_CLASSES - 1}, found "
            f"{int(labels.max()) if int(labels.max()) >= _CLASSES else int(labels.min())}"
        )
    return images, labels


def _download(data_dir: Path) -> None:
    """Let torchvision fetch the files into ``data_dir/FashionMNIST/raw``."""
    from torchvision.datasets import FashionMNIST

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        FashionMNIST(str(data_dir), train=True, download=True)
        FashionMNIST(str(data_dir), train=False, download=True)
    except (OSError, RuntimeError, ValueError) as exc:
        reason = shorten(" ".join(str(exc).split()), 160)
        raise DatasetError(
            f"fashion-mnist: could not download into {shorten(str(data_dir))} ({reason}); "
            f"without internet, install the files with {_INSTALL}"
        ) from None


def read_fashion(
    data_dir: str | Path | None = None, download: bool = False
) -> dict[str, tuple[Tensor, Tensor]]:
    """The official ``"train"`` and ``"test"`` sets as uint8 images ``(N, 28, 28)`` and
    int64 labels, from ``data_dir`` (default :data:`DEFAULT_DIR`); ``download`` fetches the
    files first where they are missing (it needs a folder given)."""
    if download:
        if data_dir is None:
            raise DatasetError(
                "fashion-mnist: --download needs --data-dir (a writable folder to put the files in)"
            )
        folder = Path(data_dir)
        try:
            find_fashion_files(folder)
        except DatasetError:
            _download(folder)
    folder = DEFAULT_DIR if data_dir is None else Path(data_dir)
    files = find_fashion_files(folder)
    with tempfile.TemporaryDirectory(prefix="snnas-fashion-") as tmp:
        root = Path(tmp)
        _stage(files, root)
        out = {
            "train": _load_split(root, files, True, False),
            "test": _load_split(root, files, False, False),
        }
    n = len(out["train"][1])
    if n < VAL_DIVISOR or not len(out["test"][1]):
        raise DatasetError(
            f"{shorten(str(files['train-labels-idx1-ubyte']))}: expected at least "
            f"{VAL_DIVISOR} training images and one test image, found {n:,} and "
            f"{len(out['test'][1]):,}"
        )
    return out


def split_fashion(
    raw: dict[str, tuple[Tensor, Tensor]],
) -> dict[str, tuple[Tensor, Tensor]]:
    """Train / validation / test: the validation split is the last ``n // 12`` training
    images (5,000 of 60,000), in the files' order; the test split the official test set."""
    images, labels = raw["train"]
    n_val = len(labels) // VAL_DIVISOR
    cut = len(labels) - n_val
    return {
        "train": (images[:cut], labels[:cut]),
        "val": (images[cut:], labels[cut:]),
        "test": raw["test"],
    }


def fashion_tensors(
    raw: dict[str, tuple[Tensor, Tensor]], size: int, channels: int
) -> tuple[dict[str, tuple[Tensor, Tensor]], dict[str, object]]:
    """The three splits as float inputs ``(N, channels, size, size)``: pixels / 255, resized
    (bilinear) when ``size`` is not 28, the gray channel repeated, normalised with the
    training split's mean and standard deviation; and that normalisation (for plans)."""
    splits = split_fashion(raw)
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for name, (images, labels) in splits.items():
        x = images.unsqueeze(1).float() / 255.0  # (N, 1, 28, 28)
        if size != _SIDE:
            x = torch.nn.functional.interpolate(
                x, size=(size, size), mode="bilinear", align_corners=False
            )  # (N, 1, size, size)
        if channels != 1:
            x = x.repeat(1, channels, 1, 1)  # (N, channels, size, size)
        out[name] = (x, labels)
    train = out["train"][0]
    mean, std = float(train.mean()), float(train.std())
    if not std > 0:
        std = 1.0  # constant images (a fixture): nothing to scale
    for name, (x, labels) in out.items():
        out[name] = ((x - mean) / std).contiguous(), labels
    norm = {
        "source": "Fashion-MNIST IDX files: 28x28 uint8 gray images",
        "scale": 1 / 255,
        "resize": {"size": size, "mode": "bilinear", "align_corners": False},
        "channels": f"the gray channel repeated {channels} time(s)",
        "mean": [mean] * channels,
        "std": [std] * channels,
        "formula": "x = (resize(pixels * scale) - mean) / std",
    }
    return out, norm
