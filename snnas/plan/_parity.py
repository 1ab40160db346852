"""Parity devices in a plan (docs/plan.md, "Parity devices"; the design: docs/parity.md).

Export side: the data devices' encodings (extra sends, counted apart from the policy's
traffic), one entry and one weights file per parity device (its stem, blocks and head with
batch norm folded, and its encoder), the imputation constants, the ``answers`` table and the
degraded rule of every erasure position ``(j, p)``, so that a runtime needs no space object.

Program side: :func:`run_parity_device` runs a parity device from its own files (a
generator like :func:`~snnas.plan._program.run_device` that also yields its stream at every
point: the stand-ins it may have to send), :class:`Erasure` is one degraded rule as the
drivers use it, and :func:`execute_degraded` runs a whole plan in one process with device
``j`` unavailable from point ``p`` on (``plan verify``).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from snnas.arch import Architecture
from snnas.plan._program import WIRE_DTYPES, DeviceNet, Receive, Send, transfer_tag
from snnas.plan._weights import fold

__all__ = [
    "IMPUTE_FILE",
    "Erasure",
    "encoding_pairs",
    "parity_entries",
    "parity_expected_shapes",
    "run_parity_device",
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


@dataclass(frozen=True)
class Erasure:
    """One degraded rule of a plan (``parity.rules``): data device ``device`` unavailable from
    transmission point ``from_point`` on, as the drivers apply it."""

    device: int
    from_point: int
    answer_by: int
    standins: Mapping[tuple[int, int], Mapping[str, Any]]  # (point or -1, dst) -> stand-in

    @classmethod
    def from_json(cls, rule: Mapping[str, Any]) -> Erasure:
        """From a rule of the plan."""
        table = {(s["point"], s["dst"]): s for s in rule["standins"]}
        return cls(rule["device"], rule["from_point"], rule["answer_by"], table)

    def missing(self, src: int, point: int | None) -> bool:
        """Whether ``src``'s transfer at ``point`` (None: the stem) never arrives."""
        if src != self.device:
            return False
        return self.from_point == 0 if point is None else point >= self.from_point

    def standin(self, point: int | None, dst: int) -> Mapping[str, Any] | None:
        """What replaces the missing transfer to ``dst`` (None: ``dst`` stands in itself)."""
        return self.standins.get((-1 if point is None else point, dst))

    def sends(self, device: int, point: int | None) -> list[Mapping[str, Any]]:
        """The stand-ins ``device`` sends at ``point`` (None: its stem output)."""
        key = -1 if point is None else point
        return [s for (q, _), s in self.standins.items() if q == key and s["by"] == device]


def imputed(impute: Mapping[str, Tensor], point: int, device: int, channels: int,
            size: int, dtype: str) -> Tensor:  # fmt: skip
    """``impute{point}[device][:channels]`` as a payload (1, channels, H, W) in the wire dtype
    (what a receiver adds for a missing payload nobody stands in for, (P2))."""
    mean = impute[f"impute{point}"][device, :channels]
    return mean.view(1, channels, 1, 1).expand(1, channels, size, size).to(WIRE_DTYPES[dtype])


def standin_payload(state: Tensor, standin: Mapping[str, Any]) -> Tensor:
    """What a parity device sends for a stand-in: its stream's first channels."""
    return state[:, : standin["channels"]].to(WIRE_DTYPES[standin["dtype"]]).contiguous()


def _update(net: DeviceNet, enc_entry: Mapping[str, Any], enc: Tensor, width: int,
            weights: Mapping[str, Tensor]) -> Tensor:  # fmt: skip
    """(P1): what the encodings of one point add to the parity stream, (B, w, H, W).
    ``enc`` (B, G, m, H, W) holds every data device's encoding (zeros: sent nothing)."""
    q, m = enc_entry["point"], enc_entry["channels"]
    if enc_entry["encoder"] == "concat":
        add = torch.einsum("cgm,bgmhw->bchw", weights[f"encoder.{q}.weight"], enc)
    elif enc_entry["encoder"] == "sum":
        add = F.pad(torch.einsum("g,bgmhw->bmhw", weights[f"encoder.{q}.sum"], enc),
                    (0, 0, 0, 0, 0, width - m))  # fmt: skip
    else:  # mirror: only what the shadowed data device receives
        add = torch.zeros(enc.shape[0], width, *enc.shape[-2:])
    mirror = enc_entry["mirror"]
    if mirror is not None:
        n = mirror["channels"]
        payload = F.pad(enc[:, mirror["from"], : min(m, n)], (0, 0, 0, 0, 0, width - min(m, n)))
        add = add + payload
    return add


