"""Comparison statistics and the two-objective helpers, on values worked out by hand."""

import math

import pytest

from snnas.search._pareto import epsilon_gap, hypervolume, pareto_front
from snnas.search._stats import auc, best_so_far, bootstrap_ci, first_reach, summary, wilcoxon_p


def test_best_so_far_auc_and_first_reach():
    curve = best_so_far([0.1, 0.3, 0.2, 0.5])
    assert curve == [0.1, 0.3, 0.3, 0.5]
    assert auc(curve) == pytest.approx(1.2 / 4)
    assert first_reach([-0.5, -0.2, -0.1], -0.2) == 2  # negative rewards work
    assert first_reach([0.1, 0.2], 0.3) is None


def test_wilcoxon_signed_rank():
    # Ten pairs, every difference positive and distinct: the exact two-sided p is 2 / 2^10.
    a = [1.0 + i for i in range(10)]
    b = [0.5 + 0.9 * i for i in range(10)]
    assert wilcoxon_p(a, b) == pytest.approx(2 / 1024)
    assert wilcoxon_p(b, a) == pytest.approx(2 / 1024)  # two-sided
    assert wilcoxon_p(a, a) == 1.0
    assert wilcoxon_p([1.0], [0.0]) is None
    mixed = wilcoxon_p([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5])
    assert mixed is not None and mixed > 0.5
    with pytest.raises(ValueError, match="sizes"):
        wilcoxon_p([1.0, 2.0], [1.0])


def test_bootstrap_interval_is_seeded_and_brackets_the_statistic():
    values = [0.1, 0.4, 0.35, 0.2, 0.9, 0.5, 0.45, 0.3, 0.25, 0.6]
    lo, hi = bootstrap_ci(values)
    assert lo < sum(values) / len(values) < hi
    assert bootstrap_ci(values) == [lo, hi]
    med = summary(values, center="median")
    assert med["median"] == pytest.approx(0.375)
    assert med["ci95"][0] <= 0.375 <= med["ci95"][1]
    assert bootstrap_ci([0.2]) == [0.2, 0.2]


def test_front_hypervolume_and_epsilon_gap():
    points = [(0.9, 0.3), (0.8, 0.1), (0.85, 0.4), (0.95, 0.5), (0.7, 0.0)]
    front = [(a, r) for a, r, _ in pareto_front([(a, r, None) for a, r in points])]
    assert front == [(0.7, 0.0), (0.8, 0.1), (0.9, 0.3), (0.95, 0.5)]
    # Rectangles from ratio 1 down, above accuracy 0.6.
    expected = 0.35 * 0.5 + 0.3 * 0.2 + 0.2 * 0.2 + 0.1 * 0.1
    assert hypervolume(points, (0.6, 1.0)) == pytest.approx(expected)
    assert hypervolume(points, (0.99, 1.0)) == 0.0
    assert epsilon_gap((0.85, 0.4), front) == pytest.approx(0.05)  # (0.9, 0.3) beats it
    assert epsilon_gap((0.8, 0.1), front) == 0.0  # on the front
    assert epsilon_gap((0.99, 0.6), front) == pytest.approx(-0.04)  # extends it
    assert epsilon_gap((0.5, 0.5), []) == 0.0
    assert not math.isnan(hypervolume([], (0.0, 1.0)))
