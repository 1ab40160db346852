"""Budgets as constraints (never selected, steered away from by every strategy) and a user
objective combined with the built-in ones (issue 16, section 2)."""

import random

import optuna
import pytest

from snnas._run import RunDir
from snnas.cost import PROFILES, communication, latency
from snnas.errors import CheckpointError, ConfigError, SnnasError
from snnas.search import load_search_config, make_strategy, run_search
from snnas.search._reward import Constraints, Objective, make_reward
from snnas.search.strategies.optuna import CONSTRAINT
from snnas.space import space_from_text
from snnas.train import Accelerator
from tests.conftest import SMALL_TOML

SPACE = space_from_text(SMALL_TOML)
CPU = Accelerator.pick("cpu")
TINY = [
    "search.iterations=2",
    "search.train_steps=2",
    "search.strategy_steps=3",
    "search.samples=3",
    "search.topk=2",
    "search.rescore=4",
    "search.batch_size=64",
    "strategy.reinforce.batch=3",
]
#: A budget about half of the tiny space's policies meet (live ratios 0 to 0.43).
BUDGET = 0.15


def ratio(policy):
    return communication(SPACE, policy).live_ratio


def feasible_share(n=400):
    rng = random.Random(0)
    return sum(ratio(SPACE.sample(rng)) <= BUDGET for _ in range(n)) / n


def constraints(**budgets):
    return Constraints(SPACE, **budgets)


def test_violation_is_the_relative_excess_of_each_budget():
    rng = random.Random(1)
    policy = next(p for p in (SPACE.sample(rng) for _ in range(100)) if ratio(p) > 0.2)
    r = ratio(policy)
    assert constraints(max_comm_ratio=0.2).violation(policy) == pytest.approx((r - 0.2) / 0.2)
    assert constraints(max_comm_ratio=r).violation(policy) == 0.0
    assert constraints(max_comm_ratio=0.0).violation(policy) == pytest.approx(r)
    ms = 1e3 * latency(SPACE, policy, PROFILES["rpi3b+"]).latency_s
    within = constraints(max_latency_ms=ms, latency_profile="rpi3b+")
    assert within.violation(policy) == 0.0
    both = constraints(max_comm_ratio=0.2, max_latency_ms=ms / 2, latency_profile="rpi3b+")
    assert both.violation(policy) == pytest.approx((r - 0.2) / 0.2 + 1.0)
    assert both.measures(policy) == (r, pytest.approx(ms))


def test_the_budget_is_tight_enough_to_matter():
    assert 0.2 < feasible_share() < 0.8


@pytest.mark.parametrize("name", ["random", "evolution"])
def test_random_and_evolution_propose_only_feasible_policies(name):
    options = {"population": 4, "tournament": 2} if name == "evolution" else {}
    strategy = make_strategy(name, SPACE, seed=0, **options)
    strategy.set_constraint(constraints(max_comm_ratio=BUDGET).violation)
    for _ in range(30):
        policy = strategy.ask()
        assert ratio(policy) <= BUDGET
        strategy.tell(policy, random.Random(str(policy)).random())


def test_evolution_prefers_a_feasible_parent_whatever_its_reward():
    rng = random.Random(2)
    policies = [SPACE.sample(rng) for _ in range(200)]
    bad = [p for p in policies if ratio(p) > BUDGET][:3]
    good = next(p for p in policies if ratio(p) <= BUDGET)
    strategy = make_strategy("evolution", SPACE, seed=0, population=4, tournament=4)
    strategy.set_constraint(constraints(max_comm_ratio=BUDGET).violation)
    for p in bad:
        strategy.tell(p, 1.0)
    strategy.tell(good, 0.0)
    child = SPACE.encode(strategy.ask())
    # The whole population is in the tournament: the child is one mutation of the feasible one.
    assert sum(a != b for a, b in zip(child, SPACE.encode(good), strict=True)) == 1


