"""Running a plan with parity devices in one process (docs/plan.md, "Parity devices"; the
design: docs/parity.md).

:func:`execute_degraded` runs a whole plan through the engine's mailbox with data device
``j`` unavailable from point ``p`` on (the engine's :class:`~snnas.engine.ErasureFault`),
and :func:`verify_degraded` checks every erasure position of a plan (``snnas plan verify``).
A parity device's program and :class:`Erasure` are the engine's (``snnas/engine/``); the
runtime applies the same rules through its own fault policy (``snnas/runtime/_failover.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from snnas.engine import (
    Erasure,
    ErasureFault,
    MailboxTransport,
    ParityNet,
    Program,
    imputed,
    run,
    run_device,
    run_parity_device,
    standin_payload,
)
from snnas.errors import PlanError
from snnas.plan._compare import compare_logits, passed
from snnas.plan._program import DeviceNet

__all__ = [
    "Erasure",
    "execute_degraded",
    "imputed",
    "run_parity_device",
    "standin_payload",
    "verify_degraded",
]


def execute_degraded(
    plan: Any, images: Tensor, erasure: Erasure | None, nets: Mapping[int, DeviceNet]
) -> Tensor:
    """Run every device of a plan with parity devices in one process, with ``erasure``
    applied (None: normal operation); the system's answer (see :class:`Erasure`)."""
    g = plan.groups
    points = plan.data["schedule"]["points"]
    programs: dict[int, Program] = {}
    for d in range(plan.world):
        entry = plan.device(d)
        if d >= g:
            net = ParityNet(nets[d], plan.weights(d))
            programs[d] = run_parity_device(net, entry, points, g, images)
        else:
            programs[d] = run_device(nets[d], plan.ops[d], images if entry["input"] else None)
    fault = ErasureFault(erasure, plan.impute())
    answers = run(programs, MailboxTransport(), batch=len(images), fault=fault)
    answer_by = 0 if erasure is None else erasure.answer_by
    if answer_by not in answers:
        raise PlanError(f"device {answer_by} produced no answer")
    return answers[answer_by]


def verify_degraded(
    plan: Any,
    images: Tensor,
    labels: Tensor,
    reference: Mapping[str, Tensor],
    split: str,
    nets: Mapping[int, DeviceNet],
) -> dict[str, Any]:
    """Every erasure position executed from the plan's own files (its degraded rules) and
    compared with the coded network's answers for it (``{split}.degraded.{j}.{p}``)."""
    if plan.parity is None:
        raise PlanError(f"{plan.folder}: no parity section: nothing degraded to verify")
    positions = []
    for rule in plan.parity["rules"]:
        j, p = rule["device"], rule["from_point"]
        key = f"{split}.degraded.{j}.{p}"
        if key not in reference:
            raise PlanError(f"{plan.folder}: no reference degraded logits {key!r}")
        logits = execute_degraded(plan, images, Erasure.from_json(rule), nets)
        result = compare_logits(logits, reference[key], labels)
        positions.append({"device": j, "from_point": p, "answer_by": rule["answer_by"],
                          "standin_bytes": rule["bytes"], **result,
                          "passed": passed(result)})  # fmt: skip
    n = max(len(positions), 1)
    return {
        "positions": positions,
        "min_top1_agreement": min(x["top1_agreement"] for x in positions),
        "max_abs_diff": max(x["max_abs_diff"] for x in positions),
        "accuracy": sum(x["accuracy"] for x in positions) / n,
        "reference_accuracy": sum(x["reference_accuracy"] for x in positions) / n,
        "passed": all(x["passed"] for x in positions),
    }
