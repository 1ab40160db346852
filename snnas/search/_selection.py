"""Which policies a finished search re-scores, and which one it selects in ``pareto`` mode
(docs/search.md, "Selection in pareto mode")."""

from __future__ import annotations

from typing import Any

from snnas.search._pareto import front_layers, pareto_front, select_on_front
from snnas.space import SearchSpace

__all__ = ["candidates_to_rescore", "select_on_pareto_front"]


def candidates_to_rescore(
    space: SearchSpace,
    events: list[dict[str, Any]],
    limit: int,
    multi: bool,
    key: str = "comm_ratio",
) -> list[dict[str, Any]]:
    """The ``limit`` distinct policies re-scored at the end. One objective: the best search
    rewards. ``pareto``: by non-dominated sorting of the search's (accuracy, cost ``key``:
    ``comm_ratio`` or ``latency_ratio``), each
    policy at its most accurate evaluation, so the low-communication end of the front is
    re-scored as well as the accurate end (a layer too large to fit is thinned evenly)."""
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
    points = [(e["accuracy"], e[key], e) for e in distinct]
    return [p[2] for p in front_layers(points, limit)]


def select_on_pareto_front(
    rescored: list[dict[str, Any]], budget: float | None, key: str = "comm_ratio"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``pareto``: the front of the re-scored candidates (deployable accuracy, cost ``key``)
    and the
    member selected on it (:func:`snnas.search._pareto.select_on_front`); the candidates
    reordered with the selected one first, then the rest of the front, then the others (each
    by decreasing accuracy), and what ``front.json`` holds."""
    front = pareto_front([(r["val_acc"], r[key], r) for r in rescored])
    members = [p[2] for p in front]  # by increasing cost
    chosen, rule = select_on_front([(m["val_acc"], m[key]) for m in members], budget)
    selected = members[chosen]
    on_front = {id(m) for m in members}
    order = [selected] + [m for m in rescored if id(m) in on_front and m is not selected]
    order += [r for r in rescored if id(r) not in on_front]
    record = {
        "rule": rule,
        "budget": budget,
        "selected": chosen,
        "front_size": len(members),
        "candidates_rescored": len(rescored),
        "members": [
            {
                "policy": m["policy"],
                "val_acc": m["val_acc"],
                **{k: m[k] for k in ("comm_ratio", "latency_ms", "latency_ratio") if k in m},
                "search_accuracy": m["search_reward"],
                "event": m["event"],
            }
            for m in members
        ],
    }
    return order, record
