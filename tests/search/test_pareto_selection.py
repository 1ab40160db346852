"""Selection in pareto mode (issue 15): the front of the re-scored candidates, written to
front.json, and the documented rule (the budget's most accurate member, else the knee)."""

import json
import math

import pytest

from snnas._run import RunDir
from snnas.search import load_search_config, run_search
from snnas.search._config import SearchConfig
from snnas.search._pareto import front_layers, knee, pareto_front, select_on_front, spread
from snnas.search._reward import Objective, make_reward
from snnas.search._selection import select_on_pareto_front
from snnas.train import Accelerator

CPU = Accelerator.pick("cpu")
TINY = [
    "search.iterations=2",
    "search.train_steps=4",
    "search.strategy_steps=6",
    "search.samples=6",
    "search.topk=3",
    "search.rescore=8",
    "search.batch_size=64",
    "strategy.reinforce.batch=3",
    'reward.mode="pareto"',
]


def test_knee_is_furthest_above_the_line_between_the_extremes():
    # Scaled: (0, 0), (0.2, 0.9), (0.5, 0.95), (1, 1): gains 0, 0.7, 0.45, 0.
    front = [(0.80, 0.0), (0.89, 0.1), (0.895, 0.25), (0.90, 0.5)]
    assert knee(front) == 1
    # A straight front: every gain is 0, the most accurate member wins.
    assert knee([(0.8, 0.1), (0.85, 0.2), (0.9, 0.3)]) == 2
    assert knee([(0.8, 0.1)]) == 0 and knee([(0.8, 0.1), (0.9, 0.4)]) == 1
    with pytest.raises(ValueError):
        knee([])


def test_the_budget_takes_the_most_accurate_member_within_it():
    front = [(0.80, 0.0), (0.89, 0.1), (0.895, 0.25), (0.90, 0.5)]
    assert select_on_front(front, 0.3) == (2, "budget")
    assert select_on_front(front, 0.25) == (2, "budget")  # at most the budget
    assert select_on_front(front, 0.05) == (0, "budget")
    assert select_on_front(front, 5.0) == (3, "budget")
    assert select_on_front(front, None) == (1, "knee")
    over = [(0.85, 0.2), (0.9, 0.4)]
    assert select_on_front(over, 0.1) == (0, "lowest ratio, over budget")


def test_front_layers_reach_the_low_communication_end():
    points = [
        (0.95, 0.9, "accurate"), (0.94, 0.8, "a2"), (0.93, 0.85, "dominated"),
        (0.60, 0.0, "silent"), (0.80, 0.2, "middle"), (0.92, 0.95, "dominated2"),
    ]  # fmt: skip
    # Three of six: the whole front (silent, middle, a2, accurate) thinned to positions
    # round(i * 3 / 2) = 0, 2, 3: its two extremes and one between them.
    assert [p[2] for p in front_layers(points, 3)] == ["silent", "a2", "accurate"]
    assert [p[2] for p in front_layers(points, 5)] == [
        "silent",
        "middle",
        "a2",
        "accurate",
        "dominated",
    ]
    assert len(front_layers(points, 10)) == 6
    assert spread([1, 2, 3, 4, 5], 1) == [3] and spread([1, 2, 3, 4, 5], 2) == [1, 5]
    assert spread([1, 2], 5) == [1, 2] and spread([1, 2], 0) == []


def test_budget_unset_by_default_and_kept_by_the_budget_mode():
    config = load_search_config("digits", None, ['reward.mode="budget"'])
    assert config.budget is None and config.budget_or_default == 0.3
    assert make_reward(config)(0.9, 0.31) == pytest.approx(-0.1)
    # Saved as 0.3 outside pareto mode (runs saved when 0.3 was always written resume).
    assert config.to_json()["budget"] == 0.3
    pareto = load_search_config("digits", None, ['reward.mode="pareto"'])
    assert pareto.to_json()["budget"] is None
    assert SearchConfig.from_json(pareto.to_json()) == pareto
    assert load_search_config("digits", None, ["reward.budget=1"]).budget == 1.0


