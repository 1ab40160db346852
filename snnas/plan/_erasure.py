"""Running a plan with parity devices: a parity device's program and the degraded rules
(docs/plan.md, "Parity devices"; the design: docs/parity.md).

:func:`run_parity_device` runs a parity device from its own files (a generator like
:func:`~snnas.plan._program.run_device` that also yields its stream at every point: what its
stand-ins are cut from), :class:`Erasure` is one degraded rule as the drivers apply it,
:func:`execute_degraded` runs a whole plan in one process with data device ``j`` unavailable
from point ``p`` on, and :func:`verify_degraded` checks every erasure position of a plan
(``snnas plan verify``). The runtime's driver is ``snnas/runtime/_failover.py``.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from snnas.errors import PlanError
from snnas.plan._program import WIRE_DTYPES, DeviceNet, Receive, Send, transfer_tag

__all__ = [
    "Erasure",
    "execute_degraded",
    "imputed",
    "run_parity_device",
    "standin_payload",
    "verify_degraded",
]


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
    from snnas.plan._verify import run_mailbox

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

    def on_state(d: int, point: int | None, tensor: Tensor) -> None:
        """A device's stream after a point's block: kept, and sent as the stand-ins the
        erasure asks of it."""
        states[d][point] = tensor
        if erasure is None or (point is None and erasure.from_point != 0):
            return
        for s in erasure.sends(d, point):
            mailbox[(d, s["dst"], transfer_tag("standin", point))] = standin_payload(tensor, s)

    def post(d: int, send: Send) -> bool:
        """A payload of the unavailable device from its point on never leaves it."""
        return erasure is None or not erasure.missing(d, send.point)

    answers = run_mailbox(gens, len(images), mailbox, post=post, resolve=resolve,
                          on_state=on_state)  # fmt: skip
    answer_by = 0 if erasure is None else erasure.answer_by
    if answer_by not in answers:
        raise PlanError(f"device {answer_by} produced no answer")
    return answers[answer_by]


def verify_degraded(
    plan: Any,
    images: Tensor,
    labels: Tensor,
    reference: Mapping[str, Tensor],
    split: str,
    nets: Mapping[int, DeviceNet],
) -> dict[str, Any]:
    """Every erasure position executed from the plan's own files (its degraded rules) and
    compared with the coded network's answers for it (``{split}.degraded.{j}.{p}``)."""
    from snnas.plan._verify import compare_logits, passed

    assert plan.parity is not None
    positions = []
    for rule in plan.parity["rules"]:
        j, p = rule["device"], rule["from_point"]
        key = f"{split}.degraded.{j}.{p}"
        if key not in reference:
            raise PlanError(f"{plan.folder}: no reference degraded logits {key!r}")
        logits = execute_degraded(plan, images, Erasure.from_json(rule), nets)
        result = compare_logits(logits, reference[key], labels)
        positions.append({"device": j, "from_point": p, "answer_by": rule["answer_by"],
                          "standin_bytes": rule["bytes"], **result,
                          "passed": passed(result)})  # fmt: skip
    n = max(len(positions), 1)
    return {
        "positions": positions,
        "min_top1_agreement": min(x["top1_agreement"] for x in positions),
        "max_abs_diff": max(x["max_abs_diff"] for x in positions),
        "accuracy": sum(x["accuracy"] for x in positions) / n,
        "reference_accuracy": sum(x["reference_accuracy"] for x in positions) / n,
        "passed": all(x["passed"] for x in positions),
    }
