import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from snnas._run import RunDir
from snnas.errors import CheckpointError, ConfigError
from snnas.models import SepResNeXt
from snnas.search import load_search_config, run_search
from snnas.train import Accelerator
from tests.conftest import TINY_SPACE

TINY = [
    "search.iterations=2",
    "search.train_steps=4",
    "search.strategy_steps=3",
    "search.samples=3",
    "search.topk=2",
    "search.rescore=4",
    "search.batch_size=64",
    "strategy.reinforce.batch=3",
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
    assert len(run.read_jsonl("strategy.jsonl")) == 2  # one update per 3 policies (batch)
    best = space.load_policy(run / "best_policy.json")
    assert best == result.best_policy
    topk = run.read_json("topk.json")
    assert len(topk) == 2 and topk[0]["reward"] >= topk[1]["reward"]
    assert space.encode(topk[0]["policy"]) == space.encode(best)
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
        _search(space, digits, tmp_path / "n", strategy="evolution", extra=['reward.mode="pareto"'])


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


@pytest.mark.parametrize("strategy", ["reinforce", "optuna:tpe"])
def test_killed_search_resumes_to_the_same_best_policy(tmp_path, strategy):
    """A run killed with SIGKILL and resumed is the uninterrupted run: the same events, the
    same selection (optuna:tpe: its sampler's random state is in the checkpoint)."""
    settings = [
        "--strategy",
        strategy,
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
    assert "warning" not in resumed.stderr  # nothing to say: it resumed exactly
    a = json.loads((tmp_path / "straight" / "best_policy.json").read_text())
    b = json.loads((tmp_path / "killed" / "best_policy.json").read_text())
    assert a == b
    ea = (tmp_path / "straight" / "events.jsonl").read_text().splitlines()
    eb = (tmp_path / "killed" / "events.jsonl").read_text().splitlines()
    strip = [json.loads(x) for x in ea], [json.loads(x) for x in eb]
    for x, y in zip(*strip, strict=True):
        x.pop("time_s"), y.pop("time_s")
        assert x == y


def _scorer_setup(space, digits):
    from snnas.models import SepResNeXt

    torch.manual_seed(0)
    model = SepResNeXt(space)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rng = random.Random(0)
    for x, y in list(digits.loader("train", 64, shuffle=True))[:6]:  # a little training
        loss = torch.nn.functional.cross_entropy(model(x, space.sample(rng)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_scorer_never_scores_a_partial_minibatch(space, digits):
    from snnas.search import PolicyScorer
    from snnas.train import evaluate

    model = _scorer_setup(space, digits)
    x, y = digits.tensors["val"][0][:100], digits.tensors["val"][1][:100]
    scorer = PolicyScorer(space, model, x, y, CPU, batch_size=32, bn="batch")
    assert [len(b[1]) for b in scorer.batches] == [32, 32, 32]  # the last 4 are never alone
    policy = space.sample(random.Random(0))
    assert {scorer.accuracy(policy, batch=k) for k in range(3)} == {
        scorer.accuracy(policy, batch=k) for k in range(3, 30)
    }  # minibatch indices cycle over the full minibatches only
    assert scorer.images == 96
    assert scorer.accuracy(policy) == evaluate(model, scorer.batches, CPU, policy, bn="batch")
    small = PolicyScorer(space, model, x[:20], y[:20], CPU, batch_size=32, bn="batch")
    assert [len(b[1]) for b in small.batches] == [20]  # fewer images: one whole minibatch


def test_deployable_score_is_the_frozen_network_in_eval_mode(space, digits):
    """Recalibrated scoring gives what the frozen policy gives one image at a time with its
    own running statistics, and leaves the supernet's state as it was."""
    from snnas.search._reward import PolicyScorer, calibration_images
    from snnas.train import evaluate
    from snnas.train._trainer import recalibrate_bn

    model = _scorer_setup(space, digits)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calib = calibration_images(digits, 96)
    assert torch.equal(calib, calibration_images(digits, 96))  # fixed images
    x, y = digits.tensors["val"]
    scorer = PolicyScorer(space, model, x, y, CPU, batch_size=45, calibration=calib)
    rng = random.Random(4)
    for _ in range(3):
        policy = space.sample(rng)
        frozen = model.freeze(policy)
        recalibrate_bn(frozen, [(c, c) for c in calib.split(256)], CPU)
        one_by_one = evaluate(frozen, [(x[i : i + 1], y[i : i + 1]) for i in range(len(y))], CPU)
        assert scorer.accuracy(policy) == pytest.approx(one_by_one)
        small = PolicyScorer(space, model, x, y, CPU, batch_size=7, calibration=calib)
        assert small.accuracy(policy) == scorer.accuracy(policy)  # batch-size independent
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_one_update_one_minibatch_and_a_frozen_phase_3(tmp_path, space, digits):
    result = _search(
        space, digits, tmp_path / "r",
        extra=["search.eval_batch_size=32", "search.strategy_steps=6", "search.samples=4"],
    )  # fmt: skip
    events = result.events
    for it in (1, 2):
        strategy = [
            e["minibatch"] for e in events if e["iteration"] == it and e["phase"] == "strategy"
        ]
        sample = [e["minibatch"] for e in events if e["iteration"] == it and e["phase"] == "sample"]
        assert strategy[:3] == [strategy[0]] * 3 and strategy[3:] == [strategy[3]] * 3
        assert strategy[0] != strategy[3] and len(set(sample)) == 1
    log = RunDir(tmp_path / "r").read_jsonl("strategy.jsonl")
    assert [r["update"] for r in log] == [1, 2, 3, 4]  # phase 3 taught the controller nothing
    with pytest.raises(ConfigError, match="multiple of reinforce's batch"):
        _search(space, digits, tmp_path / "x", extra=["search.strategy_steps=4"])


def test_resuming_with_more_iterations_keeps_the_schedule(tmp_path, space, digits):
    extra = ["search.milestones=[0.5]"]
    _search(space, digits, tmp_path / "r", extra=extra)
    _search(space, digits, tmp_path / "r", extra=[*extra, "search.iterations=4"], resume=True)
    lrs = [r["lr"] for r in RunDir(tmp_path / "r").read_jsonl("iterations.jsonl")]
    assert lrs == pytest.approx([0.1, 0.01, 0.01, 0.01])  # not back to 0.1 for iteration 3


def test_final_figures_are_deployable(tmp_path, space, digits):
    from snnas.search._reward import (
        DEPLOY_CALIB_IMAGES,
        PolicyScorer,
        calibration_images,
        split_tensors,
    )

    result = _search(space, digits, tmp_path / "r", extra=['search.scoring="batch"'])
    run = RunDir(tmp_path / "r")
    model = SepResNeXt(space)
    model.load_state_dict(run.load_checkpoint("last.pt")["model"])
    deployable = PolicyScorer(
        space, model, *split_tensors(digits, "val"), CPU, batch_size=180,
        calibration=calibration_images(digits, DEPLOY_CALIB_IMAGES),
    )  # fmt: skip
    topk = run.read_json("topk.json")
    for entry in topk:
        assert entry["val_acc"] == deployable.accuracy(space.validate(entry["policy"]))
    assert result.summary["best_val_acc"] == topk[0]["val_acc"]
    assert result.summary["candidates_rescored"] == 4
    assert result.summary["scoring"]["search"] == "batch"


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
