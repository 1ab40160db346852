"""Whether a run did what its plan promises: answers equal to the plan's reference within
``plan verify``'s tolerance, and exactly the plan's bytes on the wire.

``snnas run`` writes the verdict into ``runtime.json`` (``checks``) and exits 1 when either
fails, naming which.
"""

from __future__ import annotations

import math
from typing import Any

from snnas.errors import PlanError, UsageError, shorten
from snnas.plan import LoadedPlan
from snnas.plan._verify import RTOL

__all__ = ["check_counts", "check_report", "verdict_message"]


def _tolerance(plan: LoadedPlan, split: str, images: int) -> float:
    """``plan verify``'s tolerance (:func:`snnas.plan.compare_logits`): ``RTOL * (1 + max
    |logit|)`` over the reference logits of the images answered (with parity devices, over
    every rule's logits of those images: the largest the comparison can have used)."""
    reference = plan.reference()
    rows = [t[:images] for name, t in reference.items()
            if name.startswith(f"{split}.") and name != f"{split}.labels"]  # fmt: skip
    largest = max((float(t.abs().max()) for t in rows if t.numel()), default=0.0)
    return RTOL * (1.0 + largest)


def check_report(plan: LoadedPlan, report: dict[str, Any], split: str) -> dict[str, Any]:
    """The ``checks`` of ``runtime.json``.

    ``answers``: the largest logit difference against the tolerance (and, when the report
    counts them, answers that differ where the reference's top two logits are further apart
    than the tolerance). ``bytes``: the measured bytes against the plan's, link by link; not
    compared (``null``) when a device was lost or a straggler's payloads were replaced, which
    change the bytes by design. ``passed``: both hold."""
    tolerance = float(report.get("tolerance") or _tolerance(plan, split, int(report["images"])))
    diff = float(report["max_abs_diff"])
    disagreements = report.get("disagreements_beyond_tolerance")
    answers_ok = math.isfinite(diff) and diff <= tolerance and not disagreements
    straggler = report.get("straggler") or {}
    changed = report.get("failover") is not None or bool(straggler.get("images_replaced"))
    bytes_ok = None if changed else bool(report["bytes_equal"])
    return {
        "answers": {
            "passed": answers_ok,
            "max_abs_diff": diff,
            "tolerance": tolerance,
            "disagreements_beyond_tolerance": disagreements,
        },
        "bytes": {
            "passed": bytes_ok,
            "measured": int(report["bytes_measured"]["total"]),
            "planned": int(report["bytes_planned"]["total"]),
        },
        "passed": answers_ok and bytes_ok is not False,
    }


def verdict_message(checks: dict[str, Any], where: str) -> str | None:
    """One line saying which check failed (None when the run passed)."""
    if checks["passed"]:
        return None
    problems = []
    answers = checks["answers"]
    if not answers["passed"]:
        diff, tolerance = answers["max_abs_diff"], answers["tolerance"]
        parts = []
        if not diff <= tolerance:  # NaN included
            parts.append(f"max abs logit difference {diff:.3g} > {tolerance:.3g}")
        if answers["disagreements_beyond_tolerance"]:
            parts.append(f"{answers['disagreements_beyond_tolerance']} answer(s) differ")
        problems.append(
            "the answers differ from the plan's reference beyond plan verify's tolerance "
            f"({', '.join(parts)})"
        )
    sent = checks["bytes"]
    if sent["passed"] is False:
        problems.append(
            f"the bytes on the wire differ from the plan's ({sent['measured']:,} measured, "
            f"{sent['planned']:,} planned)"
        )
    return f"{'; '.join(problems)}; see {where}"


def check_counts(plan: LoadedPlan, split: str, images: int | None, warmup: int) -> int:
    """The number of images a run answers; ``--images`` above the split's size and
    ``--warmup`` that leaves no image to time are usage errors, never clamped."""
    available = int(plan.data["reference"]["splits"].get(split, 0))
    if available < 1:
        raise PlanError(f"{shorten(str(plan.folder))}: the plan has no {split} images to answer")
    if images is not None and images > available:
        expected = f"at most {available} (the {split} split's size in plan.json reference.splits)"
        raise UsageError("--images", expected, images)
    count = available if images is None else images
    if warmup >= count:
        expected = f"fewer than the {count} images answered (lower it or raise --images)"
        raise UsageError("--warmup", expected, warmup)
    return count
