"""The third objective, degraded accuracy, on a tiny parity space (issue 10, "Search")."""

import random
from dataclasses import replace

import pytest

from snnas._run import RunDir
from snnas.cost import communication
from snnas.errors import ConfigError, UsageError
from snnas.search import load_search_config, run_search
from snnas.search._compare import compare
from snnas.search._compare_fixed import FixedComparison
from snnas.search._pareto import epsilon_gap, hypervolume, pareto_front
from snnas.search._reward import parity_ratio
from snnas.search.strategies import make_strategy
from snnas.space import space_from_text
from snnas.train import Accelerator
from tests.train.parity_fixture import PARITY_TOML, small_digits

CPU = Accelerator.pick("cpu")
PARITY = space_from_text(PARITY_TOML)
OVERRIDES = ["strategy.reinforce.batch=3", "reward.unavailability=0.25"]


@pytest.fixture(scope="module")
def data(digits):
    return small_digits(digits, train=96, evaluate=32)


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cmp") / "c"
    config = load_search_config("digits", None, OVERRIDES)
    report = compare(
        PARITY, data, config, ["random", "reinforce"], seeds=2, budget=4,
        run=RunDir(path), rewards=["penalized", "pareto"], reference=20, accel=CPU,
        supernet_epochs=1, parity_epochs=1,
    )  # fmt: skip
    return path, config, report


def test_three_objective_front_and_hypervolume():
    points = [(0.9, 0.3, 0.5), (0.8, 0.1, 0.6), (0.85, 0.4, 0.4), (0.9, 0.3, 0.7)]
    front = pareto_front([(*p, i) for i, p in enumerate(points)])
    assert [p[-1] for p in front] == [1, 3]  # (0.85, 0.4, 0.4) and (0.9, 0.3, 0.5) dominated
    # One box: (0.9 - 0.6) x (1 - 0.3) x (0.7 - 0.2).
    assert hypervolume([(0.9, 0.3, 0.7)], (0.6, 1.0, 0.2)) == pytest.approx(0.3 * 0.7 * 0.5)
    # Two boxes: the sum minus their overlap (0.2 x 0.7 x 0.4).
    two = 0.3 * 0.7 * 0.5 + 0.2 * 0.9 * 0.4 - 0.2 * 0.7 * 0.4
    assert hypervolume([(0.9, 0.3, 0.7), (0.8, 0.1, 0.6)], (0.6, 1.0, 0.2)) == pytest.approx(two)
    assert hypervolume([(0.5, 0.3, 0.7)], (0.6, 1.0, 0.2)) == 0.0  # below the reference
    # The two-objective hypervolume is the three-objective one over a unit third axis.
    flat = [(0.9, 0.3), (0.8, 0.1)]
    assert hypervolume(flat, (0.6, 1.0)) == pytest.approx(
        hypervolume([(*p, 1.0) for p in flat], (0.6, 1.0, 0.0))
    )
    assert epsilon_gap((0.85, 0.4, 0.4), [(0.9, 0.3, 0.5)]) == pytest.approx(0.05)
    assert epsilon_gap((0.95, 0.4, 0.4), [(0.9, 0.3, 0.5)]) == pytest.approx(-0.05)


def test_strategies_take_three_objectives():
    reinforce = make_strategy("reinforce", PARITY, 0, batch=2)
    reinforce.front = [(0.9, 0.3, 0.5)]
    values = reinforce._scalars([(0.85, 0.4, 0.4), (0.95, 0.4, 0.6)])
    assert values == pytest.approx([-0.05, 0.1])  # dominated by 0.05; ahead by 0.1
    with pytest.raises(ValueError, match="different numbers of objectives"):
        reinforce._scalars([(0.85, 0.4)])
    tpe = make_strategy("optuna:tpe", PARITY, 0, objectives=3)
    assert tpe.multi_objective
    policy = tpe.ask()
    tpe.tell(policy, (0.9, 0.3, 0.5))
    assert tpe._study.trials[0].values == [0.9, 0.3, 0.5]
    with pytest.raises(ConfigError, match="degraded accuracy"):
        tpe.tell(tpe.ask(), (0.9, 0.3))
    with pytest.raises(ConfigError, match="objectives"):
        make_strategy("optuna:gp", PARITY, 0, objectives=3)


def test_parity_ratio_adds_the_parity_bytes():
    policy = PARITY.sample(random.Random(1))
    quiet = {**policy, **{k: 0 for k in policy if k.endswith(".encode")}}
    loud = {**policy, **{k: 100 for k in policy if k.endswith(".encode")}}
    live = communication(PARITY, policy).live_ratio
    assert live < parity_ratio(PARITY, quiet) < parity_ratio(PARITY, loud)


