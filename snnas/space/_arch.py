"""Sep-ResNeXt geometry, computed from the configuration alone (no torch).

Everything that the cost model, ``snnas space show`` and the tests need to know about shapes
lives here: the blocks, the transmission points and where each transfer is aggregated, and
exact parameter and multiply-accumulate counts. The torch models in ``snnas.models`` are
checked against these numbers.

Conventions (see ``docs/supernet.md``):

* Blocks are numbered ``0..B-1`` over the whole network; stage ``s`` has residual width
  ``stage_widths[s]`` per device and bottleneck width ``C * d * 2**s`` summed over devices.
  The stride of a stage's first block (stages after the first) sits on its 3x3 convolution,
  as in torchvision's ResNeXt.
* Transmission point ``p`` sends after block ``(p + 1) * alpha - 1``; there are
  ``B // alpha`` points.
* A transfer sent after block ``b`` is added to the receiver's stream after block
  ``min(b + overlap, last block of b's stage)`` (:meth:`Architecture.aggregation_block`, the
  one schedule every consumer reads). ``overlap`` defaults to ``alpha - 1``: the paper's
  alpha = 1 is fully synchronous (the receiver waits, nothing overlaps) and alpha > 1 lets
  ``alpha - 1`` blocks of compute hide the transfer. A transfer never crosses a stage
  boundary, so its shape always matches the receiver's stream (docs/supernet.md).
* Within block ``b`` every device does, in this order: compute the block; add the transfers
  sent at earlier blocks that are due at ``b``; send its own transfer (if ``b`` is a
  transmission point); add the transfers sent at ``b`` and due at ``b``. The supernet, the
  latency simulation, liveness, the plan and the runtime all follow this order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from snnas.space._config import NetworkConfig, default_overlap

__all__ = ["Architecture", "BlockGeometry", "PointGeometry", "default_overlap"]


@dataclass(frozen=True)
class BlockGeometry:
    """One bottleneck block, counted per device (divide the separable totals by G)."""

    index: int  # block number in the whole network
    stage: int  # stage number
    in_width: int  # residual-stream channels entering the block (per device)
    out_width: int  # residual-stream channels leaving the block (per device)
    mid_width: int  # bottleneck channels of the whole block (all devices): C * d * 2**stage
    stride: int  # stride of the 3x3 convolution (2 on the first block of later stages)
    in_size: int  # input height = width
    out_size: int  # output height = width

    @property
    def projection(self) -> bool:
        """Whether the shortcut is a 1x1 convolution (shape change) instead of identity."""
        return self.in_width != self.out_width or self.stride != 1


@dataclass(frozen=True)
class PointGeometry:
    """A transmission point: where a decision is applied and where its transfer lands."""

    index: int  # point number
    block: int  # the transfer is sent after this block
    aggregate_block: int  # ... and added to the receiver's stream after this block
    channels: int  # residual-stream width of one device at the send (N_total)
    size: int  # height = width of the stream at the send

    @property
    def elements(self) -> int:
        """Elements of one device's full stream at this point (``channels * size**2``)."""
        return self.channels * self.size * self.size


