"""Which policies a finished search re-scores, and which one it selects in ``pareto`` mode
(docs/search.md, "Selection in pareto mode").

With a user objective (``run_search(..., objective=...)``) the search's ``pareto`` mode has
three objectives, and so does the selection: candidates, front and rule use (accuracy,
ratio, the objective's gain), the gain being the value when maximised and minus the value
when minimised (:meth:`snnas.search._reward.Objective.gain`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from snnas.search._pareto import front_layers, pareto_front, select_on_front
from snnas.space import SearchSpace

__all__ = ["candidates_to_rescore", "select_on_pareto_front"]

#: A user objective's gain of its value (maximised), or ``None`` without one.
Gain = Callable[[float], float] | None


def _objectives(
    record: dict[str, Any], acc: str, gain: Gain, key: str = "comm_ratio"
) -> tuple[float, ...]:
    """(accuracy, cost ``key``) of an event or re-scored record, and the gain of its
    objective."""
    point = (record[acc], record[key])
    return point if gain is None else (*point, gain(record["objective"]))


def candidates_to_rescore(
    space: SearchSpace,
    events: list[dict[str, Any]],
    limit: int,
    multi: bool,
    *,
    gain: Gain = None,
    key: str = "comm_ratio",
) -> list[dict[str, Any]]:
    """The ``limit`` distinct policies re-scored at the end. One objective: the best search
    rewards. ``pareto``: by non-dominated sorting of the search's (accuracy, cost ``key``:
    ``comm_ratio`` or ``latency_ratio``[, the user objective's gain]), each policy at its most
    accurate evaluation, so the low-cost end of the front is re-scored as well as the accurate
    end (a layer too large to fit is thinned evenly)."""
    best_of: dict[tuple[int, ...], dict[str, Any]] = {}
    rank = (
        (lambda e: (-e["accuracy"], e["index"]))
        if multi
        else (lambda e: (-e["reward"], e["index"]))
    )
    for event in sorted(events, key=rank):
        best_of.setdefault(space.encode(event["policy"]), event)
    distinct = list(best_of.values())  # in rank order
    if not multi:
        return distinct[:limit]
    points = [(*_objectives(e, "accuracy", gain, key), e) for e in distinct]
    return [p[-1] for p in front_layers(points, limit)]


def select_on_pareto_front(
    rescored: list[dict[str, Any]],
    budget: float | None,
    *,
    gain: Gain = None,
    key: str = "comm_ratio",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``pareto``: the front of the re-scored candidates (deployable accuracy, cost ``key``[,
    the user objective's gain]) and the member selected on it
    (:func:`snnas.search._pareto.select_on_front`: with a user objective, ties on accuracy
    within the budget go to the better objective, and the knee is three-dimensional); the
    candidates reordered with the selected one first, then the rest of the front, then the
    others (each by decreasing accuracy), and what ``front.json`` holds."""
    points = [_objectives(r, "val_acc", gain, key) for r in rescored]
    front = pareto_front([(*p, r) for p, r in zip(points, rescored, strict=True)])
    members = [p[-1] for p in front]  # by increasing cost
    chosen, rule = select_on_front([p[:-1] for p in front], budget)
    selected = members[chosen]
    on_front = {id(m) for m in members}
    order = [selected] + [m for m in rescored if id(m) in on_front and m is not selected]
    order += [r for r in rescored if id(r) not in on_front]
    record = {
        "rule": rule,
        "budget": budget,
        "objectives": ["val_acc", key] + ([] if gain is None else ["objective"]),
        "selected": chosen,
        "front_size": len(members),
        "candidates_rescored": len(rescored),
        "members": [
            {
                "policy": m["policy"],
                "val_acc": m["val_acc"],
                **{k: m[k] for k in ("comm_ratio", "latency_ms", "latency_ratio") if k in m},
                **({} if gain is None else {"objective": m["objective"]}),
                "search_accuracy": m["search_reward"],
                "event": m["event"],
            }
            for m in members
        ],
    }
    return order, record