def _search(space, digits, path, extra=(), **kw):
    config = load_search_config("digits", None, TINY + list(extra))
    return run_search(space, digits, config, "random", RunDir(path), accel=CPU, **kw)


@pytest.fixture(scope="module")
def knee_run(tmp_path_factory, space, digits):
    path = tmp_path_factory.mktemp("pareto") / "k"
    return path, _search(space, digits, path)


def test_front_json_holds_the_rescored_front_and_the_knee_is_selected(knee_run):
    path, result = knee_run
    record = json.loads((path / "front.json").read_text())
    members = record["members"]
    assert record["rule"] == "knee" and record["budget"] is None
    assert record["front_size"] == len(members) >= 1
    for m in members:
        assert set(m) >= {"policy", "val_acc", "comm_ratio", "event"}
        assert 0 <= m["val_acc"] <= 1 and math.isfinite(m["comm_ratio"])
    # Non-dominated, by increasing ratio and increasing accuracy.
    points = [(m["val_acc"], m["comm_ratio"], i) for i, m in enumerate(members)]
    assert [p[2] for p in pareto_front(points)] == list(range(len(members)))
    chosen = knee([(m["val_acc"], m["comm_ratio"]) for m in members])
    assert record["selected"] == chosen
    best = json.loads((path / "best_policy.json").read_text())
    assert best["policy"] == members[chosen]["policy"]
    assert (best["val_acc"], best["comm_ratio"]) == (
        members[chosen]["val_acc"], members[chosen]["comm_ratio"]
    )  # fmt: skip
    assert result.summary["selection"]["rule"] == "knee"
    top = json.loads((path / "topk.json").read_text())
    assert top[0]["policy"] == members[chosen]["policy"]
    # The search's lowest-communication policy was among those re-scored: the candidates
    # come from the whole search front, not from the most accurate end only.
    lowest = min(result.events, key=lambda e: (e["comm_ratio"], -e["accuracy"]))
    assert record["candidates_rescored"] == 8
    rescored_ratios = {m["comm_ratio"] for m in members}
    assert min(rescored_ratios) <= lowest["comm_ratio"]


def test_a_budget_selects_the_most_accurate_member_within_it(knee_run, tmp_path, space, digits):
    path, _ = knee_run
    members = json.loads((path / "front.json").read_text())["members"]
    positive = [m for m in members if m["comm_ratio"] > 0]
    assert positive, "the front has a member that communicates"
    budget = positive[0]["comm_ratio"]
    result = _search(space, digits, tmp_path / "b", [f"reward.budget={budget!r}"])
    record = json.loads((tmp_path / "b" / "front.json").read_text())
    assert record["members"] == members  # the same search: only the selection differs
    within = [m for m in members if m["comm_ratio"] <= budget]
    expected = max(within, key=lambda m: m["val_acc"])
    assert record["rule"] == "budget" and record["budget"] == budget
    assert result.best_policy == space.validate(expected["policy"])
    assert result.summary["best_comm_ratio"] <= budget


def test_the_knee_of_three_objectives_counts_the_third():
    # Scaled sums acc - ratio + gain: 0, 0 and 1; on (accuracy, ratio) alone all three lie
    # on the line between the extremes and the most accurate would win.
    front = [(1.0, 1.0, 0.0), (0.0, 0.0, 0.0), (0.5, 0.5, 1.0)]
    assert knee(front) == 2 and knee([p[:2] for p in front]) == 0
    # Ties go to the more accurate member, then the larger gain.
    assert knee([(0.9, 0.1, -5.0), (0.9, 0.1, -1.0)]) == 1


def _record(event, acc, ratio, ms):
    return {
        "policy": {"event": event},
        "val_acc": acc,
        "comm_ratio": ratio,
        "objective": ms,
        "reward": acc,
        "search_reward": acc,
        "event": event,
    }


