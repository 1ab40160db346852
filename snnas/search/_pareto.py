"""Two objectives, accuracy up and communication ratio down: Pareto fronts, hypervolume and
the additive epsilon indicator (no torch; strategies use it too)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["epsilon_gap", "hypervolume", "pareto_front"]


def pareto_front(points: list[tuple[float, float, Any]]) -> list[tuple[float, float, Any]]:
    """Non-dominated (accuracy up, ratio down) points, by increasing ratio."""
    front: list[tuple[float, float, Any]] = []
    for acc, ratio, item in sorted(points, key=lambda p: (p[1], -p[0])):
        if not front or acc > front[-1][0]:
            front.append((acc, ratio, item))
    return front


def hypervolume(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by (accuracy, ratio) ``points`` and bounded by ``reference`` =
    (lowest accuracy, highest ratio) that counts; points beyond it add nothing."""
    acc_ref, ratio_ref = reference
    front = pareto_front([(a, r, None) for a, r in points if a > acc_ref and r < ratio_ref])
    area, previous = 0.0, ratio_ref
    for acc, ratio, _ in reversed(front):  # from the highest ratio down
        area += (previous - ratio) * (acc - acc_ref)
        previous = ratio
    return area


def epsilon_gap(point: tuple[float, float], front: Sequence[tuple[float, float]]) -> float:
    """The additive epsilon indicator of ``point`` against ``front`` (Zitzler et al., 2003):
    the smallest shift ``e`` (accuracy + e, ratio - e) that leaves the point dominated by
    none of ``front``. Positive: it is dominated, by that margin; negative: it is on the
    front, and no point of ``front`` comes within ``-e`` of dominating it. 0 for an empty
    front."""
    acc, ratio = point
    if not front:
        return 0.0
    return max(min(a - acc, ratio - r) for a, r in front)
