"""Everything a plan says that follows from its space and policy, computed in one place.

The exporter writes these figures (:func:`derive`) and the loader recomputes them from the
plan's own ``space.toml`` and ``policy`` and refuses a plan that says otherwise: the wiring
of every device (blocks, sends, receives, their points, channels, shapes, bytes and wire
dtypes), the FLOPs and parameters per device, the totals, the prediction and, with parity
devices, the degraded rules and traffic. Weights and file checksums are not derived here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from snnas.arch import Architecture
from snnas.cost import DeviceProfile, communication, compute, latency, liveness, stem_bytes
from snnas.plan._program import Receive, Send
from snnas.plan._weights import expected_shapes
from snnas.space import SearchSpace

__all__ = ["Pair", "derive", "encoding_pairs", "live_pairs", "parity_shapes", "prediction"]

#: (sender, receiver, Send, Receive) of one transfer.
Pair = tuple[int, int, Send, Receive]


def live_pairs(
    space: SearchSpace, policy: Mapping[str, Any], encodings: bool = False
) -> tuple[Any, list[Pair]]:
    """The liveness of ``policy`` and its live transfers as pairs, stem copies first (with
    ``encodings``, what the parity devices read is live too)."""
    flow = liveness(space, policy, encodings=encodings)
    net = space.network
    pairs: list[Pair] = []
    shape = (net.stem_width, net.input_size, net.input_size)
    for dst in flow.stem_receivers:
        nbytes = stem_bytes(space)
        send = Send("stem", None, -1, dst, (0, net.stem_width), "float32", shape, nbytes)
        recv = Receive("stem", None, 0, -1, -1, (0, net.stem_width), "float32", shape, nbytes)
        pairs.append((0, dst, send, recv))
    for t in flow.live_transfers:
        shape = (t.n_send, t.size, t.size)
        send = Send("transfer", t.point, t.send_block, t.dst, (0, t.n_send), t.dtype, shape,
                    t.bytes)  # fmt: skip
        recv = Receive("transfer", t.point, t.src, t.send_block, t.aggregate_block,
                       (0, t.n_send), t.dtype, shape, t.bytes)  # fmt: skip
        pairs.append((t.src, t.dst, send, recv))
    return flow, pairs


def encoding_pairs(space: SearchSpace, policy: Mapping[str, Any]) -> list[Pair]:
    """Every encoding of normal operation (to a parity device) as a pair."""
    from snnas.cost import parity_plan

    pairs: list[Pair] = []
    for e in parity_plan(space, policy).encodings:
        shape = (e.channels, e.size, e.size)
        send = Send("encoding", e.point, e.send_block, e.dst, (0, e.channels), e.dtype, shape,
                    e.bytes)  # fmt: skip
        recv = Receive("encoding", e.point, e.src, e.send_block, e.aggregate_block,
                       (0, e.channels), e.dtype, shape, e.bytes)  # fmt: skip
        pairs.append((e.src, e.dst, send, recv))
    return pairs


def prediction(space: SearchSpace, policy: Mapping[str, Any], profile: DeviceProfile) -> dict:
    """The plan's ``prediction`` section for ``profile``."""
    lat = latency(space, policy, profile)
    return {
        "profile": profile.name,
        "flops_per_s": profile.flops,
        "bandwidth_bps": profile.bandwidth_bps,
        "link_latency_s": profile.link_latency_s,
        "latency_ms": 1e3 * lat.latency_s,
        "compute_ms": 1e3 * lat.compute_only_s,
        "exposed_transfer_ms": 1e3 * lat.exposed_transfer_s,
        "single_device_ms": 1e3 * lat.single_device_s,
        "speedup": lat.speedup,
    }


def parity_shapes(
    arch: Architecture,
    blocks: Sequence[int],
    head: bool,
    encoders: Sequence[Mapping[str, Any]],
    scale: int,
) -> dict[str, tuple[int, ...]]:
    """The tensors a parity device's weights file must hold, and their shapes (``scale``
    times a data device's bottleneck, its own stem, the encoders' weights)."""
    g = arch.groups
    shapes = expected_shapes(arch, blocks, head, scale=scale, stem=True)
    for enc in encoders:
        w = arch.points[enc["point"]].channels
        if enc["encoder"] == "concat":
            shapes[f"encoder.{enc['point']}.weight"] = (w, g, enc["channels"])
        elif enc["encoder"] == "sum":
            shapes[f"encoder.{enc['point']}.sum"] = (g,)
    return shapes


def _count(shapes: Mapping[str, tuple[int, ...]]) -> int:
    return sum(math.prod(s) for s in shapes.values())