def test_compare_scores_degraded_accuracy_as_a_third_objective(comparison, data):
    path, config, report = comparison
    assert report["objectives"] == ["accuracy", "comm_ratio", "degraded_accuracy"]
    assert report["degraded"]["unavailability"] == 0.25
    assert (path / "parity" / "best.pt").is_file()
    point = report["reference"]["pareto"]["reference_point"]
    assert set(point) == {"accuracy", "comm_ratio", "degraded_accuracy"}
    records = RunDir(path).read_jsonl("evaluations.jsonl")
    assert {r["strategy"] for r in records if r["reward_mode"] == "pareto"} == {
        "random", "reinforce"
    }  # fmt: skip
    # The scores are the coded network's: rebuild the comparison's scorer and check a few.
    fixed = FixedComparison(
        PARITY, data, config, ["random"], 2, 4, RunDir(path), CPU, None,
        ["penalized", "pareto"], 20, 1,
    )  # fmt: skip
    fixed._setup(1)
    penalized = [r for r in records if r["reward_mode"] == "penalized"]
    for r in penalized[:4]:
        policy = PARITY.validate(r["policy"])
        acc, ratio, degraded = fixed.score(policy)
        assert (r["accuracy"], r["comm_ratio"], r["degraded_accuracy"]) == (acc, ratio, degraded)
        assert ratio == parity_ratio(PARITY, policy)
        assert r["reward"] == pytest.approx(0.75 * acc + 0.25 * degraded - 0.1 * ratio)
    # Degraded accuracy is not the accuracy: losing a device costs something somewhere.
    assert any(r["degraded_accuracy"] != r["accuracy"] for r in records)
    reference = (point["accuracy"], point["comm_ratio"], point["degraded_accuracy"])
    for name, result in report["results"]["pareto"].items():
        finals = result["stats"]["final"]["per_seed"]
        for front, final in zip(result["fronts"], finals, strict=True):
            assert front and all(len(p) == 3 for p in front), name
            # A seed's final hypervolume is its front's, in three dimensions.
            assert hypervolume([tuple(p) for p in front], reference) == pytest.approx(final)
    finals = [
        v for r in report["results"]["pareto"].values() for v in r["stats"]["final"]["per_seed"]
    ]
    assert max(finals) > 0
    text = (path / "report.md").read_text()
    assert "degraded accuracy" in text and "| accuracy | communication ratio |" in text
    assert "A_overall(f)" in text


def test_a_finished_comparison_resumes_without_training_parity_again(comparison, data):
    path, config, report = comparison
    best = (path / "parity" / "best.pt").stat().st_mtime_ns
    again = compare(
        PARITY, data, config, ["random", "reinforce"], seeds=2, budget=4,
        run=RunDir(path), rewards=["penalized", "pareto"], reference=20, accel=CPU,
        supernet_epochs=1, parity_epochs=1,
    )  # fmt: skip
    assert (path / "parity" / "best.pt").stat().st_mtime_ns == best
    for mode in ("penalized", "pareto"):
        for name in again["results"][mode]:
            assert again["results"][mode][name]["stats"] == report["results"][mode][name]["stats"]


def test_without_the_degraded_objective_a_parity_space_has_two(tmp_path, data):
    config = load_search_config("digits", None, [*OVERRIDES, "reward.degraded=false"])
    report = compare(
        PARITY, data, config, ["random"], seeds=1, budget=3, run=RunDir(tmp_path / "c"),
        rewards=["pareto"], reference=20, accel=CPU, supernet_epochs=1,
    )  # fmt: skip
    assert report["objectives"] == ["accuracy", "comm_ratio"] and report["degraded"] is None
    assert not (tmp_path / "c" / "parity").exists()


def test_search_and_full_mode_refuse_the_degraded_objective(tmp_path, data):
    config = load_search_config("digits", None, [*OVERRIDES, "reward.degraded=true"])
    with pytest.raises(ConfigError, match=r"reward\.degraded: expected false or unset") as info:
        run_search(PARITY, data, config, "random", RunDir(tmp_path / "s"), accel=CPU)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "s").exists()
    with pytest.raises(UsageError, match="--mode"):
        compare(
            PARITY, data, config, ["random"], seeds=1, budget=1, run=RunDir(tmp_path / "f"),
            mode="full", accel=CPU,
        )  # fmt: skip
    # Unset (the default), the search runs the parity space (its parity decisions unrewarded).
    off = replace(
        load_search_config(
            "digits",
            None,
            [
                "search.iterations=1",
                "search.train_steps=2",
                "search.strategy_steps=2",
                "search.samples=2",
                "search.topk=1",
                "search.rescore=2",
            ],
        )
    )
    result = run_search(PARITY, data, off, "random", RunDir(tmp_path / "s2"), accel=CPU)
    assert result.summary["evaluations"] == 4


@pytest.mark.parametrize(
    ("item", "key"),
    [("reward.unavailability=1.5", "unavailability"), ("reward.degraded=1", "degraded")],
)
def test_degraded_settings_are_checked(item, key):
    with pytest.raises(UsageError, match=rf"reward\.{key}"):
        load_search_config("digits", None, [item])