def run_parity_device(
    net: DeviceNet,
    entry: Mapping[str, Any],
    points: Sequence[Mapping[str, Any]],
    weights: Mapping[str, Tensor],
    groups: int,
    image: Tensor,
) -> Generator[tuple[str, Any, Any], Tensor | None, Tensor | None]:
    """A parity device on one batch: yields ``("state", point, stream)`` at the stem
    (point None) and at every transmission point (what its stand-ins are cut from; resume
    with None) and ``("recv", Receive, None)`` for every encoding (resume with the tensor);
    returns the answer (parity device 0) or None."""
    receives = [Receive.from_json(r) for r in entry["receives"]]
    encoders = {e["point"]: e for e in entry["encoders"]}
    blocks = set(entry["blocks"])
    y = net.run_stem(image)
    yield ("state", None, y)

    def encodings(q: int) -> Generator[tuple[str, Any, Any], Tensor | None, Tensor]:
        e, p = encoders[q], points[q]
        enc = torch.zeros(y.shape[0], groups, e["channels"], p["size"], p["size"])
        for r in (r for r in receives if r.point == q):
            got = yield ("recv", r, None)
            assert got is not None
            enc[:, r.src, : r.channels[1]] = got.to(torch.float32)
        return _update(net, e, enc, p["channels"], weights)

    for b in range(max(blocks) + 1):
        if b in blocks:
            y = net.run_block(b, y)
        for q, e in encoders.items():
            if e["after_block"] == b and e["send_block"] < b:
                y = y + (yield from encodings(q))
        for p in points:
            if p["send_block"] == b:
                yield ("state", p["point"], y)
                e = encoders.get(p["point"])
                if e is not None and e["after_block"] == b:
                    y = y + (yield from encodings(p["point"]))
    if not entry["head"]:
        return None
    return net.run_head(y[:, : net.fc.in_features] if net.fc is not None else y)


def execute_degraded(
    plan: Any, images: Tensor, erasure: Erasure | None, nets: Mapping[int, DeviceNet]
) -> Tensor:
    """Run every device of a plan with parity devices in one process, with ``erasure``
    applied (None: normal operation); the system's answer (see :class:`Erasure`)."""
    from snnas.plan._program import run_device
    from snnas.plan._verify import PlanError

    g, world = plan.groups, plan.world
    impute = plan.impute()
    points = plan.data["schedule"]["points"]
    gens: dict[int, Any] = {}
    for d in range(world):
        entry = plan.device(d)
        if d >= g:
            gens[d] = run_parity_device(nets[d], entry, points, plan.weights(d), g, images)
        else:
            gens[d] = run_device(nets[d], plan.ops[d], images if entry["input"] else None)
    mailbox: dict[tuple[int, int, int], Tensor] = {}
    states: dict[int, dict[int | None, Tensor]] = {d: {} for d in range(world)}
    requests: dict[int, Any] = {}
    answers: dict[int, Tensor] = {}

    def advance(d: int, value: Tensor | None) -> None:
        try:
            requests[d] = gens[d].send(value) if d in requests else next(gens[d])
        except StopIteration as stop:
            requests.pop(d, None)
            del gens[d]
            if stop.value is not None:
                answers[d] = stop.value

    def resolve(d: int, r: Receive) -> tuple[int, int, int] | Tensor:
        """Where ``d``'s receive comes from: a mailbox key, or a tensor made here."""
        if erasure is None or not erasure.missing(r.src, r.point):
            return (r.src, d, r.tag)
        s = erasure.standin(r.point, d)
        if s is None:  # a parity device in its own data device's slot: its own stream
            return standin_payload(states[d][r.point], {"channels": r.channels[1],
                                                        "dtype": r.wire_dtype})  # fmt: skip
        if s["by"] is None:
            assert r.point is not None
            return imputed(impute, r.point, r.src, s["channels"], r.shape[1], r.wire_dtype)
        return (s["by"], d, transfer_tag("standin", r.point))

    for d in list(gens):
        advance(d, None)
    while gens:
        moved = False
        for d in list(gens):
            kind, op, tensor = requests[d]
            if kind == "state":
                states[d][op] = tensor
                for s in erasure.sends(d, op) if erasure is not None else []:
                    if erasure is not None and (op is not None or erasure.from_point == 0):
                        key = (d, s["dst"], transfer_tag("standin", op))
                        mailbox[key] = standin_payload(tensor, s)
                advance(d, None)
            elif kind == "send":
                if erasure is None or not erasure.missing(d, op.point):
                    mailbox[(d, op.to, op.tag)] = tensor
                advance(d, None)
            else:
                where = resolve(d, op)
                if isinstance(where, Tensor):
                    advance(d, where.expand(len(images), *where.shape[1:]))
                elif where in mailbox:
                    advance(d, mailbox.pop(where))
                else:
                    continue
            moved = True
        if not moved:
            waiting = {d: (requests[d][1].src, requests[d][1].point) for d in gens}
            raise PlanError(f"the plan cannot finish: devices wait on (sender, point) {waiting}")
    answer_by = 0 if erasure is None else erasure.answer_by
    if answer_by not in answers:
        raise PlanError(f"device {answer_by} produced no answer")
    return answers[answer_by]


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
    from snnas.plan._export import _receive_json

    policy = coded.base.policy
    g, r = space.groups, space.parity.r
    answers = [bool(a) for a in coded.parity.answers.tolist()]
    entries = parity_entries(space, policy, enc_pairs)
    weights: dict[int, dict[str, Tensor]] = {}
    for k, entry in enumerate(entries):
        weights[g + k] = parity_weights(coded.parity, k, policy)
        entry["params"] = sum(t.numel() for t in weights[g + k].values())
        entry["receives"] = [_receive_json(x) for x in entry["receives"]]
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
