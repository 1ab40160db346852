"""The weight-sharing Sep-ResNeXt supernet and the frozen single-policy network.

All G devices run as one batched network: their residual streams are stacked along the
channel axis (``[device 0 | device 1 | ... ]``, each ``w`` channels wide) and every
convolution is grouped so that a device only touches its own slice. A transmission is a
gather over the device axis, a mask and an addition, not a loop over devices. Equations refer
to Lin & Wang:

    (2)  X_i^l = X_i^{l-1} + T_i^{l-1}(X_i^{l-1}) + D_i^l
    (3)  D_{s(i)}^{l+alpha} = F(X_i^l)      F: keep the first N_send channels, cast the dtype

docs/supernet.md states them as implemented (ReLU placement, where each transfer is added:
``Architecture.aggregation_block``, the one schedule shared with the cost model, the plan and
the runtime).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnas.arch import PointGeometry
from snnas.errors import SnnasError
from snnas.models.resnext import Bottleneck, Stem, _init_weights
from snnas.space import PointPolicy, SearchSpace

__all__ = [
    "FrozenSepResNeXt",
    "SepResNeXt",
    "TransferPlan",
    "aggregate",
    "make_plan",
    "transfer",
    "transmit",
]


@dataclass(frozen=True)
class TransferPlan:
    """One transmission point as tensors: who receives from whom, and how much."""

    point: int
    block: int  # sent after this block
    aggregate_block: int  # added to the receivers' streams after this block
    channels: int  # w, the stream width of one device
    n_send: int  # channels sent by every sender (the first ones of its stream)
    source: Tensor  # (G,) long: the device each device receives from (itself: nothing)
    receives: Tensor  # (1, G, 1, 1, 1) float: 1 for devices that receive, else 0
    all_receive: bool  # no device keeps its data (a derangement): no masking needed
    half: bool  # round the payload through float16
    channels_sent: int  # n_send x senders
    pairs: tuple[tuple[int, int], ...] = ()  # (sender, receiver) of every transfer


def make_plan(geo: PointGeometry, decision: PointPolicy, groups: int, device: Any) -> TransferPlan:
    """Receiver ``j = s(i)`` gets the first ``N_send`` channels of sender ``i``'s stream,
    added to its own first ``N_send`` channels."""
    n = decision.n_send(geo.channels)
    source = list(range(groups))
    for src, dst in enumerate(decision.perm):
        source[dst] = src
    receives = [1.0 if source[j] != j and n > 0 else 0.0 for j in range(groups)]
    return TransferPlan(
        point=geo.index,
        block=geo.block,
        aggregate_block=geo.aggregate_block,
        channels=geo.channels,
        n_send=n,
        source=torch.tensor(source, dtype=torch.long, device=device),
        receives=torch.tensor(receives, device=device).view(1, groups, 1, 1, 1),
        all_receive=all(receives),
        half=decision.dtype == "float16",
        channels_sent=n * int(sum(receives)),
        pairs=tuple((source[j], j) for j in range(groups) if receives[j]),
    )


def transmit(x: Tensor, plan: TransferPlan) -> Tensor:
    """Eq. (3): the payload every device receives, ``(B, G, N_send, H, W)``; zeros for a
    device that receives nothing."""
    b, _, h, w = x.shape
    streams = x.view(b, -1, plan.channels, h, w)  # (B, G, w, H, W)
    if plan.n_send < plan.channels:
        streams = streams[:, :, : plan.n_send]  # (B, G, n, H, W): the first channels only
    d = streams.index_select(1, plan.source)
    if not plan.all_receive:
        d = d * plan.receives.to(d.dtype)
    if plan.half:
        d = d.to(torch.float16).to(x.dtype)  # the wire's precision loss, seen by training
    return d


def aggregate(x: Tensor, d: Tensor, plan: TransferPlan) -> Tensor:
    """Eq. (2): add a payload to the first ``N_send`` channels of every receiver's stream."""
    if plan.n_send < plan.channels:
        # Zero channels up to the stream width; backward is a view, no scatter.
        d = F.pad(d, (0, 0, 0, 0, 0, plan.channels - plan.n_send))  # (B, G, w, H, W)
    return x + d.flatten(1, 2)


