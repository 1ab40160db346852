"""One shared suite run against every registered strategy."""

import io
import random

import pytest
import torch

from snnas.errors import ConfigError
from snnas.search import make_strategy, strategy_names
from snnas.space import space_from_text
from tests.conftest import SMALL_TOML

SPACE = space_from_text(SMALL_TOML)
TARGET = SPACE.sample(random.Random(123))
ALL = strategy_names()


def synthetic(policy):
    """A reward with a known optimum: the fraction of decisions equal to TARGET's."""
    return sum(policy[k] == TARGET[k] for k in policy) / len(policy)


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # what a checkpoint must survive


def test_registry_lists_every_strategy():
    assert ALL[:3] == ["reinforce", "random", "evolution"]
    assert {"optuna:tpe", "optuna:random", "optuna:nsga2", "optuna:gp"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_asks_are_valid_policies_and_tell_counts(name):
    strategy = make_strategy(name, SPACE, seed=0)
    for _ in range(6):
        policy = strategy.ask()
        assert SPACE.check(policy) is None
        strategy.tell(policy, synthetic(policy))
    batch = strategy.ask_batch(3)
    assert len(batch) == 3 and all(SPACE.check(p) is None for p in batch)
    for p in batch:
        strategy.tell(p, synthetic(p))
    assert strategy.told == 9
    assert SPACE.check(strategy.sample_for_training()) is None


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_run(name):
    def trace(seed):
        strategy = make_strategy(name, SPACE, seed=seed)
        out = []
        for _ in range(12):
            p = strategy.ask()
            strategy.tell(p, synthetic(p))
            out.append(SPACE.encode(p))
        return out

    assert trace(0) == trace(0)
    assert trace(0) != trace(1)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_resume(name):
    straight = make_strategy(name, SPACE, seed=3)
    for _ in range(10):
        p = straight.ask()
        straight.tell(p, synthetic(p))
    state = _roundtrip(straight.state_dict())
    resumed = make_strategy(name, SPACE, seed=3)
    resumed.load_state_dict(state)
    assert (resumed.asked, resumed.told) == (straight.asked, straight.told)
    a, b = straight.ask(), resumed.ask()
    assert SPACE.check(b) is None
    if not name.startswith("optuna"):
        # Exact continuation (Optuna keeps its samplers' random state private).
        assert a == b


def test_reinforce_finds_a_known_optimum_and_beats_random():
    budget = 400
    best = {"reinforce": [], "random": []}
    for name in best:
        for seed in range(3):
            strategy = make_strategy(name, SPACE, seed=seed)
            found, top = None, 0.0
            for i in range(budget):
                p = strategy.ask()
                r = synthetic(p)
                strategy.tell(p, r)
                top = max(top, r)
                if r == 1.0 and found is None:
                    found = i + 1
            best[name].append((top, found))
    # Every seed of the controller reaches the optimum within the budget...
    assert all(found is not None for _, found in best["reinforce"]), best
    # ...which random search, over a space of 3 million policies, does not come near.
    mean = {k: sum(t for t, _ in v) / len(v) for k, v in best.items()}
    assert mean["reinforce"] - mean["random"] > 0.2, mean


def test_reinforce_logs_its_updates():
    strategy = make_strategy("reinforce", SPACE, seed=0)
    p = strategy.ask()
    strategy.tell(p, 0.5)
    stats = strategy.stats()
    assert {"mean_reward", "baseline", "advantage", "entropy", "grad_norm"} <= set(stats)
    assert set(stats["argmax_probs"]) == set(SPACE.labels)
    assert all(0 < v <= 1 for v in stats["argmax_probs"].values())


def test_evolution_mutates_one_decision():
    strategy = make_strategy("evolution", SPACE, seed=0, population=4, tournament=2)
    members = []
    for _ in range(4):
        p = strategy.ask()
        strategy.tell(p, synthetic(p))
        members.append(SPACE.encode(p))
    child = SPACE.encode(strategy.ask())
    assert min(sum(a != b for a, b in zip(child, m, strict=True)) for m in members) == 1


def test_optuna_multi_objective_takes_pairs():
    strategy = make_strategy("optuna:nsga2", SPACE, seed=0, objectives=2)
    assert strategy.multi_objective
    p = strategy.ask()
    strategy.tell(p, (0.9, 0.3))
    with pytest.raises(ConfigError):
        make_strategy("optuna:gp", SPACE, seed=0, objectives=2)


@pytest.mark.parametrize(
    ("name", "options", "key"),
    [
        ("nonsense", {}, "--strategy"),
        ("random:x", {}, "--strategy"),
        ("optuna:cmaes", {}, "--strategy"),
        ("reinforce", {"lrr": 0.1}, "strategy.reinforce.lrr"),
        ("evolution", {"population": 1}, "strategy.evolution.population"),
    ],
)
def test_bad_strategy_names_and_options(name, options, key):
    with pytest.raises(ConfigError) as info:
        make_strategy(name, SPACE, 0, **options)
    assert info.value.key == key
