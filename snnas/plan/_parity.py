"""Parity devices in a plan (docs/plan.md, "Parity devices"; the design: docs/parity.md).

Export side: one weights file per parity device (its stem, blocks and head with batch norm
folded, and its encoder), the imputation constants and the coded network's answers at every
erasure position. The parity devices' entries, their traffic and the degraded rules follow
from the space and policy: ``snnas/plan/_derive.py``.

How the devices run it: ``snnas/plan/_erasure.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from snnas.plan._weights import fold

__all__ = ["IMPUTE_FILE", "degraded_reference", "impute_tensors", "parity_weights"]

IMPUTE_FILE = "impute.safetensors"


@torch.no_grad()
def parity_weights(
    streams: Any, k: int, policy: Mapping[str, Any], blocks: Sequence[int]
) -> dict[str, Tensor]:
    """Parity device ``k``'s folded weights for ``blocks`` (``ParityDevice``'s, named like a
    data device's, plus ``encoder.{q}.weight`` (w, G, m) for ``concat`` and
    ``encoder.{q}.sum`` (G,))."""
    from snnas.models.parity import ParityDevice

    dev = ParityDevice(streams, k, policy)
    space = streams.space
    out: dict[str, Tensor] = {}
    out["stem.weight"], out["stem.bias"] = fold(dev.stem.conv, dev.stem.bn, slice(None))
    for b in blocks:
        block: Any = dev.blocks[b]
        for name, conv, bn in (("conv1", block.conv1, block.bn1),
                               ("conv2", block.conv2, block.bn2),
                               ("conv3", block.conv3, block.bn3)):  # fmt: skip
            out[f"blocks.{b}.{name}.weight"], out[f"blocks.{b}.{name}.bias"] = fold(
                conv, bn, slice(None)
            )
        if block.downsample is not None:
            w, bias = fold(block.downsample[0], block.downsample[1], slice(None))
            out[f"blocks.{b}.shortcut.weight"], out[f"blocks.{b}.shortcut.bias"] = w, bias
    for geo, choice in zip(space.arch.points, dev.choices, strict=True):
        m, w, g = choice.m_send(geo.channels), geo.channels, space.groups
        if m == 0:
            continue
        if choice.encoder == "concat":
            encoder: Any = dev.concat[str(geo.index)]
            weight = encoder.weight.view(w, g, w)[:, :, :m]
            out[f"encoder.{geo.index}.weight"] = weight.clone().contiguous()
        elif choice.encoder == "sum":
            out[f"encoder.{geo.index}.sum"] = dev.sum[str(geo.index)].detach().clone()
    if dev.fc is not None:
        out["fc.weight"] = dev.fc.weight.detach().clone().contiguous()
        out["fc.bias"] = dev.fc.bias.detach().clone().contiguous()
    return {k_: v.float() for k_, v in out.items()}


def impute_tensors(coded: Any) -> dict[str, Tensor]:
    """The imputation constants, ``impute{q}`` (G, w) per point."""
    space = coded.space
    return {
        f"impute{p.index}": coded.parity.impute(p.index).detach().float().contiguous()
        for p in space.arch.points
    }


def _without_device_zero(coded: Any) -> Any:
    """``coded`` as it runs when data device 0 is lost before the image: its stem is gone,
    so the data devices' streams start from the parity device's stem output (what the
    plan's rule sends them). After a joint phase (``snnas parity train --joint-epochs``) the
    two stems differ; the coded network's own forward pass still reads the base stem there."""
    if all(torch.equal(a, b) for a, b in zip(coded.base.stem.state_dict().values(),
                                             coded.parity.stem.state_dict().values(),
                                             strict=True)):  # fmt: skip
        return coded
    lost = copy.deepcopy(coded)
    lost.base.stem.load_state_dict(coded.parity.stem.state_dict())
    return lost


@torch.no_grad()
def degraded_reference(coded: Any, data: Any, progress: Any = None) -> dict[str, Tensor]:
    """The coded network's answers at every erasure position on the validation and test
    splits: ``{split}.degraded.{j}.{p}`` (N, classes); at ``(0, 0)`` the data devices start
    from the parity device's stem (:func:`_without_device_zero`)."""
    from snnas.models.parity import erasure_grid, fail_at_tensor

    space = coded.space
    positions = erasure_grid(space.groups, space.num_points)
    without_zero = _without_device_zero(coded)
    out: dict[str, Tensor] = {}
    for split in ("val", "test"):
        images, _ = data.eval_tensors(split)
        for done, (j, p) in enumerate(positions):
            net = without_zero if (j, p) == (0, 0) else coded
            chunks = []
            for i in range(0, len(images), 256):
                x = images[i : i + 256]
                fail_at = fail_at_tensor([(j, p)], space.groups, len(x))
                chunks.append(net(x, None, fail_at).logits)
            out[f"{split}.degraded.{j}.{p}"] = torch.cat(chunks).float().contiguous()
            if progress is not None:
                progress(f"degraded {split}", done + 1, len(positions), {})
    return out
