"""Degraded-mode accuracy: every erasure position, ParM's protocol (docs/parity.md).

A_available is the accuracy in normal operation; A_degraded(j, p) the accuracy when data device
j is unavailable from transmission point p on, scored on every image of the split;
A_degraded is their mean over every position (device, point), and
A_overall(f) = (1 - f) A_available + f A_degraded for an unavailability rate f.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from snnas.models.parity import CodedNetwork, erasure_grid, fail_at_tensor
from snnas.train._trainer import Accelerator, batch_statistics

__all__ = [
    "OVERALL_RATES",
    "DegradedReport",
    "choose_answers",
    "degraded_accuracy",
    "degraded_report",
    "overall",
]

#: The unavailability rates f of A_overall(f) (ParM reports 1%, 5% and 10%).
OVERALL_RATES = (0.01, 0.05, 0.1)

#: The most samples (images x erasure positions) of one eval-mode pass (or one batch).
EXPANDED = 256


def overall(available: float, degraded: float, rate: float) -> float:
    """A_overall(f) = (1 - f) A_available + f A_degraded."""
    return (1.0 - rate) * available + rate * degraded


@dataclass
class DegradedReport:
    """Correct answers per erasure position, for both possible answerers.

    ``parity[j][p]`` / ``device[j][p]``: accuracy of parity device 0's answer and of data
    device 0's answer (with the stand-ins of the missing payloads) when device j is unavailable
    from point p on. ``answers[j]``: who answers for device j (device 0 never answers when it
    is the one unavailable).
    """

    available: float
    parity: list[list[float]]
    device: list[list[float]]
    answers: list[bool]
    images: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def by_position(self) -> list[list[float]]:
        """System accuracy per (device, point) under ``answers``."""
        return [
            self.parity[j] if self.answers[j] or j == 0 else self.device[j]
            for j in range(len(self.parity))
        ]

    @property
    def by_device(self) -> list[float]:
        """Mean over points, per unavailable device."""
        return [sum(row) / len(row) for row in self.by_position]

    @property
    def degraded(self) -> float:
        """A_degraded: the mean over every erasure position."""
        rows = self.by_position
        return sum(map(sum, rows)) / sum(map(len, rows))

    def to_json(self) -> dict[str, Any]:
        """The figures of ``snnas parity eval`` (the keys the issue asks for)."""
        return {
            "available_acc": self.available,
            "degraded_acc": self.degraded,
            "degraded_by_device": self.by_device,
            "degraded_by_position": self.by_position,
            "overall": {str(f): overall(self.available, self.degraded, f) for f in OVERALL_RATES},
            "answers": ["parity" if a or j == 0 else "device0" for j, a in enumerate(self.answers)],
            "images": self.images,
            **self.extra,
        }


@torch.no_grad()
def degraded_report(
    net: CodedNetwork,
    batches: Iterable[tuple[Tensor, Tensor]],
    accel: Accelerator,
    policy: Mapping[str, Any] | None = None,
    *,
    bn: str = "running",
    positions: Sequence[tuple[int, int]] | None = None,
) -> DegradedReport:
    """Score normal operation and every erasure position on ``batches``.

    ``bn="batch"`` scores with batch statistics (supernet policies, docs/supernet.md), each
    erasure position normalised on its own pass over the batch's images: a position's
    figures are exactly those of scoring it alone, whichever other positions are scored.
    With running statistics (eval mode) positions share expanded passes of at most
    ``max(EXPANDED, batch)`` samples (a larger batch is one position per pass): every sample
    is independent there, and larger passes are slower
    (6,144 samples ran three times slower per sample than 256 on a 2-core CPU).
    """
    space = net.space
    g, points = space.groups, space.num_points
    positions = list(positions or erasure_grid(g, points))
    was_training = net.training
    net.eval()
    parity = torch.zeros(len(positions))
    device = torch.zeros(len(positions))
    available = 0
    total = 0
    context = batch_statistics(net) if bn == "batch" else contextlib.nullcontext()
    with context:
        for x, y in batches:
            x, y = accel.batch(x, y)
            b = y.numel()
            with accel.autocast():
                clean = net(x, policy)
            # Batch statistics: one pass per position, so no position's activations enter
            # another's normalisation. Eval mode: as many positions as fit in EXPANDED.
            step = 1 if bn == "batch" else max(1, EXPANDED // b)
            for start in range(0, len(positions), step):
                group = positions[start : start + step]
                fail_at = fail_at_tensor(group, g, b, x.device)  # (len(group) * b, G)
                with accel.autocast():
                    out = net(x.repeat(len(group), 1, 1, 1), policy, fail_at)
                labels = y.repeat(len(group))  # (len(group) * b,)
                hits_p = (out.parity_logits.argmax(1) == labels).view(-1, b).sum(1).float()
                hits_d = (out.device_logits.argmax(1) == labels).view(-1, b).sum(1).float()
                parity[start : start + len(group)] += hits_p.cpu()
                device[start : start + len(group)] += hits_d.cpu()
            available += int((clean.logits.argmax(1) == y).sum())
            total += b
    net.train(was_training)
    par = _grid(parity / max(total, 1), positions, g, points)
    dev = _grid(device / max(total, 1), positions, g, points)
    answers = [bool(a) for a in net.parity.answers.tolist()]
    return DegradedReport(available / max(total, 1), par, dev, answers, total)


def _grid(
    values: Tensor, positions: Sequence[tuple[int, int]], g: int, p: int
) -> list[list[float]]:
    grid = [[0.0] * p for _ in range(g)]
    for v, (j, q) in zip(values.tolist(), positions, strict=True):
        grid[j][q] = v
    return grid


def choose_answers(report: DegradedReport) -> list[bool]:
    """Who answers for each unavailable device, chosen on this (validation) report: parity
    device 0 where its mean accuracy is at least device 0's (always for device 0)."""
    out = []
    for j, (par, dev) in enumerate(zip(report.parity, report.device, strict=True)):
        out.append(j == 0 or sum(par) >= sum(dev))
    return out


def degraded_accuracy(
    net: CodedNetwork,
    policy: Mapping[str, Any] | None,
    batches: Iterable[tuple[Tensor, Tensor]],
    accel: Accelerator,
    *,
    bn: str = "batch",
) -> float:
    """A_degraded of ``policy`` (its parity decisions included) on ``batches``: the search's
    third objective (docs/parity.md, "Search"). Supernet policies are scored with batch
    statistics, like their accuracy."""
    return degraded_report(net, batches, accel, policy, bn=bn).degraded
