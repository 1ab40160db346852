"""Parity devices in a plan (docs/plan.md, "Parity devices"; the design: docs/parity.md).

Export side: the data devices' encodings (extra sends, counted apart from the policy's
traffic), one entry and one weights file per parity device (its stem, blocks and head with
batch norm folded, and its encoder), the imputation constants, the ``answers`` table and the
degraded rule of every erasure position ``(j, p)``, so that a runtime needs no space object.

How the devices run it: ``snnas/plan/_erasure.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from snnas.arch import Architecture
from snnas.plan._program import Receive, Send
from snnas.plan._weights import fold

__all__ = [
    "IMPUTE_FILE",
    "degraded_reference",
    "encoding_pairs",
    "impute_tensors",
    "parity_entries",
    "parity_expected_shapes",
    "parity_section",
]

IMPUTE_FILE = "impute.safetensors"


def encoding_pairs(space: Any, policy: Mapping[str, Any]) -> list[tuple[int, int, Send, Receive]]:
    """Every encoding of normal operation as (src, dst, Send, Receive) (``parity_plan``)."""
    from snnas.cost import parity_plan

    pairs = []
    for e in parity_plan(space, policy).encodings:
        shape = (e.channels, e.size, e.size)
        send = Send("encoding", e.point, e.send_block, e.dst, (0, e.channels), e.dtype, shape,
                    e.bytes)  # fmt: skip
        recv = Receive("encoding", e.point, e.src, e.send_block, e.aggregate_block,
                       (0, e.channels), e.dtype, shape, e.bytes)  # fmt: skip
        pairs.append((e.src, e.dst, send, recv))
    return pairs


def _parity_blocks(arch: Architecture, k: int) -> list[int]:
    """Parity device 0 runs every block (it answers); the others up to the last point."""
    last = arch.num_blocks - 1 if k == 0 else max(p.block for p in arch.points)
    return list(range(last + 1))


@torch.no_grad()
def parity_weights(streams: Any, k: int, policy: Mapping[str, Any]) -> dict[str, Tensor]:
    """Parity device ``k``'s folded weights (``ParityDevice``'s, named like a data device's,
    plus ``encoder.{q}.weight`` (w, G, m) for ``concat`` and ``encoder.{q}.sum`` (G,))."""
    from snnas.models.parity import ParityDevice

    dev = ParityDevice(streams, k, policy)
    space = streams.space
    out: dict[str, Tensor] = {}
    out["stem.weight"], out["stem.bias"] = fold(dev.stem.conv, dev.stem.bn, slice(None))
    for b in _parity_blocks(space.arch, k):
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


def parity_expected_shapes(
    arch: Architecture, entry: Mapping[str, Any], scale: int
) -> dict[str, tuple[int, ...]]:
    """The tensors a parity device's weights file must hold, and their shapes."""
    from snnas.plan._weights import expected_shapes

    shapes = expected_shapes(arch, entry["blocks"], entry["head"], scale=scale, stem=True)
    g = arch.groups
    for enc in entry["encoders"]:
        w = arch.points[enc["point"]].channels
        if enc["encoder"] == "concat":
            shapes[f"encoder.{enc['point']}.weight"] = (w, g, enc["channels"])
        elif enc["encoder"] == "sum":
            shapes[f"encoder.{enc['point']}.sum"] = (g,)
    return shapes


def parity_entries(
    space: Any, policy: Mapping[str, Any], pairs: Sequence[tuple[int, int, Send, Receive]]
) -> list[dict[str, Any]]:
    """The plan's device entries of the parity devices (weights filled in by the exporter)."""
    from snnas.cost import parity_cost

    g, r, arch = space.groups, space.parity.r, space.arch
    cost = parity_cost(space, policy)
    entries = []
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
        blocks = _parity_blocks(arch, k)
        receives = [r_ for _, dst, _, r_ in pairs if dst == g + k]
        entries.append({
            "device": g + k, "role": "parity", "shadows": k, "input": True, "stem": True,
            "head": k == 0, "blocks": blocks,
            "skipped_blocks": [b for b in range(arch.num_blocks) if b not in blocks],
            "sends": [], "receives": receives, "encoders": encoders, "weights": None,
            "flops": cost.flops_per_parity[k], "params": 0,
        })  # fmt: skip
    return entries


