"""A search or comparison resumes only from state it can use: everything the loop will read
from a checkpoint or an evaluations file is checked first, with the file and the reason."""

import copy
import json

import pytest
import torch

from snnas._run import RunDir
from snnas.errors import CheckpointError
from snnas.search import load_search_config, run_search
from snnas.search._resume import check_search_state, preflight
from snnas.train import Accelerator
from tests.conftest import TINY_SPACE
from tests.fuzz._cli import invoke

TINY = [
    "search.iterations=1",
    "search.train_steps=1",
    "search.strategy_steps=1",
    "strategy.reinforce.batch=1",
]
TINY += ["search.samples=2", "search.topk=1"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, space, digits):
    config = load_search_config("digits", None, TINY)
    run = RunDir(tmp_path_factory.mktemp("runs") / "s")
    run_search(space, digits, config, "reinforce", run, accel=Accelerator.pick("cpu"))
    return config, torch.load(run / "last.pt", weights_only=True)


def _breaks(state):
    yield "no 'identity' entry", lambda s: s.pop("identity")
    yield "'config' should be an object", lambda s: s["identity"].__setitem__("config", [])
    yield "iteration -5 of 1", lambda s: s.__setitem__("iteration", -5)
    yield "iteration 9 of 1", lambda s: s.__setitem__("iteration", 9)
    yield "3 evaluations after 0 iterations", lambda s: s.__setitem__("iteration", 0)
    yield (
        "(evaluation 0): corrupt checkpoint (no 'reward' entry)",
        lambda s: s["events"][0].pop("reward"),
    )
    yield "evaluation 1 has index 7", lambda s: s["events"][1].__setitem__("index", 7)
    yield (
        "'reward' should be a finite number, found nan",
        lambda s: s["events"][0].__setitem__("reward", float("nan")),
    )
    yield "'events' should be an array", lambda s: s.__setitem__("events", 3)
    yield "no 'seed' entry", lambda s: s.__setitem__("strategy", {"name": "reinforce"})
    yield "train_log holds", lambda s: s.__setitem__("train_log", [1])


@pytest.mark.parametrize("index", range(11))
def test_broken_search_checkpoints_are_refused(saved, index):
    _config, state = saved
    reason, breaks = list(_breaks(state))[index]
    broken = copy.deepcopy(state)
    breaks(broken)
    with pytest.raises(CheckpointError) as info:
        check_search_state(broken, "runs/s/last.pt")
    assert reason in str(info.value) and str(info.value).startswith("runs/s/last.pt")


def test_preflight_loads_states_into_fresh_objects(tmp_path, saved, space):
    config, state = saved
    run = RunDir(tmp_path / "s")
    run.create()
    torch.save(state, run / "last.pt")
    preflight(run, "last.pt", space, config, "reinforce", 0)  # the real state passes
    bad = copy.deepcopy(state)
    name = next(iter(bad["model"]))
    bad["model"][name] = torch.zeros(1)
    torch.save(bad, run / "last.pt")
    with pytest.raises(CheckpointError, match=f"supernet does not match this network \\({name}"):
        preflight(run, "last.pt", space, config, "reinforce", 0)
    bad = copy.deepcopy(state)
    bad["strategy"].pop("controller")
    torch.save(bad, run / "last.pt")
    with pytest.raises(CheckpointError, match="strategy state does not fit 'reinforce'"):
        preflight(run, "last.pt", space, config, "reinforce", 0)
    torch.save(state, run / "last.pt")
    with pytest.raises(CheckpointError, match="cannot resume a different search"):
        preflight(run, "last.pt", space, config, "random", 0)


def test_search_resume_is_refused_before_any_data(tmp_path, saved):
    _config, state = saved
    broken = copy.deepcopy(state)
    broken["iteration"] = -5
    (tmp_path / "runs" / "s").mkdir(parents=True)
    torch.save(broken, tmp_path / "runs" / "s" / "last.pt")
    args = ["search", str(TINY_SPACE), "--runs-dir", str(tmp_path / "runs"), "--name", "s"]
    args += ["--resume", "--dataset", "cifar10"]  # no --data-dir: the data would fail second
    for item in TINY:
        args += ["--set", item]
    outcome = invoke(tmp_path, args, runs=tmp_path / "runs")
    assert outcome.code == 1 and "iteration -5 of 1" in outcome.error


