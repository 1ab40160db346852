"""Statistics of strategy comparisons: best-so-far curves, their area, bootstrap confidence
intervals and paired tests over seeds (NAS-Bench-201 / NASLib practice: equal budgets, 10+
seeds, random search as the bar)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "auc",
    "best_so_far",
    "bootstrap_ci",
    "first_reach",
    "mean_se",
    "summary",
    "wilcoxon_p",
]

BOOTSTRAP = 2_000  # resamples
_BOOTSTRAP_SEED = 0


def best_so_far(values: Sequence[float]) -> list[float]:
    """Running maximum."""
    out: list[float] = []
    for v in values:
        out.append(max(v, out[-1]) if out else v)
    return out


def auc(curve: Sequence[float]) -> float:
    """Area under a best-so-far curve per evaluation (its mean): rewards found early count
    for the rest of the budget, so a faster strategy has the larger area."""
    return statistics.fmean(curve)


def first_reach(values: Sequence[float], threshold: float) -> int | None:
    """The number of evaluations until one reaches ``threshold`` (None: never)."""
    return next((i + 1 for i, v in enumerate(values) if v >= threshold), None)


def mean_se(values: Sequence[float]) -> dict[str, float]:
    """Mean and standard error."""
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "se": se}


def bootstrap_ci(values: Sequence[float], center: str = "mean", level: float = 0.95) -> list[float]:
    """Percentile bootstrap confidence interval of the mean (or the median) over seeds
    (seeded: the same values give the same interval)."""
    data = np.asarray(values, dtype=np.float64)
    if len(data) < 2:
        return [float(data[0]), float(data[0])] if len(data) else [math.nan, math.nan]
    rng = np.random.default_rng(_BOOTSTRAP_SEED)
    samples = data[rng.integers(0, len(data), size=(BOOTSTRAP, len(data)))]
    stats = np.median(samples, axis=1) if center == "median" else np.mean(samples, axis=1)
    tail = (1 - level) / 2
    return [float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail))]


def summary(values: Sequence[float], center: str = "mean") -> dict[str, Any]:
    """Median, mean, 95% bootstrap interval of the ``center`` statistic, and every value."""
    return {
        "median": float(np.median(values)),
        "mean": float(np.mean(values)),
        "ci95": bootstrap_ci(values, center),
        "ci_of": center,
        "per_seed": list(values),
    }


def wilcoxon_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of the Wilcoxon signed-rank test of paired ``a`` and ``b`` (ties
    split between signs); 1.0 when every pair is equal, None with fewer than two pairs."""
    if len(a) != len(b):
        raise ValueError(f"paired samples of different sizes: {len(a)} and {len(b)}")
    if len(a) < 2:
        return None
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if all(d == 0 for d in diffs):
        return 1.0
    from scipy.stats import wilcoxon

    return float(wilcoxon(a, b, zero_method="zsplit", alternative="two-sided").pvalue)
