import itertools
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from snnas._run import RunDir
from snnas.errors import CheckpointError, ConfigError
from snnas.search import load_search_config, run_search
from snnas.train import Accelerator
from tests.conftest import TINY_SPACE

TINY = [
    "search.iterations=2",
    "search.train_steps=4",
    "search.strategy_steps=3",
    "search.samples=3",
    "search.topk=2",
    "search.batch_size=64",
]
CPU = Accelerator.pick("cpu")


def _search(space, digits, path, strategy="reinforce", extra=(), **kw):
    config = load_search_config("digits", None, TINY + list(extra))
    return run_search(space, digits, config, strategy, RunDir(path), accel=CPU, **kw)


def test_search_writes_the_run_folder(tmp_path, space, digits):
    result = _search(space, digits, tmp_path / "r")
    run = RunDir(tmp_path / "r")
    for name in (
        "config.json",
        "events.jsonl",
        "strategy.jsonl",
        "iterations.jsonl",
        "best_policy.json",
        "topk.json",
        "summary.json",
        "last.pt",
        "optuna.journal",
    ):
        assert (run / name).is_file(), name
    for name in ("search_curve.png", "pareto.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = run.read_jsonl("events.jsonl")
    assert len(events) == 2 * (3 + 3) == result.summary["evaluations"]
    assert [e["phase"] for e in events[:6]] == ["strategy"] * 3 + ["sample"] * 3
    assert all(space.check(e["policy"]) is None for e in events)
    assert {"iteration", "reward", "accuracy", "comm_ratio", "time_s"} <= set(events[0])
    assert len(run.read_jsonl("strategy.jsonl")) == 6  # one controller update per evaluation
    best = space.load_policy(run / "best_policy.json")
    assert best == result.best_policy
    topk = run.read_json("topk.json")
    assert len(topk) == 2 and topk[0]["reward"] >= topk[1]["reward"]
    config = run.read_json("config.json")
    assert config["space_hash"] == space.hash and config["strategy"] == "reinforce"
    assert "torch" in config["versions"]


def test_every_evaluation_is_in_the_optuna_study(tmp_path, space, digits):
    import optuna

    _search(space, digits, tmp_path / "r", strategy="random")
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "r" / "optuna.journal"))
    )
    study = optuna.load_study(study_name="r", storage=storage)
    events = RunDir(tmp_path / "r").read_jsonl("events.jsonl")
    trials = study.get_trials()
    assert len(trials) == len(events)
    assert sorted(t.value for t in trials) == sorted(e["reward"] for e in events)
    first = trials[0]
    assert space.from_factorized(first.params) == space.validate(
        json.loads(first.user_attrs["policy"])
    )


def test_resume_of_a_finished_run_adds_nothing(tmp_path, space, digits):
    first = _search(space, digits, tmp_path / "r")
    again = _search(space, digits, tmp_path / "r", resume=True)
    assert again.best_policy == first.best_policy
    assert len(again.events) == len(first.events)
    with pytest.raises(CheckpointError, match="--resume"):
        _search(space, digits, tmp_path / "r")
    with pytest.raises(CheckpointError, match="samples: 3 != 4"):
        _search(space, digits, tmp_path / "r", extra=["search.samples=4"], resume=True)
    with pytest.raises(CheckpointError, match="strategy"):
        _search(space, digits, tmp_path / "r", strategy="random", resume=True)


def test_reward_modes(tmp_path, space, digits):
    result = _search(
        space, digits, tmp_path / "p", extra=['reward.mode="penalized"', "reward.lambda=0.5"]
    )
    for e in result.events:
        assert e["reward"] == pytest.approx(e["accuracy"] - 0.5 * e["comm_ratio"])
    result = _search(
        space,
        digits,
        tmp_path / "b",
        strategy="random",
        extra=['reward.mode="budget"', "reward.budget=0.1"],
    )
    for e in result.events:
        expected = e["accuracy"] - (1.0 if e["comm_ratio"] > 0.1 else 0.0)
        assert e["reward"] == pytest.approx(expected)