def derive(
    space: SearchSpace,
    policy: Mapping[str, Any],
    profile: DeviceProfile,
    answers: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """What ``plan.json`` must say about ``policy`` on ``space``: ``schedule``, ``devices``
    (without ``weights`` and ``onnx``), ``totals``, ``prediction``, ``input.devices`` and,
    for a space with parity devices (``answers``: who answers for each lost data device),
    ``parity`` (without ``impute``)."""
    coded = answers is not None
    arch, net = space.arch, space.network
    flow, pairs = live_pairs(space, policy, encodings=coded)
    enc_pairs = encoding_pairs(space, policy) if coded else []
    comm = communication(space, policy)
    comp = compute(space, policy)
    devices = []
    for d in range(space.groups):
        blocks = list(flow.live_blocks[d])
        head = d == 0
        shapes = expected_shapes(arch, blocks, head) if head or blocks else {}
        devices.append(
            {
                "device": d,
                "role": "data",
                "input": head,
                "stem": head,
                "head": head,
                "blocks": blocks,
                "skipped_blocks": list(flow.skipped_blocks(d)),
                "sends": [s.to_json() for src, _, s, _ in (*pairs, *enc_pairs) if src == d],
                "receives": [r.to_json() for _, dst, _, r in pairs if dst == d],
                "flops": comp.live_flops_per_device[d],
                "params": _count(shapes),
            }
        )
    links: dict[tuple[int, int], int] = {}
    for src, dst, s, _ in pairs:
        links[(src, dst)] = links.get((src, dst), 0) + s.bytes
    stem_total = sum(s.bytes for _, _, s, _ in pairs if s.kind == "stem")
    transfer_total = sum(s.bytes for _, _, s, _ in pairs if s.kind == "transfer")
    out: dict[str, Any] = {
        "schedule": {
            "groups": space.groups,
            "alpha": space.alpha,
            "overlap": space.overlap,
            "blocks": arch.num_blocks,
            "points": [
                {
                    "point": p.index,
                    "send_block": p.block,
                    "aggregate_block": p.aggregate_block,
                    "channels": p.channels,
                    "size": p.size,
                }
                for p in arch.points
            ],
        },
        "devices": devices,
        "totals": {
            "bytes_per_image": stem_total + transfer_total,
            "stem_bytes": stem_total,
            "transfer_bytes": transfer_total,
            "links": [{"from": a, "to": b, "bytes": n} for (a, b), n in sorted(links.items())],
            "raw_policy_bytes": comm.policy_bytes,
            "live_policy_bytes": comm.live_policy_bytes,
            "ratio": comm.ratio,
            "live_ratio": comm.live_ratio,
            "flops": comp.live_total_flops,
        },
        "prediction": prediction(space, policy, profile),
        "input_devices": [0],
        "output": {"device": 0, "shape": [1, net.num_classes], "dtype": "float32"},
    }
    if answers is not None:
        _derive_parity(space, policy, answers, out, flow, enc_pairs)
    return out


def _derive_parity(
    space: SearchSpace,
    policy: Mapping[str, Any],
    answers: Sequence[bool],
    out: dict[str, Any],
    flow: Any,
    enc_pairs: Sequence[Pair],
) -> None:
    """Add the parity devices, their traffic and the degraded rules to ``out``."""
    from snnas.cost import degraded_rule, parity_cost

    g, r, arch = space.groups, space.parity.r, space.arch
    cost = parity_cost(space, policy)
    devices = out["devices"]
    for k in range(r):
        encoders = []
        for geo, dec, choice in zip(arch.points, space.resolve(policy),
                                    space.resolve_parity(policy), strict=True):  # fmt: skip
            m = choice.m_send(geo.channels)
            if m == 0:
                continue
            n, source = dec.n_send(geo.channels), dec.perm.index(k)
            mirror = {"from": source, "channels": n} if source != k and n > 0 else None
            encoders.append({"point": geo.index, "encoder": choice.encoder, "channels": m,
                             "wire_dtype": choice.dtype, "send_block": geo.block,
                             "after_block": geo.aggregate_block, "mirror": mirror})  # fmt: skip
        # Parity device 0 runs every block (it answers); the others up to the last point.
        last = arch.num_blocks - 1 if k == 0 else max(p.block for p in arch.points)
        blocks = list(range(last + 1))
        shapes = parity_shapes(arch, blocks, k == 0, encoders, space.parity.bottleneck_scale)
        devices.append(
            {
                "device": g + k,
                "role": "parity",
                "shadows": k,
                "input": True,
                "stem": True,
                "head": k == 0,
                "blocks": blocks,
                "skipped_blocks": [b for b in range(arch.num_blocks) if b not in blocks],
                "sends": [],
                "receives": [x.to_json() for _, dst, _, x in enc_pairs if dst == g + k],
                "encoders": encoders,
                "flops": cost.flops_per_parity[k],
                "params": _count(shapes),
            }
        )
    for d in range(g):  # blocks a data device computes only for the encodings
        devices[d]["flops"] += cost.extra_data_flops[d]
    out["input_devices"] = [0, *range(g, g + r)]
    # What the plan moves: a stand-in only to a receiver the plan has (dead transfers are
    # not sent), the stem only to the devices that compute.
    received = {(e["device"], x["from"], x["point"]) for e in devices for x in e["receives"]}
    stem_receivers = set(flow.stem_receivers)
    rules = []
    for j in range(g):
        for p in range(space.num_points):
            rule = degraded_rule(space, policy, j, p, list(answers)).to_json()
            rule["standins"] = [
                dict(s)
                for s in rule["standins"]
                if (s["point"] < 0 and s["dst"] in stem_receivers)
                or (s["point"] >= 0 and (s["dst"], j, s["point"]) in received)
            ]
            rule["stem_to"] = [d for d in rule["stem_to"] if d in stem_receivers]
            rule["bytes"] = sum(s["bytes"] for s in rule["standins"])
            rules.append(rule)
    links: dict[tuple[int, int], int] = {}
    for src, dst, s, _ in enc_pairs:
        links[(src, dst)] = links.get((src, dst), 0) + s.bytes
    out["parity"] = {
        "r": r,
        "data_devices": g,
        "devices": list(range(g, g + r)),
        "bottleneck_scale": space.parity.bottleneck_scale,
        "answers": [bool(a) for a in answers],
        "image_bytes": cost.image_bytes // r,
        "encoding_bytes": cost.encoding_bytes,
        "links": [{"from": a, "to": b, "bytes": n} for (a, b), n in sorted(links.items())],
        "flops": cost.flops,
        "rules": rules,
    }
