"""The user's images on their way to the devices (``snnas run --input``): the launcher writes
them, as the network inputs the plan's normalisation made, into the run folder
(``input.safetensors``, one float32 tensor ``images`` (N, C, H, W)); every device that takes
the image (device 0, the stem) reads them from there instead of the plan's dataset split.
safetensors holds raw tensors only: nothing is unpickled on either side."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from snnas._io import atomic_write_bytes
from snnas.errors import PlanError, shorten
from snnas.plan import LoadedPlan

__all__ = ["INPUT_FILE", "read_images", "write_images"]

#: The file in the run folder that carries the images.
INPUT_FILE = "input.safetensors"


def write_images(out: Path, images: Tensor) -> Path:
    """Write ``images`` (N, C, H, W) float32 into ``out/input.safetensors`` atomically (never
    through a link); return its path."""
    from safetensors.torch import save

    path = out / INPUT_FILE
    atomic_write_bytes(path, save({"images": images.contiguous()}))
    return path


def read_images(path: Path, plan: LoadedPlan, count: int) -> Tensor:
    """The ``count`` network inputs in ``path``, checked against the plan's input spec
    (shape, float32, finite values): a device never trusts the file it is handed."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    where = shorten(str(path))
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise PlanError(f"{where}: cannot read the images ({shorten(str(exc), 200)})") from None
    images = tensors.get("images")
    _, c, h, w = plan.data["input"]["shape"]
    expected = (count, int(c), int(h), int(w))
    if (
        set(tensors) != {"images"}
        or images is None
        or tuple(images.shape) != expected
        or images.dtype != torch.float32
    ):
        found = {k: (tuple(v.shape), str(v.dtype)) for k, v in tensors.items()}
        raise PlanError(
            f"{where}: expected one tensor 'images' of shape {expected} float32, found "
            f"{shorten(found, 200)}"
        )
    if not bool(torch.isfinite(images).all()):
        raise PlanError(f"{where}: expected finite network inputs, found NaN or infinite values")
    return images
