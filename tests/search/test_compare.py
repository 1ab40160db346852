import json

import pytest

from snnas._run import RunDir
from snnas.errors import CheckpointError, ConfigError, SnnasError
from snnas.search import load_search_config
from snnas.search._compare import compare
from snnas.train import Accelerator

CPU = Accelerator.pick("cpu")
REWARDS = ["penalized", "pareto"]


def _compare(space, digits, path, strategies=("random", "reinforce"), **kw):
    config = load_search_config("digits", None, ["strategy.reinforce.batch=3"])
    args = {"seeds": 3, "budget": 9, "rewards": REWARDS, "reference": 150, "supernet_epochs": 1}
    return compare(
        space, digits, config, list(strategies), run=RunDir(path), accel=CPU, **{**args, **kw}
    )


def test_fixed_mode_report(tmp_path, space, digits):
    names = ("random", "reinforce", "evolution", "optuna:tpe")
    report = _compare(space, digits, tmp_path / "c", strategies=names)
    assert report["rewards"] == REWARDS and report["headline"] == "penalized"
    assert report["split"] == {"search_images": 90, "heldout_images": 90}
    run = RunDir(tmp_path / "c")
    reference = run.read_jsonl("reference.jsonl")
    assert len(reference) == 150 and all(space.check(r["policy"]) is None for r in reference)
    ref = report["reference"]["penalized"]
    rewards = sorted(r["accuracy"] - 0.1 * r["comm_ratio"] for r in reference)
    assert ref["best"] == pytest.approx(rewards[-1])
    assert ref["top1pct_threshold"] == pytest.approx(rewards[148])  # the 99th percentile
    for reward in REWARDS:
        for name, r in report["results"][reward].items():
            assert {"auc", "regret", "evals_to_top1pct", "p_vs_random", "heldout"} <= set(r)
            s = r["stats"]
            assert len(s["auc"]["per_seed"]) == 3
            lo, hi = s["auc"]["ci95"]
            assert lo <= s["auc"]["mean"] <= hi
            assert 1 <= r["evals_to_top1pct"] <= 10  # 10: never reached (budget + 1)
            assert (r["p_vs_random"] is None) == (name == "random")
            best = report["reference"][reward]["best"]  # pareto: the sample's hypervolume
            for final, regret in zip(s["final"]["per_seed"], s["regret"]["per_seed"], strict=True):
                assert regret == pytest.approx(best - final)
            at = r["best_so_far"]
            assert at["25%"]["mean"] <= at["50%"]["mean"] <= at["100%"]["mean"]
            if reward == "pareto":
                assert r["hypervolume"] == r["final"] >= 0
    # evolution is single-objective: skipped under pareto, and said so.
    assert report["skipped"] == {"pareto": ["evolution"]}
    assert "evolution" not in report["results"]["pareto"]
    evaluations = run.read_jsonl("evaluations.jsonl")
    assert len(evaluations) == (4 + 3) * 3 * 9  # tpe takes two objectives, evolution not
    assert all(space.check(e["policy"]) is None for e in evaluations)
    assert (tmp_path / "c" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    text = (tmp_path / "c" / "report.md").read_text()
    assert "| reinforce |" in text and "reference point accuracy" in text
    assert "not a multi-objective strategy: skipped" in text
    assert json.loads((tmp_path / "c" / "report.json").read_text()) == report


def test_incumbents_are_rescored_on_held_out_images(tmp_path, space, digits):
    from snnas.search._compare_fixed import FixedComparison

    report = _compare(space, digits, tmp_path / "c", strategies=("random",), rewards=["accuracy"])
    r = report["results"]["accuracy"]["random"]
    # Held-out accuracies come from other images than the search's: not the same numbers.
    assert r["stats"]["heldout"]["per_seed"] != r["stats"]["final"]["per_seed"]
    fixed = FixedComparison(
        space, digits, load_search_config("digits", None, ["strategy.reinforce.batch=3"]),
        ["random"], 3, 9, RunDir(tmp_path / "c"), CPU, None, ["accuracy"], 150,
    )  # fmt: skip
    fixed._setup(1)
    for policy, held in zip(r["incumbents"], r["stats"]["heldout"]["per_seed"], strict=True):
        assert fixed.heldout_accuracy(space.validate(policy)) == held


def test_refusals(tmp_path, space, digits):
    with pytest.raises(ConfigError, match="--rewards"):
        _compare(space, digits, tmp_path / "x", rewards=["fastest"])
    with pytest.raises(ConfigError, match="--strategies"):
        _compare(space, digits, tmp_path / "y", strategies=("random", "bogus"))
    assert not (tmp_path / "y" / "supernet").exists()  # refused before any training


def test_an_interrupted_comparison_picks_up_where_it_stopped(tmp_path, space, digits):
    straight = _compare(space, digits, tmp_path / "a")

    def stop(phase, done, total, info):
        if phase == "compare" and info.get("strategy") == "reinforce" and info["seed"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _compare(space, digits, tmp_path / "b", progress=stop)
    run = RunDir(tmp_path / "b")
    kept = run.read_jsonl("evaluations.jsonl")
    assert {(e["strategy"], e["seed"]) for e in kept} == {
        ("random", 0), ("random", 1), ("random", 2), ("reinforce", 0)
    }  # fmt: skip
    # A crash in the middle of an append leaves a torn last line: it is dropped, with the
    # search it belonged to, and that search runs again.
    path = tmp_path / "b" / "evaluations.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 40])
    reference = tmp_path / "b" / "reference.jsonl"
    reference.write_text(reference.read_text()[:-17])
    resumed = _compare(space, digits, tmp_path / "b")
    for reward in REWARDS:
        for name in ("random", "reinforce"):
            a = straight["results"][reward][name]
            b = resumed["results"][reward][name]
            assert a["stats"] == b["stats"], (reward, name)
    assert len(run.read_jsonl("reference.jsonl")) == 150
    with pytest.raises(CheckpointError, match="other settings"):
        _compare(space, digits, tmp_path / "b", budget=10)


def test_other_supernet_epochs_are_refused_before_the_supernet_trains(tmp_path, space, digits):
    # The settings are checked before the supernet: resuming with more supernet epochs used
    # to train the finished supernet further, then refuse, leaving a comparison whose
    # recorded evaluations were made on other weights.
    _compare(space, digits, tmp_path / "c", strategies=("random",), rewards=["accuracy"], seeds=1)
    supernet = RunDir(tmp_path / "c" / "supernet")
    before = (tmp_path / "c" / "supernet" / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match="other settings"):
        _compare(
            space, digits, tmp_path / "c", strategies=("random",), rewards=["accuracy"], seeds=1,
            supernet_epochs=2,
        )  # fmt: skip
    assert len(supernet.read_jsonl("metrics.jsonl")) == 1
    assert (tmp_path / "c" / "supernet" / "last.pt").read_bytes() == before


def test_damaged_records_are_refused_with_file_and_line(tmp_path, space, digits):
    _compare(space, digits, tmp_path / "c", strategies=("random",), rewards=["accuracy"], seeds=2)
    path = tmp_path / "c" / "evaluations.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = "{not json\n"
    path.write_text("".join(lines))
    with pytest.raises(CheckpointError, match=r"evaluations\.jsonl:4: not a JSON record"):
        _compare(space, digits, tmp_path / "c", strategies=("random",), rewards=["accuracy"])


def test_report_is_never_written_through_a_link(tmp_path, space, digits):
    target = tmp_path / "elsewhere.md"
    target.write_text("keep me")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "report.md").symlink_to(target)
    with pytest.raises(SnnasError, match="is a symbolic link; refusing to replace it"):
        _compare(
            space, digits, tmp_path / "c", strategies=("random",), rewards=["accuracy"], seeds=2
        )
    assert target.read_text() == "keep me"
    assert (tmp_path / "c" / "report.md").is_symlink()


def test_full_mode_runs_a_search_per_seed(tmp_path, space, digits):
    config = load_search_config(
        "digits",
        None,
        [
            "search.train_steps=3",
            "search.strategy_steps=2",
            "search.samples=2",
            "search.topk=1",
            "search.rescore=2",
            "strategy.reinforce.batch=2",
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
        rewards=["penalized"],
        accel=CPU,
    )
    assert report["iterations"] == 2 and report["budget"] == 2 * (2 + 2)
    results = report["results"]["penalized"]
    assert results["reinforce"]["p_vs_random"] is not None
    for name in ("reinforce", "random"):
        per = results[name]["per_iteration"]
        assert len(per["train_loss"][0]) == 2 and len(per["mean_sampled_accuracy"][0]) == 2
        assert (tmp_path / "f" / f"{name}-s1" / "summary.json").is_file()
    assert "full mode" in (tmp_path / "f" / "report.md").read_text()
