"""ResNeXt for CIFAR-sized inputs (the paper's baseline) and its bottleneck block.

The block is written once for both networks: the plain ResNeXt is the G = 1 case of the
separable one, whose 1x1 convolutions and shortcuts are grouped by G (Lin & Wang, eq. (8)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnas.arch import Architecture, BlockGeometry
from snnas.space import NetworkConfig

__all__ = ["Bottleneck", "ResNeXt", "Stem"]


class Bottleneck(nn.Module):
    """ResNeXt bottleneck over ``streams`` devices stacked along the channel axis.

    conv1 (1x1, grouped by streams) -> conv2 (3x3, C groups, stride) -> conv3 (1x1, grouped by
    streams), batch norm after each, shortcut 1x1 convolution when the shape changes. Every
    convolution is grouped so that device ``i`` only reads and writes its own channel slice;
    batch norm is per channel, hence per device.
    """

    def __init__(self, geo: BlockGeometry, cardinality: int, streams: int) -> None:
        super().__init__()
        in_ch, out_ch, mid = geo.in_width * streams, geo.out_width * streams, geo.mid_width
        self.conv1 = nn.Conv2d(in_ch, mid, 1, bias=False, groups=streams)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(
            mid, mid, 3, stride=geo.stride, padding=1, bias=False, groups=cardinality
        )
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_ch, 1, bias=False, groups=streams)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Sequential | None = None
        if geo.projection:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=geo.stride, bias=False, groups=streams),
                nn.BatchNorm2d(out_ch),
            )
        self.streams = streams
        self.stride = geo.stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = F.relu(self.bn1(self.conv1(x)))  # (B, mid, H, W)
        out = F.relu(self.bn2(self.conv2(out)))  # (B, mid, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (B, streams * out_w, H/s, W/s)
        if self.downsample is not None:
            # Under autocast the projection comes out in bfloat16: the stream keeps the
            # dtype it came in with (float32), so transfers and their float16 rounding stay
            # real (docs/supernet.md).
            identity = self.downsample(x).to(x.dtype)
        out = out + identity  # a bfloat16 branch is promoted to the stream's float32
        return F.relu(out)


class Stem(nn.Module):
    """3x3 convolution, batch norm, ReLU."""

    def __init__(self, network: NetworkConfig) -> None:
        super().__init__()
        self.conv = nn.Conv2d(network.input_channels, network.stem_width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(network.stem_width)

    def forward(self, x: Tensor) -> Tensor:
        # The residual stream starts in float32 even under autocast (only convolutions run
        # in bfloat16): see Bottleneck.forward.
        return F.relu(self.bn(self.conv(x))).to(x.dtype)


class ResNeXt(nn.Module):
    """The plain (non-separable) ResNeXt of depth 9n+2: the paper's baseline model."""

    def __init__(self, network: NetworkConfig) -> None:
        super().__init__()
        arch = Architecture(network, groups=1, alpha=1)
        self.network = network
        self.stem = Stem(network)
        self.blocks = nn.ModuleList(Bottleneck(b, network.cardinality, 1) for b in arch.blocks)
        self.fc = nn.Linear(network.stage_widths[-1], network.num_classes)
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        out = self.stem(x)  # (B, stem, H, W)
        for block in self.blocks:
            out = block(out)
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)  # (B, C_last)
        return self.fc(out)


def _init_weights(model: nn.Module) -> None:
    """He initialisation for convolutions; the last batch norm of each block starts at zero
    so that every residual block starts as the identity (Goyal et al., 2017)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, Bottleneck):
            nn.init.zeros_(m.bn3.weight)