def test_pareto_mode(tmp_path, space, digits):
    result = _search(
        space, digits, tmp_path / "m", strategy="optuna:nsga2", extra=['reward.mode="pareto"']
    )
    front = result.summary["pareto_front"]
    assert front and all(a["comm_ratio"] < b["comm_ratio"] for a, b in itertools.pairwise(front))
    assert all(a["accuracy"] < b["accuracy"] for a, b in itertools.pairwise(front))
    with pytest.raises(ConfigError, match="pareto"):
        _search(space, digits, tmp_path / "n", strategy="reinforce", extra=['reward.mode="pareto"'])


def _cli(*args, cwd):
    return [
        sys.executable,
        "-m",
        "snnas",
        "-q",
        "search",
        str(TINY_SPACE),
        "--runs-dir",
        str(cwd),
        "--seed",
        "3",
        *args,
    ]


def test_killed_search_resumes_to_the_same_best_policy(tmp_path):
    settings = [
        "--set",
        "search.iterations=8",
        "--set",
        "search.train_steps=20",
        "--set",
        "search.strategy_steps=10",
        "--set",
        "search.samples=10",
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    straight = subprocess.run(
        _cli("--name", "straight", *settings, cwd=tmp_path),
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert straight.returncode == 0, straight.stderr
    proc = subprocess.Popen(
        _cli("--name", "killed", *settings, cwd=tmp_path),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    progress = tmp_path / "killed" / "progress.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if progress.exists() and json.loads(progress.read_text())["iteration"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(progress.read_text())["iteration"]
    assert 2 <= done < 8, "the run was not killed mid-way"
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = subprocess.run(
        _cli("--name", "killed", "--resume", *settings, cwd=tmp_path),
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / "straight" / "best_policy.json").read_text())
    b = json.loads((tmp_path / "killed" / "best_policy.json").read_text())
    assert a == b
    ea = (tmp_path / "straight" / "events.jsonl").read_text().splitlines()
    eb = (tmp_path / "killed" / "events.jsonl").read_text().splitlines()
    strip = [json.loads(x) for x in ea], [json.loads(x) for x in eb]
    for x, y in zip(*strip, strict=True):
        x.pop("time_s"), y.pop("time_s")
        assert x == y


def test_scorer_is_deterministic_and_uses_batch_statistics(space, digits):
    import random

    from snnas.models import SepResNeXt
    from snnas.search import PolicyScorer
    from snnas.train import evaluate

    model = SepResNeXt(space)
    batches = list(digits.loader("val", 64))
    scorer = PolicyScorer(space, model, batches, CPU)
    policy = space.sample(random.Random(0))
    assert scorer.accuracy(policy) == scorer.accuracy(policy)
    assert scorer.accuracy(policy) == evaluate(model, batches, CPU, policy, bn="batch")
    assert scorer.accuracy(policy, batch=5) == scorer.accuracy(policy, batch=5 % len(batches))


def test_two_workers_share_one_rdb_study(tmp_path, space, digits):
    """A real SQL storage (SQLite through SQLAlchemy, as PostgreSQL would be used)."""
    import optuna

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a = _search(space, digits, tmp_path / "a", strategy="random", storage=url, study="shared")
    b = _search(
        space, digits, tmp_path / "b", strategy="random", seed=1, storage=url, study="shared"
    )
    study = optuna.load_study(study_name="shared", storage=url)
    keys = {t.user_attrs["event"] for t in study.get_trials()}
    assert len(keys) == len(a.events) + len(b.events) == len(study.get_trials())
    assert a.summary["storage"] == url
    # resuming a finished worker adds nothing twice
    _search(
        space, digits, tmp_path / "a", strategy="random", storage=url, study="shared", resume=True
    )
    assert len(optuna.load_study(study_name="shared", storage=url).get_trials()) == len(keys)


def test_unreachable_storage_is_one_clear_error(tmp_path, space, digits):
    with pytest.raises(ConfigError, match="--storage"):
        _search(space, digits, tmp_path / "x", storage="nosuchdb://nowhere/db")