def parity_section(
    space: Any,
    coded: Any,
    plan: dict[str, Any],
    flow: Any,
    enc_pairs: Sequence[tuple[int, int, Send, Receive]],
) -> tuple[dict[str, Any], dict[int, dict[str, Tensor]]]:
    """Add the parity devices to ``plan`` (entries, input devices) and return its ``parity``
    section (the impute file is filled in by the exporter) and the parity devices' weights."""
    from snnas.cost import degraded_rule, parity_cost

    policy = coded.base.policy
    g, r = space.groups, space.parity.r
    answers = [bool(a) for a in coded.parity.answers.tolist()]
    entries = parity_entries(space, policy, enc_pairs)
    weights: dict[int, dict[str, Tensor]] = {}
    for k, entry in enumerate(entries):
        weights[g + k] = parity_weights(coded.parity, k, policy)
        entry["params"] = sum(t.numel() for t in weights[g + k].values())
        entry["receives"] = [x.to_json() for x in entry["receives"]]
    plan["devices"].extend(entries)
    plan["input"]["devices"] = [0, *range(g, g + r)]
    # What the plan moves: a stand-in only to a receiver the plan has (dead transfers are
    # not sent), the stem only to the devices that compute.
    received = {(e["device"], x["from"], x["point"]) for e in plan["devices"]
                for x in e["receives"]}  # fmt: skip
    stem_receivers = set(flow.stem_receivers)
    rules = []
    for j in range(g):
        for p in range(space.num_points):
            rule = degraded_rule(space, policy, j, p, answers).to_json()
            rule["standins"] = [
                s for s in rule["standins"]
                if (s["point"] < 0 and s["dst"] in stem_receivers)
                or (s["point"] >= 0 and (s["dst"], j, s["point"]) in received)
            ]  # fmt: skip
            rule["stem_to"] = [d for d in rule["stem_to"] if d in stem_receivers]
            rule["bytes"] = sum(s["bytes"] for s in rule["standins"])
            rules.append(rule)
    cost = parity_cost(space, policy)
    for d in range(g):  # blocks a data device computes only for the encodings
        plan["devices"][d]["flops"] += cost.extra_data_flops[d]
    links: dict[tuple[int, int], int] = {}
    for src, dst, s, _ in enc_pairs:
        links[(src, dst)] = links.get((src, dst), 0) + s.bytes
    section = {
        "r": r,
        "data_devices": g,
        "devices": list(range(g, g + r)),
        "bottleneck_scale": space.parity.bottleneck_scale,
        "answers": answers,
        "impute": None,
        "image_bytes": cost.image_bytes // r,
        "encoding_bytes": cost.encoding_bytes,
        "links": [{"from": a, "to": b, "bytes": n} for (a, b), n in sorted(links.items())],
        "flops": cost.flops,
        "rules": rules,
    }
    return section, weights


def impute_tensors(coded: Any) -> dict[str, Tensor]:
    """The imputation constants, ``impute{q}`` (G, w) per point."""
    space = coded.space
    return {
        f"impute{p.index}": coded.parity.impute(p.index).detach().float().contiguous()
        for p in space.arch.points
    }


@torch.no_grad()
def degraded_reference(coded: Any, data: Any, progress: Any = None) -> dict[str, Tensor]:
    """The coded network's answers at every erasure position on the validation and test
    splits: ``{split}.degraded.{j}.{p}`` (N, classes)."""
    from snnas.models.parity import erasure_grid, fail_at_tensor

    space = coded.space
    positions = erasure_grid(space.groups, space.num_points)
    out: dict[str, Tensor] = {}
    for split in ("val", "test"):
        images, _ = data.eval_tensors(split)
        for done, (j, p) in enumerate(positions):
            chunks = []
            for i in range(0, len(images), 256):
                x = images[i : i + 256]
                fail_at = fail_at_tensor([(j, p)], space.groups, len(x))
                chunks.append(coded(x, None, fail_at).logits)
            out[f"{split}.degraded.{j}.{p}"] = torch.cat(chunks).float().contiguous()
            if progress is not None:
                progress(f"degraded {split}", done + 1, len(positions), {})
    return out