def test_reinforce_ranks_an_infeasible_policy_below_its_batch():
    rng = random.Random(3)
    policies = [SPACE.sample(rng) for _ in range(200)]
    bad = next(p for p in policies if ratio(p) > BUDGET)
    good = [p for p in policies if ratio(p) <= BUDGET][:2]
    strategy = make_strategy("reinforce", SPACE, seed=0, batch=3)
    limits = constraints(max_comm_ratio=BUDGET)
    strategy.set_constraint(limits.violation)
    codes = [list(SPACE.encode(p)) for p in (good[0], bad, good[1])]
    scalars = strategy._scalars([0.5, 0.9, 0.7], codes)
    assert scalars == [0.5, pytest.approx(0.5 - limits.violation(bad)), 0.7]
    # Two objectives: the infeasible point never joins the front.
    strategy.front = []
    strategy._scalars([(0.8, 0.1), (0.99, 0.5), (0.7, 0.05)], codes)
    assert (0.99, 0.5) not in strategy.front and (0.8, 0.1) in strategy.front


def test_optuna_trials_carry_the_violation_and_keep_it_on_resume():
    limits = constraints(max_comm_ratio=BUDGET)
    strategy = make_strategy("optuna:tpe", SPACE, seed=0)
    strategy.set_constraint(limits.violation)
    for _ in range(6):
        p = strategy.ask()
        strategy.tell(p, 0.5)
    strategy.tell(SPACE.no_communication_policy(), 0.4)  # not asked: added as a trial
    expected = [limits.violation(SPACE.from_factorized(t.params)) for t in strategy._study.trials]
    assert [t.constraints[CONSTRAINT] for t in strategy._study.trials] == expected
    assert any(v > 0 for v in expected)
    again = make_strategy("optuna:tpe", SPACE, seed=0)
    again.set_constraint(limits.violation)
    again.load_state_dict(strategy.state_dict())
    assert [t.constraints[CONSTRAINT] for t in again._study.trials] == expected


def test_a_sampler_instance_sees_the_constraints_too():
    strategy = make_strategy(optuna.samplers.NSGAIISampler(seed=0), SPACE, 0, objectives=2)
    strategy.set_constraint(constraints(max_comm_ratio=BUDGET).violation)
    p = strategy.ask()
    strategy.tell(p, (0.9, ratio(p)))
    assert strategy._study.trials[0].constraints == {
        CONSTRAINT: constraints(max_comm_ratio=BUDGET).violation(p)
    }


def _search(path, digits, strategy="reinforce", extra=(), **kw):
    config = load_search_config("digits", None, TINY + list(extra))
    return run_search(SPACE, digits, config, strategy, RunDir(path), accel=CPU, **kw)


@pytest.mark.parametrize("strategy", ["reinforce", "optuna:tpe"])
def test_a_search_never_selects_an_infeasible_policy(tmp_path, digits, strategy):
    result = _search(tmp_path / "r", digits, strategy, [f"constraints.comm_ratio={BUDGET}"])
    run = RunDir(tmp_path / "r")
    events = run.read_jsonl("events.jsonl")
    assert all(e["violation"] == constraints(max_comm_ratio=BUDGET).violation(e["policy"])
               for e in events)  # fmt: skip
    assert ratio(result.best_policy) <= BUDGET
    assert all(t["comm_ratio"] <= BUDGET for t in run.read_json("topk.json"))
    assert all(p["comm_ratio"] <= BUDGET for p in result.summary["pareto_front"])
    summary = run.read_json("summary.json")
    assert summary["constraints"]["max_comm_ratio"] == BUDGET
    assert summary["infeasible_evaluations"] == sum(e["violation"] > 0 for e in events)


def test_a_budget_nothing_meets_is_refused_before_training(tmp_path, digits):
    no_comm = SPACE.no_communication_policy()
    ms = 1e3 * latency(SPACE, no_comm, PROFILES["rpi3b+"]).latency_s
    extra = [f"constraints.latency_ms={ms / 2}", "constraints.profile=rpi3b+"]
    with pytest.raises(ConfigError) as info:
        _search(tmp_path / "r", digits, extra=extra)
    assert info.value.key == "constraints" and "no-communication" in str(info.value)
    assert not (tmp_path / "r").exists()


