"""One device's weights, cut out of the frozen network with batch norm folded in.

The frozen network stacks the G devices along the channel axis and groups every convolution
so that device ``d`` only touches its own slice (docs/supernet.md). Device ``d``'s part of a
block is therefore a contiguous slice of output channels of every convolution:

* ``conv1`` (1x1, G groups): rows ``[d m, (d+1) m)``, ``m = mid / G``; its input is the
  device's own stream, so the weight is used as is, ``(m, w_in, 1, 1)``;
* ``conv2`` (3x3, C groups): the same rows; they are C / G whole groups, so on the device it
  is a 3x3 convolution with C / G groups, ``(m, mid / C, 3, 3)``;
* ``conv3`` (1x1, G groups) and the projection shortcut: rows ``[d w, (d+1) w)``.

Batch norm (eval mode, running statistics) is folded into the convolution before it:
``W' = W * gamma / sqrt(var + eps)`` and ``b' = beta - mean * gamma / sqrt(var + eps)``, so a
device runs convolutions with a bias and ReLUs, nothing else. Device 0 also holds the stem
and the classifier.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from snnas.arch import Architecture

__all__ = ["device_weights", "expected_shapes", "fold"]


def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d, rows: slice) -> tuple[Tensor, Tensor]:
    """``conv`` followed by ``bn`` (running statistics) as one convolution with a bias,
    restricted to the output channels ``rows``."""
    assert bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    weight = conv.weight * scale[:, None, None, None]
    bias = bn.bias - bn.running_mean * scale
    return weight[rows].detach().clone().contiguous(), bias[rows].detach().clone().contiguous()


def device_weights(
    model: nn.Module, arch: Architecture, device: int, blocks: Iterable[int], head: bool
) -> dict[str, Tensor]:
    """Device ``device``'s folded weights for ``blocks`` (and the stem and classifier when
    ``head``), float32, named as :func:`expected_shapes` says."""
    g = arch.groups
    out: dict[str, Tensor] = {}
    layers: Any = model
    with torch.no_grad():
        if head:
            stem: Any = layers.stem
            w, b = fold(stem.conv, stem.bn, slice(None))
            out["stem.weight"], out["stem.bias"] = w, b
        for index in blocks:
            block: Any = layers.blocks[index]
            geo = arch.blocks[index]
            m = geo.mid_width // g
            mid = slice(device * m, (device + 1) * m)
            wide = slice(device * geo.out_width, (device + 1) * geo.out_width)
            prefix = f"blocks.{index}."
            for name, conv, bn, rows in (
                ("conv1", block.conv1, block.bn1, mid),
                ("conv2", block.conv2, block.bn2, mid),
                ("conv3", block.conv3, block.bn3, wide),
            ):
                w, b = fold(conv, bn, rows)
                out[prefix + name + ".weight"], out[prefix + name + ".bias"] = w, b
            if block.downsample is not None:
                w, b = fold(block.downsample[0], block.downsample[1], wide)
                out[prefix + "shortcut.weight"], out[prefix + "shortcut.bias"] = w, b
        if head:
            fc: Any = layers.fc
            out["fc.weight"] = fc.weight.detach().clone().contiguous()
            out["fc.bias"] = fc.bias.detach().clone().contiguous()
    return {k: v.float() for k, v in out.items()}


def expected_shapes(
    arch: Architecture,
    blocks: Iterable[int],
    head: bool,
    *,
    scale: int = 1,
    stem: bool | None = None,
) -> dict[str, tuple[int, ...]]:
    """The tensors a device's weights file must hold, and their shapes (a parity device:
    ``scale`` times the bottleneck, and its own stem)."""
    net, g = arch.network, arch.groups
    shapes: dict[str, tuple[int, ...]] = {}
    if head if stem is None else stem:
        shapes["stem.weight"] = (net.stem_width, net.input_channels, 3, 3)
        shapes["stem.bias"] = (net.stem_width,)
    for index in blocks:
        geo = arch.blocks[index]
        m = geo.mid_width // g * scale
        prefix = f"blocks.{index}."
        shapes[prefix + "conv1.weight"] = (m, geo.in_width, 1, 1)
        shapes[prefix + "conv2.weight"] = (m, geo.mid_width // net.cardinality, 3, 3)
        shapes[prefix + "conv3.weight"] = (geo.out_width, m, 1, 1)
        for name in ("conv1", "conv2"):
            shapes[prefix + name + ".bias"] = (m,)
        shapes[prefix + "conv3.bias"] = (geo.out_width,)
        if geo.projection:
            shapes[prefix + "shortcut.weight"] = (geo.out_width, geo.in_width, 1, 1)
            shapes[prefix + "shortcut.bias"] = (geo.out_width,)
    if head:
        shapes["fc.weight"] = (net.num_classes, net.stage_widths[-1])
        shapes["fc.bias"] = (net.num_classes,)
    return shapes
