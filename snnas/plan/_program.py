"""A device's network from its weights file (:class:`DeviceNet`, what a device program
computes with) and the geometry a plan was made for.

The program itself (the order of a device's operations, their execution, the transfers) is
the engine's: ``snnas/engine/``; its names are re-exported here for ``snnas.plan``'s users.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnas.arch import Architecture
from snnas.engine import (
    ENCODING_TAG,
    STANDIN_TAG,
    WIRE_DTYPES,
    Op,
    Receive,
    Send,
    add_payload,
    device_ops,
    payload,
    run_device,
    transfer_tag,
)
from snnas.errors import PlanError
from snnas.space import NetworkConfig

__all__ = [
    "ENCODING_TAG",
    "STANDIN_TAG",
    "WIRE_DTYPES",
    "DeviceNet",
    "Op",
    "Receive",
    "Send",
    "add_payload",
    "architecture_of",
    "device_ops",
    "payload",
    "run_device",
    "transfer_tag",
]


def architecture_of(plan: Mapping[str, Any]) -> Architecture:
    """The geometry a plan was made for (from its ``network`` and ``schedule``)."""
    net = dict(plan["network"])
    net["stage_widths"] = tuple(net["stage_widths"])
    sched = plan["schedule"]
    return Architecture(NetworkConfig(**net), sched["groups"], sched["alpha"], sched["overlap"])


class _Block(nn.Module):
    """One device's part of a bottleneck block, batch norm folded (torchvision's order)."""

    def __init__(self, weights: Mapping[str, Tensor], prefix: str, stride: int, groups: int):
        super().__init__()
        self.conv1 = _conv(weights, prefix + "conv1", 1, 1)
        self.conv2 = _conv(weights, prefix + "conv2", stride, groups, padding=1)
        self.conv3 = _conv(weights, prefix + "conv3", 1, 1)
        self.shortcut = (
            _conv(weights, prefix + "shortcut", stride, 1)
            if prefix + "shortcut.weight" in weights
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = F.relu(self.conv1(x))  # (B, m, H, W)
        out = F.relu(self.conv2(out))  # (B, m, H/s, W/s)
        out = self.conv3(out)  # (B, w, H/s, W/s)
        return F.relu(out + identity)


def _conv(
    weights: Mapping[str, Tensor], name: str, stride: int, groups: int, padding: int = 0
) -> nn.Conv2d:
    w = weights[name + ".weight"]
    conv = nn.Conv2d(
        w.shape[1] * groups,
        w.shape[0],
        w.shape[2],
        stride=stride,
        padding=padding,
        groups=groups,
        bias=True,
    )
    with torch.no_grad():
        conv.weight.copy_(w)
        if conv.bias is None:  # pragma: no cover - Conv2d(bias=True) always has one
            raise PlanError(f"{name}: a convolution without a bias")
        conv.bias.copy_(weights[name + ".bias"])
    return conv


class DeviceNet(nn.Module):
    """A device's own layers, built from its weights file (float32, eval only)."""

    def __init__(
        self,
        arch: Architecture,
        blocks: Sequence[int],
        weights: Mapping[str, Tensor],
        scale: int = 1,
    ) -> None:
        super().__init__()
        # 3x3 groups on one device (a parity device: ``bottleneck_scale`` times as many)
        paths = arch.network.cardinality // arch.groups * scale
        self.stem = _conv(weights, "stem", 1, 1, padding=1) if "stem.weight" in weights else None
        self.blocks = nn.ModuleDict(
            {str(b): _Block(weights, f"blocks.{b}.", arch.blocks[b].stride, paths) for b in blocks}
        )
        self.fc: nn.Linear | None = None
        if "fc.weight" in weights:
            w = weights["fc.weight"]
            self.fc = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                self.fc.weight.copy_(w)
                self.fc.bias.copy_(weights["fc.bias"])
        self.requires_grad_(False)  # inference only: no autograd graph, ever
        self.eval()

    def run_stem(self, x: Tensor) -> Tensor:
        """The stem: 3x3 convolution (batch norm folded) and ReLU."""
        if self.stem is None:
            raise PlanError("this device has no stem in its weights")
        return F.relu(self.stem(x))

    def run_block(self, b: int, x: Tensor) -> Tensor:
        """Block ``b`` on this device's stream."""
        out: Tensor = self.blocks[str(b)](x)
        return out

    def run_head(self, x: Tensor) -> Tensor:
        """Global average pool and the classifier on the stream's first channels: the
        logits."""
        if self.fc is None:
            raise PlanError("this device has no classifier in its weights")
        x = x[:, : self.fc.in_features]  # (B, w, H, W): a parity stream may be wider
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # (B, classes)
