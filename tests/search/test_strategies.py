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
    # Exact continuation; Optuna's samplers too (their random state is saved,
    # tests/search/test_optuna_resume.py, where GP's one exception is).
    assert a == b


#: The quickstart's rewards in compare (benchmarks/proxies.py, docs/search.md): spread of
#: deployable accuracies over uniform policies, of penalized rewards, and the scorer's
#: signal-to-noise ratio (reward spread over the spread of its error).
ACC_STD, REWARD_STD, SNR = 0.008, 0.011, 1.4


def quickstart_like_reward(space, seed=123):
    """(noisy reward, noise-free reward) of the quickstart's make-up: an additive hidden
    accuracy term, minus 0.1 x the exact live communication ratio, plus fixed noise per
    policy at the quickstart's signal-to-noise ratio."""
    from snnas.cost import communication

    target = space.encode(space.sample(random.Random(seed)))
    sizes = [len(d) for d in space.decisions]
    scale = ACC_STD / sum((1 / n) * (1 - 1 / n) for n in sizes) ** 0.5
    cache = {}

    def reward(policy):
        code = space.encode(policy)
        if code not in cache:
            acc = scale * sum(a == b for a, b in zip(code, target, strict=True))
            clean = acc - 0.1 * communication(space, policy).live_ratio
            noise = random.Random(hash((seed, code))).gauss(0, REWARD_STD / SNR)
            cache[code] = (clean + noise, clean)
        return cache[code]

    return reward


def test_reinforce_beats_random_at_the_quickstarts_signal_to_noise_ratio():
    """Equal budgets of 200 on the quickstart's space, 10 seeds: the controller's best-so-far
    curve has a larger area than random search's (paired Wilcoxon p < 0.05), and what it
    finds is better without the noise too. (With the old default lr of 1e-3 over 20 updates
    p was 0.70: this fails when the controller does not learn.)"""
    from snnas.search._stats import auc, best_so_far, wilcoxon_p
    from snnas.space import load_space
    from tests.conftest import SPACES

    space = load_space(SPACES / "quickstart.toml")
    reward = quickstart_like_reward(space)
    out = {}
    for name in ("reinforce", "random"):
        out[name] = []
        for seed in range(10):
            strategy = make_strategy(name, space, seed=seed)
            noisy, clean = [], []
            while len(noisy) < 200:
                for p in strategy.ask_batch(strategy.batch_size):
                    r, c = reward(p)
                    strategy.tell(p, r)
                    noisy.append(r)
                    clean.append(c)
            out[name].append((auc(best_so_far(noisy)), sum(clean[-50:]) / 50))
    aucs = {k: [a for a, _ in v] for k, v in out.items()}
    assert wilcoxon_p(aucs["reinforce"], aucs["random"]) < 0.05, aucs
    assert sorted(aucs["reinforce"])[5] > sorted(aucs["random"])[5]
    late = {k: sorted(c for _, c in v)[5] for k, v in out.items()}  # medians
    assert late["reinforce"] > late["random"] + 0.01, late


def test_reinforce_logs_its_updates():
    strategy = make_strategy("reinforce", SPACE, seed=0, batch=4)
    for i, p in enumerate(strategy.ask_batch(4)):
        assert not strategy.stats()  # one update per batch
        strategy.tell(p, 0.5 + 0.1 * i)
    stats = strategy.stats()
    assert {"mean_reward", "reward_std", "advantage_abs", "entropy", "grad_norm"} <= set(stats)
    assert stats["update"] == 1 and stats["mean_reward"] == pytest.approx(0.65)
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


@pytest.mark.parametrize(
    "options",
    [{}, {"advantage": "loo"}, {"advantage": "ema"}, {"ppo_epochs": 3}, {"pareto": True}],
)
def test_reinforce_variants_resume_exactly(options):
    """Every advantage, PPO and two-objective rewards: a controller restored mid-batch from
    its state continues exactly."""
    options = dict(options)
    pareto = options.pop("pareto", False)

    def reward(p):
        r = synthetic(p)
        return (r, 1.0 - r + 0.1 * (p["t0.dtype"] == "float32")) if pareto else r

    straight = make_strategy("reinforce", SPACE, seed=2, batch=4, **options)
    for _ in range(9):  # two updates and one reward waiting in the buffer
        p = straight.ask()
        straight.tell(p, reward(p))
    resumed = make_strategy("reinforce", SPACE, seed=2, batch=4, **options)
    resumed.load_state_dict(_roundtrip(straight.state_dict()))
    for _ in range(7):
        a, b = straight.ask(), resumed.ask()
        assert a == b
        straight.tell(a, reward(a))
        resumed.tell(b, reward(b))
    assert straight.stats()["argmax_policy"] == resumed.stats()["argmax_policy"]
    for x, y in zip(straight.controller.parameters(), resumed.controller.parameters(), strict=True):
        assert torch.equal(x, y)
    if pareto:
        assert resumed.front == straight.front and len(resumed.front) >= 1


def test_reinforce_phase_3_and_advantages():
    strategy = make_strategy("reinforce", SPACE, seed=0, batch=3)
    before = [p.clone() for p in strategy.controller.parameters()]
    for p in strategy.ask_batch(6):
        strategy.observe(p, synthetic(p))  # sampled from the frozen controller
    assert all(
        torch.equal(a, b) for a, b in zip(before, strategy.controller.parameters(), strict=True)
    )
    assert strategy.told == 6 and not strategy.stats()
    # Batch mean and standard deviation: the advantages of any rewards are standardised, so
    # the update does not depend on the rewards' scale.
    import torch as t

    adv = strategy._advantages(t.tensor([0.90, 0.91, 0.95], dtype=t.float64))
    assert float(adv.mean()) == pytest.approx(0) and float(adv.std(unbiased=False)) == (
        pytest.approx(1)
    )
    loo = make_strategy("reinforce", SPACE, seed=0, advantage="loo")
    adv = loo._advantages(t.tensor([1.0, 2.0, 6.0], dtype=t.float64))
    std = float(t.tensor([1.0, 2.0, 6.0]).std(unbiased=False))
    assert adv.tolist() == pytest.approx([(1 - 4) / std, (2 - 3.5) / std, (6 - 1.5) / std])


def test_reinforce_two_objective_reward_is_the_epsilon_gap_to_the_front():
    strategy = make_strategy("reinforce", SPACE, seed=0, batch=2)
    strategy.front = [(0.9, 0.3), (0.8, 0.1)]
    values = strategy._scalars([(0.85, 0.4), (0.95, 0.35)])
    assert values == pytest.approx([-0.05, 0.05])  # dominated; extends the front
    assert strategy.front == [(0.8, 0.1), (0.9, 0.3), (0.95, 0.35)]
