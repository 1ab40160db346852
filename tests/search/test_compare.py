import json

import pytest

from snnas._run import RunDir
from snnas.errors import CheckpointError, ConfigError
from snnas.search import load_search_config
from snnas.search._compare import compare
from snnas.train import Accelerator

CPU = Accelerator.pick("cpu")


def test_fixed_mode_gives_equal_budgets_and_a_report(tmp_path, space, digits):
    config = load_search_config("digits")
    report = compare(
        space,
        digits,
        config,
        ["random", "evolution"],
        seeds=2,
        budget=8,
        run=RunDir(tmp_path / "c"),
        accel=CPU,
        supernet_epochs=1,
    )
    assert set(report["results"]) == {"random", "evolution"}
    for result in report["results"].values():
        at = result["best_so_far"]
        assert at["25%"]["mean"] <= at["50%"]["mean"] <= at["100%"]["mean"]
        assert result["evals_to_95pct"]["seeds"] == 2
        assert space.check(result["final"]["best_policy"]) is None
    evaluations = RunDir(tmp_path / "c").read_jsonl("evaluations.jsonl")
    assert len(evaluations) == 2 * 2 * 8
    best = max(e["reward"] for e in evaluations)
    assert report["threshold_95pct"] == pytest.approx(0.95 * best)
    assert all(space.check(e["policy"]) is None for e in evaluations)
    assert (tmp_path / "c" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    text = (tmp_path / "c" / "report.md").read_text()
    assert "| random |" in text and "| evolution |" in text
    assert json.loads((tmp_path / "c" / "report.json").read_text()) == report


def test_full_mode_runs_a_search_per_seed(tmp_path, space, digits):
    config = load_search_config(
        "digits",
        None,
        [
            "search.train_steps=3",
            "search.strategy_steps=2",
            "search.samples=2",
            "search.topk=1",
        ],
    )
    report = compare(
        space,
        digits,
        config,
        ["reinforce", "random"],
        seeds=2,
        budget=2,
        run=RunDir(tmp_path / "f"),
        mode="full",
        accel=CPU,
    )
    assert report["iterations"] == 2 and report["budget"] == 2 * (2 + 2)
    for name in ("reinforce", "random"):
        per = report["results"][name]["per_iteration"]
        assert len(per["train_loss"][0]) == 2 and len(per["mean_sampled_accuracy"][0]) == 2
        assert (tmp_path / "f" / f"{name}-s1" / "summary.json").is_file()


def test_compare_refuses_pareto_and_bad_names(tmp_path, space, digits):
    with pytest.raises(ConfigError, match="pareto"):
        compare(
            space,
            digits,
            load_search_config("digits", None, ['reward.mode="pareto"']),
            ["random"],
            1,
            4,
            RunDir(tmp_path / "x"),
            accel=CPU,
        )
    with pytest.raises(ConfigError, match="--strategy"):
        compare(
            space,
            digits,
            load_search_config("digits"),
            ["random", "bogus"],
            1,
            4,
            RunDir(tmp_path / "y"),
            accel=CPU,
        )
    assert not (tmp_path / "y" / "supernet").exists()  # refused before any training


def test_an_interrupted_comparison_picks_up_where_it_stopped(tmp_path, space, digits):
    config = load_search_config("digits")
    args = (space, digits, config, ["random", "evolution"], 2, 6)
    straight = compare(*args, RunDir(tmp_path / "a"), accel=CPU, supernet_epochs=1)

    def stop(phase, done, total, info):
        if phase == "compare" and info.get("strategy") == "evolution":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compare(*args, RunDir(tmp_path / "b"), accel=CPU, supernet_epochs=1, progress=stop)
    kept = RunDir(tmp_path / "b").read_jsonl("evaluations.jsonl")
    pairs = {(e["strategy"], e["seed"]) for e in kept}
    assert ("random", 0) in pairs and ("evolution", 1) not in pairs  # stopped part-way
    assert len(kept) == 6 * len(pairs)  # only whole (strategy, seed) runs are kept
    resumed = compare(*args, RunDir(tmp_path / "b"), accel=CPU, supernet_epochs=1)
    assert resumed["results"] == straight["results"]
    with pytest.raises(CheckpointError, match="other settings"):
        compare(
            space,
            digits,
            config,
            ["random"],
            2,
            7,
            RunDir(tmp_path / "b"),
            accel=CPU,
            supernet_epochs=1,
        )