def transfer(x: Tensor, sent: Tensor, plan: TransferPlan) -> Tensor:
    """Eqs. (2)-(3) fused: ``aggregate(x, transmit(sent, plan), plan)``, computed as a copy of
    ``x`` plus one in-place slice addition per receiver (no gather, mask, pad or full-size
    payload; a custom backward with one copy of the gradient). ``sent`` is the stream at the
    sending block; it is ``x`` itself when the transfer is added where it is sent.

    Its results equal ``aggregate(x, transmit(sent, plan), plan)``: each receiver's first
    ``N_send`` channels get the same single addition, the other channels are left alone.
    """
    if sent is x:
        return _Transfer.apply(x, None, plan)
    return _Transfer.apply(x, sent, plan)


class _Transfer(torch.autograd.Function):
    """Forward: ``out = x``, then ``out[receiver, :n] += round(sent[sender, :n])`` per pair.
    Backward: the rounding is straight-through; the gradient of ``sent`` is the receivers'
    gradient moved back to the senders."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, sent: Tensor | None, plan: TransferPlan) -> Tensor:
        b, _, h, w = x.shape
        n = plan.n_send
        src = (x if sent is None else sent).view(b, -1, plan.channels, h, w)  # (B, G, w, H, W)
        out = x.clone()
        dst = out.view(b, -1, plan.channels, h, w)
        for i, j in plan.pairs:
            d = src[:, i, :n]  # (B, n, H, W), a view
            if plan.half:
                d = d.to(torch.float16).to(x.dtype)  # the wire's precision loss
            dst[:, j, :n] += d
        ctx.plan, ctx.same, ctx.shape = plan, sent is None, (b, h, w)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        plan: TransferPlan = ctx.plan
        b, h, w = ctx.shape
        n = plan.n_send
        g = grad.view(b, -1, plan.channels, h, w)
        if ctx.same:
            gx = grad.clone()
            view = gx.view(b, -1, plan.channels, h, w)
            for i, j in plan.pairs:
                view[:, i, :n] += g[:, j, :n]
            return gx, None, None
        g_sent = torch.zeros_like(grad)
        view = g_sent.view(b, -1, plan.channels, h, w)
        for i, j in plan.pairs:
            view[:, i, :n] = g[:, j, :n]
        return grad, g_sent, None


class _SepBase(nn.Module):
    """Layers and the forward pass shared by the supernet and the frozen network."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        # Parity devices (space.parity.r > 0) change nothing here: in normal operation they only
        # receive, so the data network is the same; snnas.models.parity adds their streams.
        net = space.network
        self.space = space
        self.groups = space.groups
        self.stem = Stem(net)
        self.blocks = nn.ModuleList(
            Bottleneck(b, net.cardinality, space.groups) for b in space.arch.blocks
        )
        self.fc = nn.Linear(net.stage_widths[-1], net.num_classes)
        self.head_width = net.stage_widths[-1]

    def transfer_plans(
        self, policy: Mapping[str, Any] | Sequence[PointPolicy] | None = None
    ) -> list[TransferPlan]:
        """The transfer plans the forward pass uses (points that send nothing left out)."""
        raise NotImplementedError

    def _run(self, x: Tensor, plans: Sequence[TransferPlan]) -> Tensor:
        # Table 1: the stem output is duplicated G times (the first transmission).
        out = self.stem(x).repeat(1, self.groups, 1, 1)  # (B, G * stem, H, W)
        sends = {plan.block: plan for plan in plans}
        pending: list[tuple[TransferPlan, Tensor]] = []
        for b, block in enumerate(self.blocks):
            out = block(out)  # X^{l-1} + T(X^{l-1}), per device
            for waiting, sent in pending:
                if waiting.aggregate_block == b:
                    out = transfer(out, sent, waiting)  # eq. (2): + D^l, D = F(sent), eq. (3)
            pending = [item for item in pending if item[0].aggregate_block != b]
            send = sends.get(b)
            if send is not None:
                if send.aggregate_block == b:  # due in the block that sends it (arch.py)
                    out = transfer(out, out, send)
                else:  # the stream as sent; blocks never modify it in place
                    pending.append((send, out))
        out = out[:, : self.head_width]  # Table 1: keep device 0's stream only
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)  # (B, C_last)
        return self.fc(out)