def test_user_objective_in_the_reward_modes():
    config = load_search_config("digits", None, ["reward.mode=penalized", "reward.lambda=0.1"])
    lower = Objective(lambda p: 0.0, name="ms", weight=0.01)
    assert make_reward(config, lower)(0.9, 0.2, user=3.0) == pytest.approx(0.9 - 0.02 - 0.03)
    higher = Objective(lambda p: 0.0, direction="maximize", weight=0.5)
    assert make_reward(config, higher)(0.9, 0.2, user=0.1) == pytest.approx(0.9 - 0.02 + 0.05)
    pareto = load_search_config("digits", None, ["reward.mode=pareto"])
    assert make_reward(pareto, lower)(0.9, 0.2, user=3.0) == (0.9, 0.2, -3.0)
    assert make_reward(pareto, higher)(0.9, 0.2, user=3.0) == (0.9, 0.2, 3.0)
    for mode in ("accuracy", "budget"):
        with pytest.raises(ConfigError, match="penalized or pareto"):
            make_reward(load_search_config("digits", None, [f"reward.mode={mode}"]), lower)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"fn": 3}, "objective"),
        ({"direction": "down"}, "objective.direction"),
        ({"weight": float("nan")}, "objective.weight"),
        ({"weight": -1}, "objective.weight"),
        ({"weight": True}, "objective.weight"),
        ({"name": "a\nb"}, "objective.name"),
    ],
)
def test_bad_objectives_are_refused(kwargs, key):
    with pytest.raises(ConfigError) as info:
        Objective(**{"fn": len, **kwargs})
    assert info.value.key == key


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "fast", None, True])
def test_an_objective_that_returns_no_number_is_one_clear_error(value):
    with pytest.raises(SnnasError, match="objective 'x': expected a finite number"):
        Objective(lambda p: value, name="x")(SPACE.no_communication_policy())


def test_a_search_with_a_user_objective(tmp_path, digits):
    calls = []

    def sent_kib(policy):  # stands for a measured figure: the bytes a policy sends
        calls.append(SPACE.encode(policy))
        return communication(SPACE, policy).live_policy_bytes / 1024

    objective = Objective(sent_kib, name="sent_kib", weight=0.01)
    result = _search(tmp_path / "r", digits, extra=["reward.mode=penalized"], objective=objective)
    run = RunDir(tmp_path / "r")
    events = run.read_jsonl("events.jsonl")
    assert len(calls) == len(set(calls))  # once per distinct policy
    for e in events:
        value = communication(SPACE, e["policy"]).live_policy_bytes / 1024
        assert e["objective"] == pytest.approx(value)
        expected = e["accuracy"] - 0.1 * e["comm_ratio"] - 0.01 * value
        assert e["reward"] == pytest.approx(expected)
    assert result.summary["best_objective"] == pytest.approx(
        communication(SPACE, result.best_policy).live_policy_bytes / 1024
    )
    assert run.read_json("config.json")["objective"] == {
        "name": "sent_kib", "direction": "minimize", "weight": 0.01,
    }  # fmt: skip
    # A run resumes only with the same objective.
    other = Objective(sent_kib, name="sent_kib", weight=0.02)
    with pytest.raises(CheckpointError, match="objective"):
        _search(tmp_path / "r", digits, extra=["reward.mode=penalized"], objective=other,
                resume=True)  # fmt: skip


def test_a_pareto_search_with_a_user_objective_has_three_objectives(tmp_path, digits):
    objective = Objective(lambda p: ratio(p) ** 2, name="sq")
    result = _search(tmp_path / "r", digits, "optuna:nsga2", ["reward.mode=pareto"],
                     objective=objective)  # fmt: skip
    assert result.summary["evaluations"] == 12
    events = RunDir(tmp_path / "r").read_jsonl("events.jsonl")
    assert all(e["objective"] == pytest.approx(e["comm_ratio"] ** 2) for e in events)


def test_constraints_in_a_config_file(write_space, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[constraints]\ncomm_ratio = 0.25\nlatency_ms = 40\nprofile = "rpi3b+"\n')
    config = load_search_config("digits", path)
    assert (config.max_comm_ratio, config.max_latency_ms, config.latency_profile) == (
        0.25, 40.0, "rpi3b+",
    )  # fmt: skip
    path.write_text("[constraints]\nlatency_ms = 40\n")
    with pytest.raises(ConfigError, match=r"constraints\.profile"):
        load_search_config("digits", path)