class Architecture:
    """Geometry of a Sep-ResNeXt (or plain ResNeXt) with G devices and staleness alpha."""

    def __init__(
        self, network: NetworkConfig, groups: int, alpha: int, overlap: int | None = None
    ) -> None:
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        if not 1 <= alpha <= network.num_blocks:
            raise ValueError(f"alpha must be in [1, {network.num_blocks}], got {alpha}")
        if overlap is None:
            overlap = default_overlap(network, alpha)
        if not 0 <= overlap < network.blocks_per_stage:
            raise ValueError(
                f"overlap must be in [0, {network.blocks_per_stage - 1}], got {overlap}"
            )
        self.network = network
        self.groups = groups
        self.alpha = alpha
        self.overlap = overlap  # blocks computed between a send and the addition

    @cached_property
    def blocks(self) -> tuple[BlockGeometry, ...]:
        """Every bottleneck block, in order."""
        net = self.network
        blocks: list[BlockGeometry] = []
        in_width, size = net.stem_width, net.input_size
        for stage, width in enumerate(net.stage_widths):
            mid = net.cardinality * net.bottleneck_width * 2**stage
            for j in range(net.blocks_per_stage):
                stride = 2 if stage > 0 and j == 0 else 1
                out_size = size // stride
                blocks.append(
                    BlockGeometry(len(blocks), stage, in_width, width, mid, stride, size, out_size)
                )
                in_width, size = width, out_size
        return tuple(blocks)

    @property
    def num_blocks(self) -> int:
        """B, the number of bottleneck blocks."""
        return len(self.blocks)

    def stage_end(self, block: int) -> int:
        """The last block of ``block``'s stage."""
        per = self.network.blocks_per_stage
        return (block // per + 1) * per - 1

    def aggregation_block(self, send_block: int) -> int:
        """The schedule: a transfer sent after ``send_block`` is added to the receiver's stream
        after this block, ``min(send_block + overlap, last block of its stage)``."""
        return min(send_block + self.overlap, self.stage_end(send_block))

    @cached_property
    def points(self) -> tuple[PointGeometry, ...]:
        """Every transmission point, in order (``B // alpha`` of them)."""
        points = []
        for p in range(self.num_blocks // self.alpha):
            block = (p + 1) * self.alpha - 1
            geo = self.blocks[block]
            aggregate = self.aggregation_block(block)
            points.append(PointGeometry(p, block, aggregate, geo.out_width, geo.out_size))
        return tuple(points)

    # ----------------------------------------------------------------- parameters
    def _bn(self, channels: int) -> int:
        return 2 * channels  # weight and bias; running statistics are buffers

    def block_params(self, block: BlockGeometry, separable: bool) -> int:
        """Parameters of one block: all devices together when ``separable``."""
        g = self.groups if separable else 1
        c = self.network.cardinality
        in_w, out_w = block.in_width * g, block.out_width * g
        mid = block.mid_width
        params = in_w * mid // g + self._bn(mid)  # conv1 1x1, grouped by G
        params += 9 * mid * mid // c + self._bn(mid)  # conv2 3x3, C groups
        params += mid * out_w // g + self._bn(out_w)  # conv3 1x1, grouped by G
        if block.projection:
            params += in_w * out_w // g + self._bn(out_w)  # shortcut 1x1, grouped by G
        return params

    def stem_params(self) -> int:
        """The 3x3 stem convolution and its batch norm (computed once, then duplicated)."""
        net = self.network
        return 9 * net.input_channels * net.stem_width + self._bn(net.stem_width)

    def head_params(self) -> int:
        """The linear classifier on device 0's final stream."""
        net = self.network
        return net.stage_widths[-1] * net.num_classes + net.num_classes

    def params(self, separable: bool = True) -> int:
        """Total parameters of the separable network (or of the plain ResNeXt)."""
        body = sum(self.block_params(b, separable) for b in self.blocks)
        return self.stem_params() + body + self.head_params()

    def params_per_device(self) -> tuple[int, ...]:
        """Parameters held by each device; device 0 also holds the stem and the head."""
        body = sum(self.block_params(b, True) for b in self.blocks) // self.groups
        extra = self.stem_params() + self.head_params()
        return tuple(body + (extra if d == 0 else 0) for d in range(self.groups))

    # ----------------------------------------------------------------- compute
    def block_macs(self, block: BlockGeometry) -> int:
        """Multiply-accumulates of one block on one device (convolutions only)."""
        g, c = self.groups, self.network.cardinality
        mid = block.mid_width // g  # this device's bottleneck channels
        path = block.mid_width // c  # channels per 3x3 path
        in_hw, out_hw = block.in_size**2, block.out_size**2
        macs = block.in_width * mid * in_hw  # conv1
        macs += 9 * path * mid * out_hw  # conv2
        macs += mid * block.out_width * out_hw  # conv3
        if block.projection:
            macs += block.in_width * block.out_width * out_hw  # shortcut
        return macs

    def stem_macs(self) -> int:
        """Multiply-accumulates of the stem (computed once, on device 0)."""
        net = self.network
        return 9 * net.input_channels * net.stem_width * net.input_size**2

    def head_macs(self) -> int:
        """Multiply-accumulates of the classifier (device 0)."""
        net = self.network
        return net.stage_widths[-1] * net.num_classes
