"""Selection in pareto mode (issue 15): the front of the re-scored candidates, written to
front.json, and the documented rule (the budget's most accurate member, else the knee)."""

import json
import math

import pytest

from snnas._run import RunDir
from snnas.search import load_search_config, run_search
from snnas.search._config import SearchConfig
from snnas.search._pareto import front_layers, knee, pareto_front, select_on_front, spread
from snnas.search._reward import make_reward
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


def _search(space, digits, path, extra=()):
    config = load_search_config("digits", None, TINY + list(extra))
    return run_search(space, digits, config, "random", RunDir(path), accel=CPU)


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
