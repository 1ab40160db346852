"""Optuna used fully: any sampler instance as a strategy, the multivariate TPE default, a
ready strategy passed through, and a registry that knows no strategy by name."""

import ast
import random
from pathlib import Path

import optuna
import pytest

import snnas.search.strategies._base as base_module
from snnas.errors import ConfigError, UsageError
from snnas.search import make_strategy, strategy_names
from snnas.search.strategies import optuna as optuna_module
from snnas.space import space_from_text
from tests.conftest import SMALL_TOML

SPACE = space_from_text(SMALL_TOML)
TARGET = SPACE.sample(random.Random(123))


def synthetic(policy):
    return sum(policy[k] == TARGET[k] for k in policy) / len(policy)


def test_the_registry_does_not_import_any_strategy():
    """The back-arrow of issue 16, section 6: _base.py names no strategy module."""
    tree = ast.parse(Path(base_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert not {m for m in imported if "optuna" in m or "strategies" in m.split(".")[-1:]}
    assert not {m for m in imported if m.startswith("snnas.search.strategies")}
    # The names still come out, from the Optuna strategy's own list.
    assert [n for n in strategy_names() if n.startswith("optuna:")] == [
        f"optuna:{s}" for s in optuna_module.SAMPLERS
    ]


@pytest.mark.parametrize(
    "sampler",
    [
        optuna.samplers.TPESampler(seed=3, n_startup_trials=2),
        optuna.samplers.RandomSampler(seed=3),
        optuna.samplers.NSGAIISampler(seed=3, population_size=4),
        optuna.samplers.QMCSampler(seed=3),
        optuna.samplers.BruteForceSampler(seed=3),
    ],
    ids=lambda s: type(s).__name__,
)
def test_any_sampler_instance_is_a_strategy(sampler):
    strategy = make_strategy(sampler, SPACE, seed=0)
    assert strategy.label == f"optuna:{type(sampler).__name__}"
    assert strategy._study.sampler is sampler  # used as it is
    for _ in range(8):
        policy = strategy.ask()
        assert SPACE.check(policy) is None
        strategy.tell(policy, synthetic(policy))
    assert strategy.told == 8 and len(strategy._study.trials) == 8
    assert [t.values[0] for t in strategy._study.trials] == [
        synthetic(SPACE.from_factorized(t.params)) for t in strategy._study.trials
    ]


def test_a_sampler_instance_resumes_from_its_history():
    first = make_strategy(optuna.samplers.TPESampler(seed=0), SPACE, seed=0)
    for _ in range(5):
        p = first.ask()
        first.tell(p, synthetic(p))
    again = make_strategy(optuna.samplers.TPESampler(seed=0), SPACE, seed=0)
    again.load_state_dict(first.state_dict())
    assert [t.params for t in again._study.trials] == [t.params for t in first._study.trials]
    assert again.told == 5 and SPACE.check(again.ask()) is None


def test_a_sampler_instance_takes_only_the_number_of_objectives():
    two = make_strategy(optuna.samplers.NSGAIISampler(seed=0), SPACE, 0, objectives=2)
    p = two.ask()
    two.tell(p, (0.9, 0.2))
    assert two.multi_objective and two._study.trials[0].values == [0.9, 0.2]
    with pytest.raises(ConfigError, match=r"strategy\.optuna"):
        make_strategy(optuna.samplers.TPESampler(), SPACE, 0, multivariate=False)


def test_the_tpe_default_is_multivariate_and_grouped():
    sampler = make_strategy("optuna:tpe", SPACE, seed=0)._study.sampler
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert (sampler._multivariate, sampler._group) == (True, True)
    univariate = make_strategy("optuna:tpe", SPACE, seed=0, multivariate=False)._study.sampler
    assert (univariate._multivariate, univariate._group) == (False, False)
    with pytest.raises(ConfigError, match="tpe only"):
        make_strategy("optuna:nsga2", SPACE, seed=0, multivariate=False)


def test_a_ready_strategy_is_taken_as_it_is():
    ready = make_strategy("evolution", SPACE, seed=4, population=3, tournament=2)
    assert make_strategy(ready, SPACE, seed=0) is ready
    other = space_from_text(SMALL_TOML.replace("levels = 3", "levels = 2"))
    with pytest.raises(ConfigError, match="a strategy of space"):
        make_strategy(ready, other)
    with pytest.raises(ConfigError, match="no options"):
        make_strategy(ready, SPACE, 0, population=4)


@pytest.mark.parametrize("thing", [3, object(), optuna.pruners.MedianPruner(), None])
def test_anything_else_is_a_usage_error(thing):
    with pytest.raises(UsageError) as info:
        make_strategy(thing, SPACE)
    assert info.value.key == "strategy" and "BaseSampler" in str(info.value)
