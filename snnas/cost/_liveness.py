"""Liveness: which transfers and blocks can reach the head, as a backward pass over the
communication graph.

Only device 0's stream feeds the classifier (the paper's Table 1), so a payload that can never
reach device 0's last block, and every block a device computes after its last useful send, is
dead work: it changes no answer. Plans prune it and the runtime never computes or sends it.

The graph (networkx) has two nodes per device ``d`` and block ``b``, following the order of
the forward pass within a block (``snnas/arch.py``):

* ``("A", d, b)``: the stream after computing block ``b`` and adding the transfers sent at
  earlier blocks and due at ``b``: what a send at ``b`` carries;
* ``("C", d, b)``: the same after adding the transfers sent *at* ``b`` and due at ``b``: the
  input of block ``b + 1``.

Edges: ``C(d, b-1) -> A(d, b)`` (computing block ``b``), ``A(d, b) -> C(d, b)``, and for every
transfer from ``s`` to ``r`` sent after block ``b`` and due after block ``a``:
``A(s, b) -> A(r, a)`` when ``a > b``, ``A(s, b) -> C(r, b)`` when ``a == b``. The head is
``C(0, B-1)``. A node is live when the head is reachable from it; block ``b`` of device ``d``
is live when ``A(d, b)`` is, a transfer when the node it adds to is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from snnas.cost._parity import parity_plan
from snnas.space import SearchSpace

__all__ = ["Liveness", "Transfer", "liveness", "parity_live_blocks"]

_HEAD = ("head",)


@dataclass(frozen=True)
class Transfer:
    """One device's payload at one transmission point."""

    point: int
    src: int  # sending device
    dst: int  # receiving device
    send_block: int  # sent after this block (from the stream ``A(src, send_block)``)
    aggregate_block: int  # added to the receiver's stream after this block
    n_send: int  # channels: the first ``n_send`` of the stream, added to the first ``n_send``
    channels: int  # stream width of one device at the point
    size: int  # height = width
    dtype: str  # wire dtype
    bytes: int  # per image
    live: bool  # whether it can reach the head

    @property
    def same_block(self) -> bool:
        """Whether it is added in the block that sends it, after that block's sends."""
        return self.aggregate_block == self.send_block


@dataclass(frozen=True)
class Liveness:
    """Live blocks per device and every transfer of a policy, marked live or dead."""

    groups: int
    num_blocks: int
    transfers: tuple[Transfer, ...]  # every payload that moves (s(i) != i and N_send > 0)
    live_blocks: tuple[tuple[int, ...], ...]  # per device, in order

    @property
    def live_transfers(self) -> tuple[Transfer, ...]:
        """The transfers that can reach the head."""
        return tuple(t for t in self.transfers if t.live)

    @property
    def dead_transfers(self) -> tuple[Transfer, ...]:
        """The transfers that cannot reach the head."""
        return tuple(t for t in self.transfers if not t.live)

    def skipped_blocks(self, device: int) -> tuple[int, ...]:
        """Blocks ``device`` never needs to compute."""
        live = set(self.live_blocks[device])
        return tuple(b for b in range(self.num_blocks) if b not in live)

    def active(self, device: int) -> bool:
        """Whether ``device`` computes anything at all (device 0 always does)."""
        return device == 0 or bool(self.live_blocks[device])

    @property
    def stem_receivers(self) -> tuple[int, ...]:
        """Devices other than 0 that need the stem's output (the first transmission)."""
        return tuple(d for d in range(1, self.groups) if self.live_blocks[d])

    def to_json(self) -> dict[str, Any]:
        """JSON form: live and skipped blocks per device, transfers with their liveness."""
        return {
            "live_blocks": [list(b) for b in self.live_blocks],
            "skipped_blocks": [list(self.skipped_blocks(d)) for d in range(self.groups)],
            "stem_receivers": list(self.stem_receivers),
            "transfers": [
                {k: v for k, v in vars(t).items() if k not in ("channels", "size")}
                for t in self.transfers
            ],
        }


def _graph(space: SearchSpace, policy: Mapping[str, Any]) -> tuple[Any, list[Any]]:
    """The communication graph of ``policy`` (module docstring) and its raw transfers."""
    import networkx as nx

    arch, g = space.arch, space.groups
    last = arch.num_blocks - 1
    graph = nx.DiGraph()
    for d in range(g):
        for b in range(arch.num_blocks):
            if b > 0:
                graph.add_edge(("C", d, b - 1), ("A", d, b))
            graph.add_edge(("A", d, b), ("C", d, b))
    graph.add_edge(("C", 0, last), _HEAD)

    raw: list[tuple[Transfer, tuple[Any, ...]]] = []
    for geo, dec in zip(arch.points, space.resolve(policy), strict=True):
        n_send = dec.n_send(geo.channels)
        if n_send == 0:
            continue
        for src, dst in enumerate(dec.perm):
            if src == dst:
                continue
            kind = "A" if geo.aggregate_block > geo.block else "C"
            target = (kind, dst, geo.aggregate_block)
            graph.add_edge(("A", src, geo.block), target)
            nbytes = n_send * geo.size * geo.size * dec.bytes_per_element
            transfer = Transfer(
                geo.index,
                src,
                dst,
                geo.block,
                geo.aggregate_block,
                n_send,
                geo.channels,
                geo.size,
                dec.dtype,
                nbytes,
                live=False,
            )
            raw.append((transfer, target))
    return graph, raw


def liveness(space: SearchSpace, policy: Mapping[str, Any], *, encodings: bool = False) -> Liveness:
    """Mark every block and transfer of ``policy`` live or dead (module docstring). With
    ``encodings``, what the parity devices read is live too (every data stream at every
    protected point, docs/parity.md): the data devices of a plan with parity devices."""
    import networkx as nx

    arch, g = space.arch, space.groups
    graph, raw = _graph(space, policy)
    sinks: list[tuple[Any, ...]] = [_HEAD]
    if encodings:
        sinks.extend(("A", e.src, e.send_block) for e in parity_plan(space, policy).encodings)
    live_nodes: set[Any] = set()
    for sink in sinks:
        live_nodes |= nx.ancestors(graph, sink) | {sink}
    transfers = tuple(Transfer(**{**vars(t), "live": target in live_nodes}) for t, target in raw)
    blocks = tuple(
        tuple(b for b in range(arch.num_blocks) if ("A", d, b) in live_nodes) for d in range(g)
    )
    return Liveness(g, arch.num_blocks, transfers, blocks)


def parity_live_blocks(
    space: SearchSpace, policy: Mapping[str, Any]
) -> tuple[tuple[int, ...], ...]:
    """Per data device, the blocks needed by the head or by an encoding the parity devices
    read (every device's stream at every protected point, docs/parity.md)."""
    import networkx as nx

    arch, g = space.arch, space.groups
    graph, _ = _graph(space, policy)
    sinks: list[tuple[Any, ...]] = [_HEAD]
    sinks.extend(("A", e.src, e.send_block) for e in parity_plan(space, policy).encodings)
    live: set[Any] = set()
    for sink in sinks:
        live |= nx.ancestors(graph, sink) | {sink}
    return tuple(tuple(b for b in range(arch.num_blocks) if ("A", d, b) in live) for d in range(g))