class SepResNeXt(_SepBase):
    """The supernet: ``forward(x, policy)`` runs any policy of the space with shared weights."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        self._plans: dict[tuple[Any, ...], TransferPlan] = {}
        _init_weights(self)

    def plans(self, policy: Mapping[str, Any] | Sequence[PointPolicy]) -> list[TransferPlan]:
        """Transfer plans of a policy (a ``{label: value}`` dict or resolved point policies);
        points where nothing is sent are left out. Plans are cached per decision."""
        decisions = self.space.resolve(policy) if isinstance(policy, Mapping) else policy
        device = self.fc.weight.device
        out = []
        for geo, dec in zip(self.space.arch.points, decisions, strict=True):
            key = (geo.index, dec.perm, dec.sparsity, dec.dtype, device)
            plan = self._plans.get(key)
            if plan is None:
                plan = self._plans[key] = make_plan(geo, dec, self.groups, device)
            if plan.channels_sent:
                out.append(plan)
        return out

    def transfer_plans(
        self, policy: Mapping[str, Any] | Sequence[PointPolicy] | None = None
    ) -> list[TransferPlan]:
        """:meth:`plans` of ``policy`` (required for the supernet)."""
        if policy is None:
            raise SnnasError("the supernet needs a policy to know its transfers")
        return self.plans(policy)

    def forward(self, x: Tensor, policy: Mapping[str, Any] | Sequence[PointPolicy]) -> Tensor:
        return self._run(x, self.plans(policy))

    def traffic_bytes(self, policy: Mapping[str, Any]) -> list[int]:
        """Bytes each point's plan moves (received channels x H x W x wire bytes)."""
        decisions = self.space.resolve(policy)
        by_point = {p.point: p for p in self.plans(decisions)}
        out = []
        for geo, dec in zip(self.space.arch.points, decisions, strict=True):
            plan = by_point.get(geo.index)
            sent = plan.channels_sent if plan else 0  # from the tensors the forward uses
            out.append(sent * geo.size * geo.size * dec.bytes_per_element)
        return out

    def freeze(self, policy: Mapping[str, Any]) -> FrozenSepResNeXt:
        """A standalone network for one policy, with a copy of the current weights."""
        frozen = FrozenSepResNeXt(self.space, policy)
        frozen.load_state_dict(self.state_dict())
        return frozen.to(self.fc.weight.device).train(self.training)


class FrozenSepResNeXt(_SepBase):
    """A Sep-ResNeXt with one policy baked in; its outputs equal the supernet's under it."""

    def __init__(self, space: SearchSpace, policy: Mapping[str, Any]) -> None:
        super().__init__(space)
        self.policy = space.validate(policy)
        decisions = space.resolve(self.policy)
        self._frozen_plans = []
        for geo, dec in zip(space.arch.points, decisions, strict=True):
            plan = make_plan(geo, dec, space.groups, "cpu")
            if plan.channels_sent:
                self.register_buffer(f"plan{geo.index}_source", plan.source, persistent=False)
                self.register_buffer(f"plan{geo.index}_receives", plan.receives, persistent=False)
                self._frozen_plans.append(plan)
        _init_weights(self)

    def _current_plans(self) -> list[TransferPlan]:
        out = []
        for plan in self._frozen_plans:
            source = getattr(self, f"plan{plan.point}_source")
            if source is not plan.source:  # moved to another device: follow the buffers
                moved = {
                    name: getattr(self, f"plan{plan.point}_{name}")
                    for name in ("source", "receives")
                }
                plan = TransferPlan(**{**vars(plan), **moved})
            out.append(plan)
        return out

    def transfer_plans(
        self, policy: Mapping[str, Any] | Sequence[PointPolicy] | None = None
    ) -> list[TransferPlan]:
        """The baked-in plans (``policy`` is ignored: the network has one)."""
        return self._current_plans()

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x, self._current_plans())
