"""Several objectives: accuracy up, communication ratio down and, on a parity space scored
for it, degraded accuracy up. Pareto fronts, hypervolume and the additive epsilon indicator
(no torch; strategies use it too).

A point is ``(accuracy, ratio)`` or ``(accuracy, ratio, degraded accuracy)``; every function
below takes either, as long as the points of one call have the same length. Internally a
point becomes its *gains* ``(accuracy, -ratio, degraded)``: every coordinate maximised.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

__all__ = [
    "epsilon_gap",
    "front_layers",
    "hypervolume",
    "knee",
    "pareto_front",
    "select_on_front",
    "spread",
]


def _gains(point: Sequence[float]) -> tuple[float, ...]:
    return (point[0], -point[1], *point[2:])


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether gains ``a`` dominate gains ``b`` (no worse anywhere, better somewhere)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True)
    )


def pareto_front(points: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Non-dominated points, by increasing ratio (then decreasing accuracy). Each point is
    its objectives followed by one item carried along: ``(acc, ratio, item)`` or
    ``(acc, ratio, degraded, item)``. Of identical objectives the first is kept."""
    ordered = sorted(points, key=lambda p: (p[1], -p[0]))
    if all(len(p) == 3 for p in ordered):  # two objectives: one sweep
        front2: list[tuple[Any, ...]] = []
        for p in ordered:
            if not front2 or p[0] > front2[-1][0]:
                front2.append(p)
        return front2
    gains = [_gains(p[:-1]) for p in ordered]
    front: list[tuple[Any, ...]] = []
    for i, p in enumerate(ordered):
        dominated = any(_dominates(g, gains[i]) for j, g in enumerate(gains) if j != i)
        duplicate = any(gains[j] == gains[i] for j in range(i))
        if not dominated and not duplicate:
            front.append(p)
    return front


def _area(boxes: list[tuple[float, float]]) -> float:
    """Area of the union of boxes ``[0, x] x [0, y]``."""
    area, top = 0.0, 0.0
    for x, y in sorted(boxes, reverse=True):  # widest first
        if y > top:
            area += x * (y - top)
            top = y
    return area


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` = (lowest accuracy, highest
    ratio[, lowest degraded accuracy]) that counts; points not better than the reference in
    every objective add nothing. Exact: two objectives by a sweep, three by slicing along the
    degraded accuracy."""
    ref = _gains(reference)
    shifted = [
        tuple(g - r for g, r in zip(_gains(p), ref, strict=True)) for p in points
    ]  # every coordinate > 0 counts
    shifted = [s for s in shifted if all(v > 0 for v in s)]
    if len(ref) == 2:
        return _area([(s[0], s[1]) for s in shifted])
    if len(ref) != 3:
        raise ValueError(f"hypervolume of 2 or 3 objectives, got {len(ref)}")
    levels = [*sorted({s[2] for s in shifted}, reverse=True), 0.0]
    volume = 0.0
    for z, below in itertools.pairwise(levels):
        volume += _area([(s[0], s[1]) for s in shifted if s[2] >= z]) * (z - below)
    return volume


def epsilon_gap(point: Sequence[float], front: Sequence[Sequence[float]]) -> float:
    """The additive epsilon indicator of ``point`` against ``front`` (Zitzler et al., 2003):
    the smallest shift ``e`` (every objective improved by ``e``: accuracy + e, ratio - e,
    degraded + e) that leaves the point dominated by none of ``front``. Positive: it is
    dominated, by that margin; negative: it is on the front, and no point of ``front`` comes
    within ``-e`` of dominating it. 0 for an empty front."""
    if not front:
        return 0.0
    mine = _gains(point)
    return max(min(a - b for a, b in zip(_gains(q), mine, strict=True)) for q in front)


def front_layers(points: list[tuple[Any, ...]], limit: int) -> list[tuple[Any, ...]]:
    """Up to ``limit`` points by non-dominated sorting: the front, then the front of what is
    left, and so on, each layer by increasing ratio. A layer that does not fit whole gives
    :func:`spread` of its points (its two extremes first kept)."""
    left = list(points)
    out: list[tuple[Any, ...]] = []
    while left and len(out) < limit:
        layer = pareto_front(left)
        room = limit - len(out)
        out += layer if len(layer) <= room else spread(layer, room)
        taken = {id(p) for p in layer}
        left = [p for p in left if id(p) not in taken]
    return out


def spread(items: Sequence[Any], k: int) -> list[Any]:
    """``k`` of ``items`` evenly spaced by position, the first and the last included (for
    ``k >= 2``; the middle one for ``k = 1``)."""
    n = len(items)
    if k >= n:
        return list(items)
    if k <= 0:
        return []
    if k == 1:
        return [items[n // 2]]
    return [items[round(i * (n - 1) / (k - 1))] for i in range(k)]


def knee(front: Sequence[Sequence[float]]) -> int:
    """Index of the knee of a front of ``(accuracy, ratio)`` points, or ``(accuracy, ratio,
    gain)`` with a third objective (maximised): every axis scaled to [0, 1] by the front's
    extremes, the member with the largest sum of scaled gains ``acc_scaled - ratio_scaled
    (+ gain_scaled)``. With two objectives that is the member furthest above the line that
    joins the extremes; with three, furthest beyond the plane of equal trade. Ties go to the
    more accurate member, then the larger third gain, then the lower ratio. A two-objective
    front of one or two members: its most accurate one."""
    if not front:
        raise ValueError("the knee of an empty front")
    columns = list(zip(*front, strict=True))  # accuracy, ratio[, gain]

    def scaled(v: float, column: Sequence[float]) -> float:
        lo, hi = min(column), max(column)
        return (v - lo) / (hi - lo) if hi > lo else 0.0

    score = [
        scaled(p[0], columns[0])
        - scaled(p[1], columns[1])
        + sum(scaled(g, column) for g, column in zip(p[2:], columns[2:], strict=True))
        for p in front
    ]

    def key(i: int) -> tuple[float, ...]:
        return (score[i], front[i][0], *front[i][2:], -front[i][1], -i)

    return max(range(len(front)), key=key)


def select_on_front(front: Sequence[Sequence[float]], budget: float | None) -> tuple[int, str]:
    """Which member of a front of ``(accuracy, ratio)`` points, or ``(accuracy, ratio,
    gain)`` with a third objective, to select, and the rule that chose it: with a
    ``budget``, the most accurate member whose ratio is at most the budget (ties: the
    larger third gain, then the lower ratio; ``"budget"``), or the member with the lowest
    ratio when none is (ties: the more accurate, then the larger gain; ``"lowest ratio, over
    budget"``); without one, the :func:`knee` (``"knee"``)."""
    if not front:
        raise ValueError("selection from an empty front")
    if budget is None:
        return knee(front), "knee"
    within = [i for i, p in enumerate(front) if p[1] <= budget]
    if within:
        best = max(within, key=lambda i: (front[i][0], *front[i][2:], -front[i][1], -i))
        return best, "budget"
    lowest = min(
        range(len(front)),
        key=lambda i: (front[i][1], -front[i][0], *(-g for g in front[i][2:]), i),
    )
    return lowest, "lowest ratio, over budget"
