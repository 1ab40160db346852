"""The parity lines of ``snnas cost``: the parity devices' traffic, compute and parameters,
and what the data devices compute only for the encodings (docs/parity.md). Apart from
``_parity.py`` because it reads the policy's liveness, which reads the parity plan."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from snnas.arch import Architecture
from snnas.cost._liveness import liveness, parity_live_blocks
from snnas.cost._parity import (
    ParityCost,
    _block_macs,
    _block_params,
    degraded_rule,
    parity_plan,
)
from snnas.space import SearchSpace

__all__ = ["parity_cost"]


def parity_cost(space: SearchSpace, policy: Mapping[str, Any]) -> ParityCost:
    """The parity devices' traffic, compute and parameters under ``policy``."""
    g, r = space.groups, space.parity.r
    arch: Architecture = space.arch
    if r == 0:
        zeros = tuple(0 for _ in range(g))
        return ParityCost(0, 0, 0, (), (), (), zeros, tuple(() for _ in range(g)), zeros)
    scale = space.parity.bottleneck_scale
    paths = space.network.cardinality // g * scale
    plan = parity_plan(space, policy)
    per_point = [0] * space.num_points
    for e in plan.encodings:
        per_point[e.point] += e.bytes
    body_macs = sum(_block_macs(b, b.mid_width // g * scale, paths) for b in arch.blocks)
    body_params = sum(_block_params(b, b.mid_width // g * scale, paths) for b in arch.blocks)
    enc_macs = enc_params = 0
    for geo, choice in zip(arch.points, space.resolve_parity(policy), strict=True):
        m = choice.m_send(geo.channels)
        if m == 0:
            continue
        if choice.encoder == "concat":  # a 1x1 convolution from G * m channels to w
            enc_macs += g * m * geo.channels * geo.size**2
            enc_params += g * m * geo.channels
        elif choice.encoder == "sum":  # one weight per data device
            enc_macs += g * m * geo.size**2
            enc_params += g
    flops, params = [], []
    for k in range(r):
        head = arch.head_macs() if k == 0 else 0
        flops.append(2 * (arch.stem_macs() + body_macs + enc_macs + head))
        params.append(
            arch.stem_params()
            + body_params
            + enc_params
            + (arch.head_params() if k == 0 else 0)
            + sum(geo.channels for geo in arch.points) * g  # the imputation constants
        )
    head_live = liveness(space, policy).live_blocks
    needed = parity_live_blocks(space, policy)
    extra_blocks = tuple(
        tuple(b for b in needed[d] if b not in set(head_live[d])) for d in range(g)
    )
    extra_flops = tuple(
        sum(2 * arch.block_macs(arch.blocks[b]) for b in blocks) for blocks in extra_blocks
    )
    degraded = tuple(degraded_rule(space, policy, j, 0).bytes for j in range(g))
    return ParityCost(
        r,
        plan.image_bytes * r,
        sum(e.bytes for e in plan.encodings),
        tuple(per_point),
        tuple(flops),
        tuple(params),
        extra_flops,
        extra_blocks,
        degraded,
    )
