"""Parity devices: learned, erasure-robust shadows of data devices (docs/parity.md).

Parity device ``k`` (``k < r``) runs one stream shaped like data device ``k``'s and starts as
an exact copy of it (its weights, its copy of the stem and, for ``k = 0``, of the head). At
every protected transmission point ``q`` each data device ``i`` sends it the first ``m_q``
channels of its stream, ``E_i = X_i^{b_q}[:m_q]`` (the encodings), and the parity stream adds

    Y_k += D_k(E) + Enc_q(E_0, ..., E_{G-1})                                       (P1)

where ``D_k(E)`` is what data device ``k`` receives at ``q`` rebuilt from the encodings (the
sender's first ``n_q`` channels, eq. (3), exact when ``m_q >= n_q``) and ``Enc_q`` a learned
encoder that starts at zero: ``sum`` (one learned weight per parity and data device) or
``concat`` (a 1x1 convolution of the concatenated encodings); with ``mirror`` there is no
learned encoder and only the devices that send to a shadowed device send encodings (what it
receives). So in normal operation parity device k computes what device k computes; the
encoder lets it learn to do better than device k when another device is missing.

If data device ``j`` is unavailable from point ``p`` on, from ``p`` on every receiver of ``j``
(data or parity) gets in ``j``'s place

    Z_j^q = Y_j^{b_q}          if j < r  (parity device j sends j's payloads)       (P2)
    Z_j^q = mu_j^q             otherwise (the training mean of j's stream, per channel)

and the answer comes from parity device 0's head, ``fc_P(pool(Y_0))``, whenever device 0 is
unavailable, and for the other devices where validation chose it (``answers``). Training
distils every erasure position (docs/parity.md, "Training").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnas.arch import BlockGeometry
from snnas.models.resnext import Bottleneck, Stem, _init_weights
from snnas.models.supernet import FrozenSepResNeXt, SepResNeXt, TransferPlan, aggregate, transmit
from snnas.space import ParityPoint, SearchSpace

__all__ = [
    "NEVER",
    "CodedNetwork",
    "CodedOutput",
    "ParityDevice",
    "ParityStreams",
    "calibrate_imputation",
    "erasure_grid",
    "fail_at_tensor",
    "parity_block_geometry",
    "slice_block",
]

#: ``fail_at`` value of a device that never becomes unavailable.
NEVER = 1 << 20

_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def parity_block_geometry(geo: BlockGeometry, groups: int, scale: int, r: int) -> BlockGeometry:
    """A data block's geometry with the bottleneck of ``r`` parity streams: each has ``scale``
    times the C/G paths of one data device, with the same channels per path."""
    return replace(geo, mid_width=geo.mid_width // groups * scale * r)


def _projection(block: Bottleneck) -> tuple[nn.Conv2d, nn.BatchNorm2d] | None:
    if block.downsample is None:
        return None
    conv, bn = block.downsample[0], block.downsample[1]
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
    return conv, bn


def _tracked(bn: nn.Module) -> Tensor:
    value = getattr(bn, "num_batches_tracked", None)
    return value if isinstance(value, Tensor) else torch.zeros((), dtype=torch.long)


def slice_block(block: nn.Module, device: int, streams: int) -> dict[str, Tensor]:
    """One device's weights of a block batched over ``streams`` devices, as the state dict of
    the same block with ``streams = 1`` (copies)."""
    assert isinstance(block, Bottleneck)
    mid = block.conv1.out_channels // streams
    out = block.conv3.out_channels // streams
    a, b = device * mid, (device + 1) * mid
    c, e = device * out, (device + 1) * out
    state = {
        "conv1.weight": block.conv1.weight[a:b],
        "conv2.weight": block.conv2.weight[a:b],
        "conv3.weight": block.conv3.weight[c:e],
    }
    for name, lo, hi in (("bn1", a, b), ("bn2", a, b), ("bn3", c, e)):
        bn = getattr(block, name)
        state.update({f"{name}.{k}": getattr(bn, k)[lo:hi] for k in _BN_KEYS})
        state[f"{name}.num_batches_tracked"] = _tracked(bn)
    projection = _projection(block)
    if projection is not None:
        conv, bn = projection
        state["downsample.0.weight"] = conv.weight[c:e]
        state.update({f"downsample.1.{k}": getattr(bn, k)[c:e] for k in _BN_KEYS})
        state["downsample.1.num_batches_tracked"] = _tracked(bn)
    return {k: v.detach().clone() for k, v in state.items()}


@torch.no_grad()
def _load_into_stream(target: nn.Module, stream: int, source: dict[str, Tensor]) -> None:
    """Copy a one-device block into stream ``stream`` of a batched parity block whose
    bottleneck may be wider (``bottleneck_scale``): the extra paths start switched off."""
    assert isinstance(target, Bottleneck)
    mid_p = target.conv1.out_channels // target.streams
    out = target.conv3.out_channels // target.streams
    mid = source["conv1.weight"].shape[0]
    a = stream * mid_p
    c, e = stream * out, (stream + 1) * out
    target.conv1.weight[a : a + mid] = source["conv1.weight"]
    target.conv2.weight[a : a + mid] = source["conv2.weight"]
    target.conv3.weight[c:e] = 0.0
    target.conv3.weight[c:e, :mid] = source["conv3.weight"]
    for name, lo, hi in (("bn1", a, a + mid), ("bn2", a, a + mid), ("bn3", c, e)):
        bn = getattr(target, name)
        for k in _BN_KEYS:
            getattr(bn, k)[lo:hi] = source[f"{name}.{k}"]
    projection = _projection(target)
    if projection is not None:
        conv, bn = projection
        conv.weight[c:e] = source["downsample.0.weight"]
        for k in _BN_KEYS:
            getattr(bn, k)[c:e] = source[f"downsample.1.{k}"]


class ParityStreams(nn.Module):
    """The r parity devices of a space, batched like the data devices.

    Layers: ``stem`` (a copy of the data stem), ``blocks[b]`` (grouped by r: parity stream k
    only touches its slice), ``fc`` (parity device 0's head), the encoders of every point
    (``concat[q]``: 1x1 convolution from the G zero-padded encodings to the r streams;
    ``sum[q]``: an (r, G) weight matrix). Buffers: ``impute{q}`` (G, w) the per-channel means
    of every data stream at point q (what a receiver adds for a missing payload nobody
    substitutes) and ``answers`` (G,) whether parity device 0 answers when that data device is
    unavailable (always for device 0).
    """

    answers: Tensor

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        if space.parity.r < 1:
            raise ValueError(f"space {space.name!r} has no parity devices (parity.r = 0)")
        net, arch = space.network, space.arch
        g, r, scale = space.groups, space.parity.r, space.parity.bottleneck_scale
        self.space = space
        self.groups, self.r = g, r
        self.stem = Stem(net)
        paths = net.cardinality // g * scale * r
        self.blocks = nn.ModuleList(
            Bottleneck(parity_block_geometry(b, g, scale, r), paths, r) for b in arch.blocks
        )
        self.fc = nn.Linear(net.stage_widths[-1], net.num_classes)
        self.concat = nn.ModuleDict(
            {
                str(p.index): nn.Conv2d(g * p.channels, r * p.channels, 1, bias=False)
                for p in arch.points
            }
        )
        self.sum = nn.ParameterDict(
            {str(p.index): nn.Parameter(torch.zeros(r, g)) for p in arch.points}
        )
        for p in arch.points:
            self.register_buffer(f"impute{p.index}", torch.zeros(g, p.channels))
        answers = torch.zeros(g, dtype=torch.bool)
        answers[0] = True
        self.register_buffer("answers", answers)
        _init_weights(self)
        for conv in self.concat.values():
            assert isinstance(conv, nn.Conv2d)
            nn.init.zeros_(conv.weight)  # the encoders start silent: a copy of the data devices

    @torch.no_grad()
    def init_from(self, base: SepResNeXt | FrozenSepResNeXt) -> None:
        """Parity stream k becomes a copy of data device k (blocks, stem, and device 0's head
        for stream 0); the encoders are reset to zero."""
        self.stem.load_state_dict(base.stem.state_dict())
        self.fc.load_state_dict(base.fc.state_dict())
        for pblock, block in zip(self.blocks, base.blocks, strict=True):
            for k in range(self.r):
                _load_into_stream(pblock, k, slice_block(block, k, self.groups))
        for conv in self.concat.values():
            assert isinstance(conv, nn.Conv2d)
            conv.weight.zero_()
        for weight in self.sum.values():
            weight.zero_()

    def impute(self, point: int) -> Tensor:
        """(G, w): the training mean of every data stream's channels at ``point``."""
        value = getattr(self, f"impute{point}")
        assert isinstance(value, Tensor)
        return value

    def encode(self, point: int, kind: str, encodings: Tensor) -> Tensor:
        """``Enc_q`` of (P1) for ``sum`` and ``concat`` (``mirror`` has none): ``encodings``
        (N, G, w, H, W) zero-padded to the stream width -> (N, r * w, H, W)."""
        if kind == "concat":
            return self.concat[str(point)](encodings.flatten(1, 2))
        weight = self.sum[str(point)].to(encodings.dtype)
        return torch.einsum("kg,ngchw->nkchw", weight, encodings).flatten(1, 2)


@dataclass
class CodedOutput:
    """What a coded forward pass gives.

    ``logits``: the system's answer. ``parity_logits``: parity device 0's answer.
    ``device_logits``: device 0's answer (meaningless where device 0 is unavailable).
    ``streams[q]``: the data streams at point q as computed, (N, G, w, H, W).
    ``shadows[q]``: the parity streams at point q, (N, r, w, H, W).
    """

    logits: Tensor
    parity_logits: Tensor
    device_logits: Tensor
    streams: dict[int, Tensor]
    shadows: dict[int, Tensor]


def erasure_grid(groups: int, points: int) -> list[tuple[int, int]]:
    """Every single-device erasure position ``(device, point)``: the device is unavailable
    from that transmission point on (point 0: before the image's first transmission)."""
    return [(j, p) for j in range(groups) for p in range(points)]


def fail_at_tensor(
    positions: Sequence[tuple[int, int]], groups: int, repeat: int, device: Any = "cpu"
) -> Tensor:
    """``(len(positions) * repeat, G)``: the point each device becomes unavailable at, for a
    batch repeated once per position (position-major; ``NEVER`` for available devices)."""
    rows = torch.full((len(positions), groups), NEVER, dtype=torch.long)
    for i, (j, p) in enumerate(positions):
        rows[i, j] = p
    return rows.to(device).repeat_interleave(repeat, dim=0)


class CodedNetwork(nn.Module):
    """A base Sep-ResNeXt (supernet or frozen) and its parity devices, run together.

    ``forward(x, policy, fail_at)``: ``fail_at`` (N, G) gives for every sample the point from
    which each data device is unavailable (``NEVER``: never). Without it the pass is normal
    operation and ``logits`` equal the base network's exactly (parity devices only receive).
    ``detach_base``: run the data devices without gradient (parity training with a frozen
    base: their response to a substituted payload is treated as an input).
    """

    def __init__(self, base: SepResNeXt | FrozenSepResNeXt, parity: ParityStreams) -> None:
        super().__init__()
        self.base = base
        self.parity = parity
        self.space = base.space
        self.detach_base = False
        # What replaces a missing payload: "parity" (P2), or for the baselines of
        # ``snnas parity eval``: "mean" (the imputation constants alone), "zeros".
        self.standin = "parity"
        self._choices: dict[tuple[int, ...], tuple[ParityPoint, ...]] = {}

    def parity_points(self, policy: Mapping[str, Any] | None) -> tuple[ParityPoint, ...]:
        """The parity decisions of ``policy`` (the frozen base's own when ``None``)."""
        if policy is None:
            if not isinstance(self.base, FrozenSepResNeXt):
                raise ValueError("the supernet needs a policy")
            policy = self.base.policy
        key = self.space.encode(policy)
        if key not in self._choices:
            self._choices[key] = self.space.resolve_parity(policy)
        return self._choices[key]

    def forward(
        self, x: Tensor, policy: Mapping[str, Any] | None = None, fail_at: Tensor | None = None
    ) -> CodedOutput:
        base, par = self.base, self.parity
        g, r = self.space.groups, par.r
        plans = {p.point: p for p in base.transfer_plans(policy)}
        choices = self.parity_points(policy)
        points = {geo.block: geo for geo in self.space.arch.points}
        no_grad = torch.no_grad() if self.detach_base else nullcontext()

        with no_grad:
            out = base.stem(x).repeat(1, g, 1, 1)  # (N, G * stem, H, W): the first transmission
        y = par.stem(x).repeat(1, r, 1, 1)  # (N, r * stem, H, W): each parity device's copy
        n = x.shape[0]
        pending: list[tuple[int, TransferPlan | None, Tensor | None, Tensor | None]] = []
        streams: dict[int, Tensor] = {}
        shadows: dict[int, Tensor] = {}
        for b, (block, pblock) in enumerate(zip(base.blocks, par.blocks, strict=True)):
            with no_grad:
                out = block(out)
            y = pblock(y)
            for _, plan, d, add in [item for item in pending if item[0] == b]:
                if plan is not None and d is not None:
                    with no_grad:
                        out = aggregate(out, d, plan)  # eq. (2)
                if add is not None:
                    y = y + add  # (P1), sent at an earlier block
            pending = [item for item in pending if item[0] != b]
            geo = points.get(b)
            if geo is None:
                continue
            q, w = geo.index, geo.channels
            h = out.shape[-1]
            sent = out.view(n, g, w, h, h)  # (N, G, w, H, W)
            shadow = y.view(n, r, w, h, h)  # (N, r, w, H, W)
            streams[q], shadows[q] = sent, shadow
            sources = sent
            if fail_at is not None:
                unavailable = (fail_at <= q).view(n, g, 1, 1, 1)
                if bool(unavailable.any()):
                    # (P2): a parity device stands in for its own data device, the training
                    # mean for the others.
                    standin = par.impute(q).to(sent.dtype).view(1, g, w, 1, 1).expand_as(sent)
                    if self.standin == "parity":
                        standin = torch.cat([shadow, standin[:, r:]], 1)
                    elif self.standin == "zeros":
                        standin = torch.zeros_like(sent)
                    sources = torch.where(unavailable, standin, sent)
            plan = plans.get(q)
            d = None
            if plan is not None:
                data_sources = sources.detach() if self.detach_base else sources
                d = transmit(data_sources.flatten(1, 2), plan)  # eq. (3)
            add = None
            choice = choices[q]
            m = choice.m_send(w)
            if m > 0:
                enc = sources[:, :, :m]  # (N, G, m, H, W): the encodings
                if choice.dtype == "float16":
                    enc = enc.to(torch.float16).to(enc.dtype)
                enc = F.pad(enc, (0, 0, 0, 0, 0, w - m))  # zero-padded to the stream width
                add = par.encode(q, choice.encoder, enc) if choice.encoder != "mirror" else None
                if plan is not None:
                    # What parity device k's data device receives, rebuilt from the encodings.
                    mirrored = transmit(enc.flatten(1, 2), plan)[:, :r]  # (N, r, n, H, W)
                    mirrored = F.pad(mirrored, (0, 0, 0, 0, 0, w - plan.n_send)).flatten(1, 2)
                    add = mirrored if add is None else add + mirrored
            if geo.aggregate_block == b:
                if plan is not None and d is not None:
                    with no_grad:
                        out = aggregate(out, d, plan)
                if add is not None:
                    y = y + add
            else:
                pending.append((geo.aggregate_block, plan, d, add))

        w_last = base.head_width
        with no_grad:
            pooled = torch.flatten(F.adaptive_avg_pool2d(out[:, :w_last], 1), 1)  # (N, w_last)
            device_logits = base.fc(pooled)
        parity_pooled = torch.flatten(F.adaptive_avg_pool2d(y[:, :w_last], 1), 1)
        parity_logits = par.fc(parity_pooled)
        logits = device_logits
        if fail_at is not None:
            down = fail_at < NEVER  # (N, G): unavailable at some point of this image
            use_parity = (down & par.answers.view(1, g)).any(1) | down[:, 0]
            logits = torch.where(use_parity.view(n, 1), parity_logits, device_logits)
        return CodedOutput(logits, parity_logits, device_logits, streams, shadows)


@torch.no_grad()
def calibrate_imputation(
    net: CodedNetwork,
    batches: Sequence[tuple[Tensor, Tensor]],
    policies: Sequence[Mapping[str, Any] | None] = (None,),
) -> None:
    """Set ``impute{q}`` to the mean over ``batches`` (and, for a supernet, ``policies``) of
    every data stream's channels at every point in normal operation."""
    sums: dict[int, Tensor] = {}
    count = 0
    for policy in policies:
        for x, _ in batches:
            out = net(x, policy)
            for q, s in out.streams.items():
                total = s.sum((0, 3, 4))  # (G, w)
                sums[q] = sums[q] + total if q in sums else total
            count += x.shape[0]
    for q, total in sums.items():
        size = net.space.arch.points[q].size
        net.parity.impute(q).copy_(total / (count * size * size))


class ParityDevice(nn.Module):
    """One parity device's computation from its own weights (what export cuts per device).

    ``forward(image, encodings)`` runs the whole schedule: ``encodings[q]`` is what the G data
    devices sent at protected point q, (B, G, m, H, W), with the stand-ins of (P2) in the
    slots of unavailable devices. Returns the answer (parity device 0 only: ``None`` for the
    others) and the stream at every point (the payloads it substitutes, (P2)).
    """

    def __init__(self, streams: ParityStreams, k: int, policy: Mapping[str, Any]) -> None:
        super().__init__()
        space = streams.space
        g, r, scale = space.groups, streams.r, space.parity.bottleneck_scale
        self.space, self.k, self.groups = space, k, g
        self.policy = space.validate(policy)
        net = space.network
        self.stem = Stem(net)
        self.stem.load_state_dict(streams.stem.state_dict())
        paths = net.cardinality // g * scale
        self.blocks = nn.ModuleList()
        for geo, pblock in zip(space.arch.blocks, streams.blocks, strict=True):
            single = Bottleneck(parity_block_geometry(geo, g, scale, 1), paths, 1)
            single.load_state_dict(slice_block(pblock, k, r))
            self.blocks.append(single)
        self.fc: nn.Linear | None = None
        if k == 0:
            self.fc = nn.Linear(net.stage_widths[-1], net.num_classes)
            self.fc.load_state_dict(streams.fc.state_dict())
        self.concat = nn.ModuleDict()
        self.sum = nn.ParameterDict()
        for point in space.arch.points:
            w = point.channels
            conv = nn.Conv2d(g * w, w, 1, bias=False)
            source = streams.concat[str(point.index)]
            assert isinstance(source, nn.Conv2d)
            conv.weight.data.copy_(source.weight[k * w : (k + 1) * w])
            self.concat[str(point.index)] = conv
            self.sum[str(point.index)] = nn.Parameter(streams.sum[str(point.index)][k].clone())
        self.choices = space.resolve_parity(self.policy)
        self.eval()

    def update(self, point: int, encodings: Tensor, plan: TransferPlan | None) -> Tensor:
        """(P1): what the encodings of ``point`` add to the stream, (B, w, H, W)."""
        choice = self.choices[point]
        w = self.space.arch.points[point].channels
        m = choice.m_send(w)
        enc = encodings[:, :, :m]
        if choice.dtype == "float16":
            enc = enc.to(torch.float16).to(enc.dtype)
        enc = F.pad(enc, (0, 0, 0, 0, 0, w - m))  # (B, G, w, H, W)
        if choice.encoder == "concat":
            add = self.concat[str(point)](enc.flatten(1, 2))
        elif choice.encoder == "sum":
            add = torch.einsum("g,bgchw->bchw", self.sum[str(point)].to(enc.dtype), enc)
        else:  # mirror: only what data device k receives
            add = torch.zeros_like(enc[:, 0])
        if plan is not None:
            source = int(plan.source[self.k])
            if source != self.k and plan.n_send > 0 and bool(plan.receives.flatten()[self.k]):
                payload = enc[:, source, : plan.n_send]  # the first n channels of the sender
                add = add + F.pad(payload, (0, 0, 0, 0, 0, w - plan.n_send))
        return add

    @torch.no_grad()
    def forward(
        self, image: Tensor, encodings: Mapping[int, Tensor], plans: Sequence[TransferPlan]
    ) -> tuple[Tensor | None, dict[int, Tensor]]:
        by_point = {p.point: p for p in plans}
        points = {geo.block: geo for geo in self.space.arch.points}
        y = self.stem(image)
        pending: list[tuple[int, Tensor]] = []
        states: dict[int, Tensor] = {}
        for b, block in enumerate(self.blocks):
            y = block(y)
            for _, add in [item for item in pending if item[0] == b]:
                y = y + add
            pending = [item for item in pending if item[0] != b]
            geo = points.get(b)
            if geo is None:
                continue
            states[geo.index] = y
            if geo.index not in encodings or self.choices[geo.index].m_send(geo.channels) == 0:
                continue
            add = self.update(geo.index, encodings[geo.index], by_point.get(geo.index))
            if geo.aggregate_block == b:
                y = y + add
            else:
                pending.append((geo.aggregate_block, add))
        if self.fc is None:
            return None, states
        width = self.fc.in_features
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y[:, :width], 1), 1)), states
