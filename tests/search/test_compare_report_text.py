"""report.md's wording (issue 16, section 5): no "1 seeds", no "-0.0000", and evaluations to
the top 1% shown as ">budget" where a seed never got there (not budget + 1)."""

from __future__ import annotations

from typing import Any

from snnas.search._compare_report import markdown


def _stat(median: float, lo: float, hi: float) -> dict[str, Any]:
    return {"median": median, "ci95": [lo, hi]}


def _report(reach: dict[str, Any], threshold: float, regret: float) -> dict[str, Any]:
    stats = {
        "auc": _stat(0.5, 0.4, 0.6),
        "regret": _stat(regret, regret, 0.01),
        "heldout": _stat(0.7, 0.6, 0.8),
        "evals_to_top1pct": reach,
    }
    result = {"auc": 0.5, "final": 0.6, "regret": regret, "heldout": 0.7, "p_vs_random": None}
    return {
        "mode": "fixed",
        "space": "tiny",
        "seeds": 1,
        "budget": 10,
        "dataset": "digits",
        "split": {"search_images": 90, "heldout_images": 90},
        "scoring": {"search": "batch", "heldout": "batch", "calib_images": 0},
        "rewards": ["accuracy"],
        "headline": "accuracy",
        "reference": {
            "accuracy": {"policies": 1, "best": 0.9, "median": 0.5, "top1pct_threshold": threshold}
        },
        "results": {"accuracy": {"random": {**result, "stats": stats}}},
        "skipped": {},
    }


def test_never_reached_reads_as_more_than_the_budget():
    reach = {**_stat(11, 11, 11), "reached": 0}
    text = markdown(_report(reach, 0.5, 0.0))
    row = next(line for line in text.splitlines() if line.startswith("| random"))
    assert "| >10 [>10, >10] (0/1) |" in row
    assert "11" not in row
    assert "1 seed per strategy, 10 evaluations each" in text
    assert "1 seeds" not in text


def test_reached_counts_print_as_numbers():
    reach = {**_stat(3, 2, 11), "reached": 1}
    text = markdown(_report(reach, 0.5, 0.0))
    assert "| 3 [2, >10] (1/1) |" in text


def test_no_negative_zero():
    reach = {**_stat(3, 2, 4), "reached": 1}
    text = markdown(_report(reach, -1e-9, -4e-6))
    assert "-0.0000" not in text
    assert "top-1% threshold 0.0000." in text
