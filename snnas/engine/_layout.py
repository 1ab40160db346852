"""Every device's program from the space and the policy, without a plan folder.

:func:`device_entries` lays out what each device computes, sends and receives (the device
entries of a plan: ``input``, ``stem``, ``head``, ``blocks``, ``sends``, ``receives``, and a
parity device's ``encoders``) from the cost model's analysis of a policy: its liveness
(``snnas.cost.liveness``) and its parity plan's encodings (``snnas.cost.parity_plan``). The
plan exporter and the cost model's prediction read the same layout, so the prediction runs
exactly the programs a plan runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from snnas.engine._program import Receive, Send
from snnas.space import SearchSpace

__all__ = ["device_entries", "encoding_pairs", "parity_blocks", "transfer_pairs"]

_FP32 = 4

#: (sender, receiver, Send, Receive)
Pair = tuple[int, int, Send, Receive]


def transfer_pairs(space: SearchSpace, flow: Any, *, live: bool = True) -> list[Pair]:
    """The stem's copies then the transfers of ``flow`` (a ``snnas.cost.Liveness``): the live
    ones, or with ``live=False`` every one, to every device."""
    net = space.network
    shape = (net.stem_width, net.input_size, net.input_size)
    nbytes = net.stem_width * net.input_size**2 * _FP32
    receivers = flow.stem_receivers if live else tuple(range(1, space.groups))
    pairs: list[Pair] = []
    for dst in receivers:
        send = Send("stem", None, -1, dst, (0, net.stem_width), "float32", shape, nbytes)
        recv = Receive("stem", None, 0, -1, -1, (0, net.stem_width), "float32", shape, nbytes)
        pairs.append((0, dst, send, recv))
    for t in flow.live_transfers if live else flow.transfers:
        shape = (t.n_send, t.size, t.size)
        send = Send(
            "transfer", t.point, t.send_block, t.dst, (0, t.n_send), t.dtype, shape, t.bytes
        )
        recv = Receive("transfer", t.point, t.src, t.send_block, t.aggregate_block,
                       (0, t.n_send), t.dtype, shape, t.bytes)  # fmt: skip
        pairs.append((t.src, t.dst, send, recv))
    return pairs


def encoding_pairs(encodings: Sequence[Any]) -> list[Pair]:
    """Every encoding of normal operation (``snnas.cost.EncodingTransfer``) as a pair."""
    pairs = []
    for e in encodings:
        shape = (e.channels, e.size, e.size)
        send = Send("encoding", e.point, e.send_block, e.dst, (0, e.channels), e.dtype, shape,
                    e.bytes)  # fmt: skip
        recv = Receive("encoding", e.point, e.src, e.send_block, e.aggregate_block,
                       (0, e.channels), e.dtype, shape, e.bytes)  # fmt: skip
        pairs.append((e.src, e.dst, send, recv))
    return pairs


def parity_blocks(space: SearchSpace, k: int) -> list[int]:
    """Parity device 0 runs every block (it answers); the others up to the last point."""
    arch = space.arch
    last = arch.num_blocks - 1 if k == 0 else max(p.block for p in arch.points)
    return list(range(last + 1))


def _encoders(space: SearchSpace, policy: Mapping[str, Any], k: int) -> list[dict[str, Any]]:
    encoders = []
    for geo, dec, choice in zip(space.arch.points, space.resolve(policy),
                                space.resolve_parity(policy), strict=True):  # fmt: skip
        m = choice.m_send(geo.channels)
        if m == 0:
            continue
        n, source = dec.n_send(geo.channels), dec.perm.index(k)
        mirror = {"from": source, "channels": n} if source != k and n > 0 else None
        encoders.append({"point": geo.index, "encoder": choice.encoder, "channels": m,
                         "wire_dtype": choice.dtype, "send_block": geo.block,
                         "after_block": geo.aggregate_block, "mirror": mirror})  # fmt: skip
    return encoders


def device_entries(
    space: SearchSpace,
    policy: Mapping[str, Any],
    flow: Any,
    encodings: Sequence[Any] = (),
    *,
    live: bool = True,
) -> list[dict[str, Any]]:
    """Every device's entry (data devices, then parity devices when the space has them):
    ``device``, ``role``, ``input``, ``stem``, ``head``, ``blocks``, ``sends`` and
    ``receives`` (JSON, as in a plan), and a parity device's ``shadows`` and ``encoders``.

    ``flow`` is the policy's ``snnas.cost.Liveness`` (with parity devices: computed with
    ``encodings=True``, what the parity devices read is live), ``encodings`` its
    ``parity_plan(...).encodings``. With ``live=False`` every device computes every block and
    every transfer moves (the raw schedule, nothing pruned).
    """
    g, arch = space.groups, space.arch
    pairs = transfer_pairs(space, flow, live=live)
    enc_pairs = encoding_pairs(encodings)
    entries: list[dict[str, Any]] = []
    for d in range(g):
        blocks = list(flow.live_blocks[d]) if live else list(range(arch.num_blocks))
        entries.append({
            "device": d, "role": "data", "input": d == 0, "stem": d == 0, "head": d == 0,
            "blocks": blocks,
            "sends": [s.to_json() for src, _, s, _ in (*pairs, *enc_pairs) if src == d],
            "receives": [r.to_json() for _, dst, _, r in pairs if dst == d],
        })  # fmt: skip
    for k in range(space.parity.r):
        entries.append({
            "device": g + k, "role": "parity", "shadows": k, "input": True, "stem": True,
            "head": k == 0, "blocks": parity_blocks(space, k), "sends": [],
            "receives": [r.to_json() for _, dst, _, r in enc_pairs if dst == g + k],
            "encoders": _encoders(space, policy, k),
        })  # fmt: skip
    return entries
