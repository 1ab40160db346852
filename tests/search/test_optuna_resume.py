"""An Optuna search resumes exactly: every named sampler's random state and the study's
system attributes travel in ``state_dict`` as plain data (no pickle), a damaged state is
refused in one line, and a sampler that cannot be resumed exactly says so."""

import copy
import io
import random

import optuna
import pytest
import torch

from snnas.errors import CheckpointError
from snnas.search import make_strategy
from snnas.search.strategies.optuna import SAMPLERS
from snnas.space import space_from_text
from tests.conftest import SMALL_TOML

SPACE = space_from_text(SMALL_TOML)
TARGET = SPACE.sample(random.Random(123))
#: Told trials before the save: past TPE's 10 startup trials and NSGA-II's first generation
#: of 50, so the samplers' models and genetic operators draw, not only their random start.
BEFORE = {"gp": 12}
AFTER = {"gp": 3}


def synthetic(policy):
    return sum(policy[k] == TARGET[k] for k in policy) / len(policy)


def violation(policy):
    return 0.0 if synthetic(policy) > 0.2 else 0.2 - synthetic(policy)


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # what a checkpoint must survive


def _strategy(name, sampler=None):
    objectives = 2 if SAMPLERS[name][1] else 1
    strategy = make_strategy(sampler or f"optuna:{name}", SPACE, seed=3, objectives=objectives)
    strategy.set_constraint(violation)  # constraint values are part of what is rebuilt
    return strategy


def _step(strategy):
    policy = strategy.ask()
    reward = synthetic(policy)
    strategy.tell(policy, (reward, 1 - reward / 2) if strategy.objectives == 2 else reward)
    return policy


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_named_sampler_resumes_to_the_uninterrupted_proposals(name):
    straight = _strategy(name)
    for _ in range(BEFORE.get(name, 60)):
        _step(straight)
    state = _roundtrip(straight.state_dict())
    resumed, again = _strategy(name), _strategy(name)
    resumed.load_state_dict(state)
    after = AFTER.get(name, 10)
    proposals = [_step(resumed) for _ in range(after)]
    if name == "gp":  # its fitted kernels' warm start is not saved: said, and deterministic
        assert "GPSampler may keep state" in resumed.resume_note
        again.load_state_dict(state)
        assert [_step(again) for _ in range(after)] == proposals
        return
    assert resumed.resume_note is None
    assert proposals == [_step(straight) for _ in range(after)]
    assert resumed.state_dict() == straight.state_dict()


def test_a_sampler_instance_gets_the_saved_state():
    def sampler():
        return optuna.samplers.TPESampler(seed=5, n_startup_trials=3)

    straight = make_strategy(sampler(), SPACE, seed=0)
    for _ in range(8):
        _step(straight)
    resumed = make_strategy(sampler(), SPACE, seed=0)
    resumed.load_state_dict(_roundtrip(straight.state_dict()))
    assert [_step(resumed) for _ in range(6)] == [_step(straight) for _ in range(6)]
    # Another class or other settings: other random states, refused.
    other = make_strategy(optuna.samplers.QMCSampler(seed=5), SPACE, seed=0)
    with pytest.raises(CheckpointError, match="QMCSampler has"):
        other.load_state_dict(straight.state_dict())


def test_a_checkpoint_without_the_random_state_resumes_reseeded_and_says_so():
    straight = _strategy("tpe")
    for _ in range(12):
        _step(straight)
    state = straight.state_dict()
    for key in ("random_state", "trial_attrs", "study_attrs"):
        del state[key]  # what earlier versions saved
    resumed = _strategy("tpe")
    resumed.load_state_dict(state)
    assert "without its sampler's random state" in resumed.resume_note
    assert resumed.told == 12 and SPACE.check(_step(resumed)) is None


def _damage(state, how):
    state = copy.deepcopy(state)
    rng = state["random_state"]["_rng"]
    if how == "short keys":
        rng["keys"] = rng["keys"][:100]
    elif how == "word out of range":
        rng["keys"][7] = 2**32
    elif how == "float word":
        rng["keys"][7] = 1.5
    elif how == "zero keys":
        rng["keys"] = [0] * 624
    elif how == "position":
        rng["pos"] = 625
    elif how == "gauss":
        rng["gauss"] = float("nan")
    elif how == "missing path":
        del state["random_state"]["_rng"]
    elif how == "not a record":
        state["random_state"] = [1, 2]
    elif how == "trial records":
        state["trial_attrs"] = state["trial_attrs"][:-1]
    elif how == "attrs":
        state["study_attrs"] = {"qmc": float("inf")}
    return state


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("short keys", "expected 624 key words, found 100"),
        ("word out of range", r"outside \[0, 2\^32\)"),
        ("float word", r"outside \[0, 2\^32\)"),
        ("zero keys", "all zero"),
        ("position", "position 625"),
        ("gauss", "not a finite number"),
        ("missing path", "TPESampler has"),
        ("not a record", "not a record"),
        ("trial records", "12 told trials but 11 trial records"),
        ("attrs", "study's system attributes"),
    ],
)
def test_a_damaged_random_state_is_refused_in_one_line(how, message):
    straight = _strategy("tpe")
    for _ in range(12):
        _step(straight)
    state = straight.state_dict()
    resumed = _strategy("tpe")
    _step(resumed)
    before = resumed.state_dict()
    with pytest.raises(CheckpointError, match=message) as info:
        resumed.load_state_dict(_damage(state, how))
    assert "\n" not in str(info.value)
    assert resumed.state_dict() == before  # left as it was
