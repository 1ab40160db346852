"""Search hardening: bad values are refused with one clear error, never accepted silently."""

import copy
import math
import random

import pytest
import torch

from snnas._run import RunDir
from snnas.errors import CheckpointError, ConfigError, TrainingError, UsageError
from snnas.search import load_search_config, run_search
from snnas.search._compare import compare
from snnas.search._reward import PolicyScorer, make_reward
from snnas.search.strategies import make_strategy
from snnas.search.strategies.reinforce import Reinforce
from snnas.space import load_space
from snnas.train import Accelerator
from tests.conftest import SPACES

CPU = Accelerator.pick("cpu")
QUICK = load_space(SPACES / "quickstart.toml")
TINY = [
    "search.iterations=2",
    "search.train_steps=2",
    "search.strategy_steps=3",
    "search.samples=3",
    "search.topk=2",
    "search.rescore=2",
    "strategy.reinforce.batch=3",
]


def test_a_diverging_loss_stops_the_search_with_one_line(tmp_path, space, digits, monkeypatch):
    import torch.nn.functional as F

    cross_entropy = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda *a, **k: cross_entropy(*a, **k) * math.nan)
    config = load_search_config("digits", None, TINY)
    with pytest.raises(TrainingError) as info:
        run_search(space, digits, config, "random", RunDir(tmp_path / "r"), accel=CPU)
    message = str(info.value)
    assert "\n" not in message and "diverged in iteration 1" in message and "nan" in message
    assert not (tmp_path / "r" / "last.pt").exists()  # nothing checkpointed after a NaN


def test_make_reward_refuses_an_unknown_mode_and_scalarizes_degraded():
    from dataclasses import replace

    config = load_search_config("digits")
    with pytest.raises(ConfigError, match=r"reward\.mode: expected one of"):
        make_reward(replace(config, reward="fastest"))
    penalized = make_reward(replace(config, reward="penalized", unavailability=0.2))
    assert penalized(0.9, 0.5) == pytest.approx(0.9 - 0.05)
    # A_overall(f) = (1 - f) acc + f A_degraded replaces the accuracy.
    assert penalized(0.9, 0.5, 0.4) == pytest.approx(0.8 * 0.9 + 0.2 * 0.4 - 0.05)
    assert make_reward(replace(config, reward="pareto"))(0.9, 0.5, 0.4) == (0.9, 0.5, 0.4)
    assert make_reward(replace(config, reward="pareto"))(0.9, 0.5) == (0.9, 0.5)


def test_a_scorer_on_an_empty_split_says_so(space):
    from snnas.models import SepResNeXt

    model = SepResNeXt(space)
    with pytest.raises(ConfigError, match=r"is the split empty\?.*0 images, 0 labels"):
        PolicyScorer(
            space, model, torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), CPU,
            batch_size=8, bn="batch",
        )  # fmt: skip
    with pytest.raises(ConfigError, match="3 images, 2 labels"):
        PolicyScorer(
            space, model, torch.zeros(3, 1, 8, 8), torch.zeros(2, dtype=torch.long), CPU,
            batch_size=8, bn="batch",
        )  # fmt: skip


@pytest.mark.parametrize(
    "option", ["lr", "temperature", "tanh_constant", "entropy_weight", "ppo_clip", "grad_clip"]
)
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_reinforce_refuses_non_finite_options(option, value):
    with pytest.raises(ValueError, match="finite"):
        Reinforce(QUICK, 0, **{option: value})
    with pytest.raises(ConfigError, match=f"strategy.reinforce.{option}"):
        make_strategy("reinforce", QUICK, 0, **{option: value})


@pytest.mark.parametrize("reward", [math.nan, math.inf, (0.9, math.nan), (0.9,), "0.9"])
def test_reinforce_refuses_a_non_finite_reward(reward):
    strategy = make_strategy("reinforce", QUICK, 0, batch=2)
    policy = strategy.ask()
    with pytest.raises(ValueError, match="reward"):
        strategy.tell(policy, reward)
    assert strategy.buffer == [] and strategy.told == 0


