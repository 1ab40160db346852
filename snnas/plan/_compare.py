"""How a plan's answers are compared with the frozen network's (``plan verify``, the
runtime's report, the degraded execution)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor

__all__ = ["RTOL", "compare_logits", "passed"]

#: Numerical tolerance of verification, relative to the logits' scale: a plan passes when no
#: logit differs from the frozen network's by more than ``RTOL * (1 + max |logit|)`` and every
#: answer agrees, except where the frozen network's top two logits are closer than that.
#: (Float16 payloads round a last-bit difference of the convolutions either way; one such
#: step is 2**-11 of the value, and it travels through the blocks after it.)
RTOL = 1e-3


def compare_logits(logits: Tensor, reference: Tensor, labels: Tensor | None) -> dict[str, Any]:
    """Agreement of ``logits`` with ``reference``, and accuracy against ``labels`` (``None``
    without labels: the user's own images).

    ``tolerance`` is ``RTOL * (1 + max |reference|)``; ``disagreements_beyond_tolerance``
    counts the images whose answers differ although the reference's top two logits are
    further apart than the tolerance (a real disagreement, not a numerical tie).
    """
    n = len(reference)
    ours, theirs = logits.argmax(1), reference.argmax(1)
    tolerance = RTOL * (1.0 + float(reference.abs().max())) if n else RTOL
    top2 = reference.topk(min(2, reference.shape[1]), dim=1).values
    margin = top2[:, 0] - top2[:, -1]
    decided = margin > tolerance
    return {
        "images": n,
        "top1_agreement": int((ours == theirs).sum()) / max(n, 1),
        "max_abs_diff": float((logits - reference).abs().max()) if n else 0.0,
        "tolerance": tolerance,
        "disagreements_beyond_tolerance": int(((ours != theirs) & decided).sum()),
        "accuracy": None if labels is None else int((ours == labels).sum()) / max(n, 1),
        "reference_accuracy": (
            None if labels is None else int((theirs == labels).sum()) / max(n, 1)
        ),
    }


def passed(report: Mapping[str, Any]) -> bool:
    """Whether a comparison (:func:`compare_logits`) is within the tolerance."""
    return bool(
        report["disagreements_beyond_tolerance"] == 0
        and math.isfinite(report["max_abs_diff"])
        and report["max_abs_diff"] <= report["tolerance"]
    )