def test_a_user_objective_is_an_objective_of_the_selection():
    """pareto with a user objective (here milliseconds, minimised): the front is over
    (accuracy, ratio, objective) and the budget's tie on accuracy goes to the better
    objective. On (accuracy, ratio) alone, slow and fast are one point (the first kept),
    and the most accurate within the budget is then slow, the worse objective."""
    rescored = [
        _record(0, 0.90, 0.10, 50.0),  # slow: dominated by fast once time counts
        _record(1, 0.90, 0.10, 10.0),  # fast
        _record(2, 0.90, 0.05, 30.0),  # less traffic, slower than fast: on the front
        _record(3, 0.80, 0.20, 1.0),  # dominated on (accuracy, ratio), the fastest
        _record(4, 0.95, 0.30, 60.0),
    ]
    ms = Objective(lambda p: 0.0, name="ms")  # minimised: its gain is minus the value
    order, record = select_on_pareto_front(rescored, 0.15, gain=ms.gain)
    assert record["objectives"] == ["val_acc", "comm_ratio", "objective"]
    assert [m["event"] for m in record["members"]] == [2, 1, 3, 4]  # by increasing ratio
    assert all(m["objective"] == rescored[m["event"]]["objective"] for m in record["members"])
    assert record["rule"] == "budget" and order[0]["event"] == 1  # fast, not slow
    assert record["members"][record["selected"]]["event"] == 1
    assert [r["event"] for r in order] == [1, 2, 3, 4, 0]
    # The knee of the three: scaled acc - ratio + gain over the members (events 2, 1, 3,
    # 4) = 1.18, 1.31, 0.40, 0.00: fast again.
    order, record = select_on_pareto_front(rescored, None, gain=ms.gain)
    assert record["rule"] == "knee" and order[0]["event"] == 1
    # Without one: two objectives, as before.
    two = select_on_pareto_front(rescored, 0.15)[1]
    assert two["objectives"] == ["val_acc", "comm_ratio"] and "objective" not in two["members"][0]


def test_a_pareto_search_selects_on_three_objectives(tmp_path, space, digits):
    def float16s(policy):  # a stand-in for a measured cost: fewer float16 links is better
        return float(sum(v == "float16" for v in policy.values()))

    objective = Objective(float16s, name="float16s", direction="minimize")
    result = _search(space, digits, tmp_path / "o", objective=objective)
    record = json.loads((tmp_path / "o" / "front.json").read_text())
    members = record["members"]
    assert record["objectives"] == ["val_acc", "comm_ratio", "objective"]
    for m in members:
        assert m["objective"] == float16s(space.validate(m["policy"]))
    points = [(m["val_acc"], m["comm_ratio"], -m["objective"]) for m in members]
    assert [p[3] for p in pareto_front([(*q, i) for i, q in enumerate(points)])] == list(
        range(len(members))
    )  # every member non-dominated in three objectives
    assert record["selected"] == knee(points)
    chosen = members[record["selected"]]
    assert result.best_policy == space.validate(chosen["policy"])
    assert result.summary["best_objective"] == chosen["objective"]


def test_a_user_objective_under_the_latency_cost():
    # Both at once (two branches met here): the front is over (accuracy, latency ratio,
    # objective); the communication ratio is carried along but decides nothing.
    rescored = [
        {**_record(0, 0.90, 0.99, 50.0), "latency_ratio": 0.10, "latency_ms": 5.0},
        {**_record(1, 0.90, 0.01, 10.0), "latency_ratio": 0.10, "latency_ms": 5.0},
        {**_record(2, 0.95, 0.01, 10.0), "latency_ratio": 0.40, "latency_ms": 20.0},
    ]
    ms = Objective(lambda p: 0.0, name="ms")
    order, record = select_on_pareto_front(rescored, 0.2, gain=ms.gain, key="latency_ratio")
    assert record["objectives"] == ["val_acc", "latency_ratio", "objective"]
    assert [m["event"] for m in record["members"]] == [1, 2]  # 0 is dominated by 1
    assert order[0]["event"] == 1 and record["rule"] == "budget"
    assert record["members"][0]["latency_ms"] == 5.0 and record["members"][0]["objective"] == 10
    # On the communication ratio event 0 would be dominated too, but the budget of 0.2 on
    # the cost would keep only event 1 either way; with a budget of 0.5 latency admits 2.
    assert (
        select_on_pareto_front(rescored, 0.5, gain=ms.gain, key="latency_ratio")[0][0]["event"] == 2
    )