def _state():
    strategy = make_strategy("reinforce", QUICK, 0, batch=3)
    for _ in range(4):  # one update and one reward waiting
        p = strategy.ask()
        strategy.tell(p, random.Random(0).random())
    return strategy.state_dict()


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda s: s["controller"].__setitem__("start", torch.zeros(1, 7)), "start is"),
        (lambda s: s["controller"].pop("start"), "entries differ"),
        (lambda s: s["controller"]["start"].fill_(math.nan), "not a finite"),
        (lambda s: s.__setitem__("baseline", "high"), "baseline"),
        (lambda s: s.__setitem__("asked", -1), "asked"),
        (lambda s: s.__setitem__("updates", 1.5), "updates"),
        (lambda s: s.__setitem__("buffer", [[[99] * 18, 0.5]]), "buffer"),
        (lambda s: s.__setitem__("buffer", [[s["buffer"][0][0], math.nan]]), "buffer"),
        (lambda s: s.__setitem__("front", [[0.9]]), "front"),
        (lambda s: s.pop("optimizer"), "missing optimizer"),
        (lambda s: s.__setitem__("optimizer", {"state": {}, "param_groups": []}), "optimizer"),
    ],
)
def test_reinforce_load_state_dict_checks_what_it_restores(damage, match):
    state = copy.deepcopy(_state())
    damage(state)
    strategy = make_strategy("reinforce", QUICK, 5, batch=3)
    before = copy.deepcopy(strategy.state_dict())
    with pytest.raises(CheckpointError, match=match):
        strategy.load_state_dict(state)
    after = strategy.state_dict()
    assert after["asked"] == before["asked"] and after["seed"] == 5  # nothing changed
    for k, v in before["controller"].items():
        assert torch.equal(after["controller"][k], v)


def test_a_state_of_another_space_is_refused(space):
    state = _state()
    other = make_strategy("reinforce", space, 0, batch=3)
    with pytest.raises(CheckpointError, match="reinforce strategy"):
        other.load_state_dict(state)


def _compare(space, digits, path, **kw):
    config = load_search_config("digits", None, ["strategy.reinforce.batch=3"])
    args = {"seeds": 2, "budget": 6, "rewards": ["penalized"], "reference": 150}
    strategies = kw.pop("strategies", ["random"])
    return compare(
        space, digits, config, strategies, run=RunDir(path), accel=CPU, supernet_epochs=1,
        **{**args, **kw},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kw", "option"),
    [
        ({"strategies": []}, "--strategies"),
        ({"strategies": ["random", "random"]}, "--strategies"),
        ({"strategies": ["bogus"]}, "--strategies"),
        ({"rewards": []}, "--rewards"),
        ({"rewards": ["penalized", "penalized"]}, "--rewards"),
        ({"rewards": ["fastest"]}, "--rewards"),
        ({"mode": "fast"}, "--mode"),
        ({"seeds": 0}, "--seeds"),
        ({"budget": 0}, "--budget"),
        ({"reference": 9}, "--reference"),
        ({"parity_epochs": 0}, "--parity-epochs"),
    ],
)
def test_compare_refuses_bad_arguments_as_usage_errors(tmp_path, space, digits, kw, option):
    with pytest.raises(UsageError) as info:
        _compare(space, digits, tmp_path / "c", **kw)
    assert info.value.option == option and "\n" not in str(info.value)
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_full_mode_gives_each_strategy_its_own_options(tmp_path, space, digits):
    config = load_search_config(
        "digits",
        None,
        [
            "search.train_steps=2",
            "search.strategy_steps=4",
            "search.samples=2",
            "search.topk=1",
            "search.rescore=2",
            "strategy.reinforce.batch=2",
            "strategy.evolution.population=3",
            "strategy.evolution.tournament=2",
        ],
    )
    compare(
        space, digits, config, ["reinforce", "evolution"], seeds=1, budget=1,
        run=RunDir(tmp_path / "f"), mode="full", rewards=["penalized"], accel=CPU,
    )  # fmt: skip
    reinforce = RunDir(tmp_path / "f" / "reinforce-s0")
    assert len(reinforce.read_jsonl("strategy.jsonl")) == 4 // 2  # one update per 2 policies
    state = reinforce.load_checkpoint("last.pt")["strategy"]
    assert len(state["buffer"]) == 0
    evolution = RunDir(tmp_path / "f" / "evolution-s0").load_checkpoint("last.pt")["strategy"]
    assert len(evolution["population"]) == 3  # its own population size, not the default 20


def test_report_md_goes_through_the_run_folder_atomically(tmp_path, space, digits, monkeypatch):
    written = []
    original = RunDir.write_text

    def spy(self, name, text):
        written.append(name)
        original(self, name, text)

    monkeypatch.setattr(RunDir, "write_text", spy)
    _compare(space, digits, tmp_path / "c")
    assert written == ["report.md"]
    assert not list((tmp_path / "c").glob(".report.md.*"))  # no temporary file left