GOOD = {"reward_mode": "penalized", "strategy": "random", "seed": 0, "policy": {}, "reward": 0.5}
GOOD.update(accuracy=0.5, comm_ratio=0.1)
WRONG_SEED = json.dumps({**GOOD, "seed": "0"})
NAN_ACCURACY = json.dumps(GOOD).replace('"accuracy": 0.5', '"accuracy": NaN')


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"strategy": "random", "seed": 0}\n', "evaluations.jsonl:1: a record without "),
        ('{"a": \n{"a": 1}\n', "evaluations.jsonl:1: not a JSON record"),
        ("[1]\n", "evaluations.jsonl:1: a record without reward_mode"),
        ('GOOD\n{"x": 1}\n', "evaluations.jsonl:2: a record without reward_mode"),
        (WRONG_SEED + "\n", "evaluations.jsonl:1: a record whose seed has the wrong type"),
        (NAN_ACCURACY + "\n", "evaluations.jsonl:1: a record whose accuracy"),
    ],
)
def test_compare_refuses_corrupt_evaluations_before_training(tmp_path, text, reason):
    run = tmp_path / "runs" / "c"
    run.mkdir(parents=True)
    (run / "evaluations.jsonl").write_text(text.replace("GOOD", json.dumps(GOOD)))
    args = ["compare", str(TINY_SPACE), "--runs-dir", str(tmp_path / "runs"), "--name", "c"]
    outcome = invoke(tmp_path, [*args, "--dataset", "cifar10"], runs=tmp_path / "runs")
    assert outcome.code == 1 and reason in outcome.error, outcome.error


def test_compare_accepts_a_torn_last_evaluation(tmp_path):
    record = GOOD
    run = tmp_path / "runs" / "c"
    run.mkdir(parents=True)
    (run / "evaluations.jsonl").write_text(json.dumps(record) + "\n" + json.dumps(record)[:20])
    args = ["compare", str(TINY_SPACE), "--runs-dir", str(tmp_path / "runs"), "--name", "c"]
    outcome = invoke(tmp_path, [*args, "--dataset", "cifar10"], runs=tmp_path / "runs")
    assert outcome.code == 1 and "cifar10 images are 3x32x32" in outcome.error  # got past it


def test_an_optuna_state_damaged_is_one_line_and_one_saved_earlier_a_warning(
    tmp_path, space, digits
):
    """The sampler's random state (docs/search.md, "Resuming an Optuna search"): damaged,
    refused before anything runs; missing (a checkpoint of an earlier version), the search
    resumes and says in one line that it is reseeded."""
    config = load_search_config("digits", None, TINY)
    run = RunDir(tmp_path / "runs" / "o")
    run_search(space, digits, config, "optuna:tpe", run, accel=Accelerator.pick("cpu"))
    state = torch.load(run / "last.pt", weights_only=True)
    args = ["search", str(TINY_SPACE), "--runs-dir", str(tmp_path / "runs"), "--name", "o"]
    args += ["--resume", "--strategy", "optuna:tpe"]
    for item in TINY:
        args += ["--set", item]
    damaged = copy.deepcopy(state)
    damaged["strategy"]["random_state"]["_rng"]["keys"] = [1] * 100
    torch.save(damaged, run / "last.pt")
    outcome = invoke(tmp_path, args)
    assert outcome.code == 1
    assert outcome.error.endswith(
        "corrupt checkpoint (its strategy state does not fit 'optuna:tpe': the sampler's "
        "random state '_rng' is damaged: expected 624 key words, found 100)"
    )
    earlier = copy.deepcopy(state)
    for key in ("random_state", "trial_attrs", "study_attrs"):
        del earlier["strategy"][key]
    torch.save(earlier, run / "last.pt")
    outcome = invoke(tmp_path, args)
    assert outcome.code == 0
    warning = [line for line in outcome.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "without its sampler's random state" in warning[0]
    assert "without its sampler's random state" in run.read_json("summary.json")["resume_note"]
