"""The latency cost (``reward.cost = "latency"``, ``reward.profile``): rewards, selection,
fronts, configuration checks and resume, all against ``snnas.cost.latency`` itself."""

import math
import random
import re

import pytest

from snnas._run import RunDir
from snnas.cost import PROFILES, communication, latency
from snnas.errors import CheckpointError, ConfigError, UsageError
from snnas.search import load_search_config, run_search
from snnas.search._cost import CostTerm, densest_policy
from snnas.search._pareto import pareto_front
from snnas.train import Accelerator

CPU = Accelerator.pick("cpu")
# Random search draws the same policies whatever the reward, so two runs that differ only
# in the cost score the same policies: any difference in selection comes from the cost.
TINY = [
    "search.iterations=2",
    "search.train_steps=4",
    "search.strategy_steps=0",
    "search.samples=12",
    "search.topk=3",
    "search.rescore=8",
    "search.batch_size=64",
]
LATENCY = ['reward.cost="latency"', 'reward.profile="rpi3b+"']


def _search(space, digits, path, extra=(), **kw):
    config = load_search_config("digits", None, TINY + list(extra))
    return run_search(space, digits, config, "random", RunDir(path), accel=CPU, **kw)


def _ms(space, policy, profile="rpi3b+"):
    return 1e3 * latency(space, policy, PROFILES[profile]).latency_s


def test_densest_policy_sends_every_channel_in_float32(space):
    dense = densest_policy(space)
    for d in space.decisions:
        if d.kind == "permutation":
            assert all(i != j for i, j in enumerate(dense[d.label]))  # every stream moves
        elif d.kind == "sparsity":
            assert dense[d.label] == 100.0
        else:
            assert dense[d.label] == "float32"
    # At least as many bytes as any sampled policy of the space sends.
    most = communication(space, dense).live_ratio
    assert all(
        communication(space, space.sample(random.Random(i))).live_ratio <= most for i in range(200)
    )


def test_latency_ratio_is_the_simulated_latency_over_the_densest_policys(space):
    cost = CostTerm(space, "latency", "a57x4")
    reference = _ms(space, densest_policy(space), "a57x4")
    assert cost.reference_ms == reference
    for policy in (space.no_communication_policy(), densest_policy(space)):
        assert cost.ratio(policy) == _ms(space, policy, "a57x4") / reference
        assert cost.measures(policy) == {
            "comm_ratio": communication(space, policy).live_ratio,
            "latency_ms": _ms(space, policy, "a57x4"),
            "latency_ratio": _ms(space, policy, "a57x4") / reference,
        }
    assert cost.ratio(densest_policy(space)) == 1.0
    assert cost.key == "latency_ratio" and CostTerm(space).key == "comm_ratio"


def test_penalized_rewards_use_the_latency_ratio(tmp_path, space, digits):
    lam = 1.0
    comm = _search(space, digits, tmp_path / "c", [f"reward.lambda={lam}", "reward.mode=penalized"])
    lat = _search(
        space, digits, tmp_path / "l", [f"reward.lambda={lam}", "reward.mode=penalized", *LATENCY]
    )
    reference = _ms(space, densest_policy(space))
    assert lat.summary["cost"]["reference_ms"] == reference
    for c, e in zip(comm.events, lat.events, strict=True):
        assert c["policy"] == e["policy"] and c["accuracy"] == e["accuracy"]
        ms = _ms(space, space.validate(e["policy"]))
        assert e["latency_ms"] == ms and e["latency_ratio"] == ms / reference
        assert e["reward"] == e["accuracy"] - lam * (ms / reference)
        assert c["reward"] == c["accuracy"] - lam * c["comm_ratio"]
        assert e["comm_ratio"] == c["comm_ratio"]
    # The selected policy is the re-scored candidate with the best latency reward, and it is
    # not the one the communication cost selects.
    top = RunDir(tmp_path / "l").read_json("topk.json")
    best = top[0]
    assert best["reward"] == best["val_acc"] - lam * best["latency_ratio"]
    assert all(best["reward"] >= r["reward"] for r in top)
    assert lat.summary["best_latency_ms"] == _ms(space, lat.best_policy)
    assert lat.summary["best_policy"] != comm.summary["best_policy"]


def test_budget_mode_compares_the_latency_ratio_with_the_budget(tmp_path, space, digits):
    budget = 0.8
    result = _search(
        space, digits, tmp_path / "b", ["reward.mode=budget", f"reward.budget={budget}", *LATENCY]
    )
    for e in result.events:
        over = e["latency_ratio"] > budget
        assert e["reward"] == (e["accuracy"] - 1.0 if over else e["accuracy"])
    assert {e["latency_ratio"] > budget for e in result.events} == {True, False}


def test_pareto_front_is_accuracy_against_latency(tmp_path, space, digits):
    result = _search(space, digits, tmp_path / "p", ["reward.mode=pareto", *LATENCY])
    run = RunDir(tmp_path / "p")
    front = run.read_json("front.json")
    assert front["cost"]["cost"] == "latency" and front["cost"]["profile"] == "rpi3b+"
    members = front["members"]
    ratios = [m["latency_ratio"] for m in members]
    assert ratios == sorted(ratios)
    topk = run.read_json("topk.json")
    expected = pareto_front([(r["val_acc"], r["latency_ratio"], None) for r in topk])
    assert len(members) >= len(expected)
    for m in members:
        ms = _ms(space, space.validate(m["policy"]))
        assert m["latency_ms"] == ms
        assert math.isclose(m["latency_ratio"], ms / front["cost"]["reference_ms"])
    events = {e["index"]: e for e in result.events}
    for point in result.summary["pareto_front"]:
        assert point["latency_ratio"] == events[point["event"]]["latency_ratio"]
        assert point["latency_ms"] == events[point["event"]]["latency_ms"]
    assert run.read_json("best_policy.json")["latency_ms"] == result.summary["best_latency_ms"]


def test_accuracy_mode_refuses_the_latency_cost(tmp_path, space, digits):
    with pytest.raises(ConfigError, match=r"reward\.mode: expected penalized, budget or pareto"):
        _search(space, digits, tmp_path / "a", LATENCY)
    assert not (tmp_path / "a").exists()


def test_resume_refuses_another_cost_or_profile(tmp_path, space, digits):
    base = ["reward.mode=penalized", "search.iterations=1"]
    _search(space, digits, tmp_path / "r", [*base, *LATENCY])
    for other in (
        [],
        ['reward.cost="latency"', 'reward.profile="a57x4"'],
    ):
        with pytest.raises(CheckpointError, match=r"cannot resume a different search.*cost"):
            _search(space, digits, tmp_path / "r", [*base, *other], resume=True)
    # The same settings resume.
    _search(space, digits, tmp_path / "r", ["reward.mode=penalized", *LATENCY], resume=True)


@pytest.mark.parametrize(
    ("items", "needles"),
    [
        (['reward.cost="energy"'], ("reward.cost", "comm, latency", "energy")),
        (['reward.cost="latency"'], ("reward.profile", "<unset>")),
        (['reward.profile="rpi3b+"'], ("reward.profile", 'unset unless reward.cost = "latency"')),
        (['reward.cost="latency"', 'reward.profile="rpi4"'], ("reward.profile", "rpi3b+, a57x4")),
        (['reward.cost="latency"', 'reward.profile="/no/such.toml"'], ("reward.profile",)),
        (['reward.cost="latency"', "reward.profile=3"], ("reward.profile",)),
        (["reward.cost=1"], ("reward.cost", "a string")),
    ],
)
def test_bad_cost_settings_name_the_key(tmp_path, items, needles):
    text = "[reward]\n" + "".join(f"{i.split('.', 1)[1]}\n" for i in items)
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_search_config("digits", path)
    assert not isinstance(info.value, UsageError)
    assert str(path) in str(info.value)
    for needle in needles:
        assert needle in str(info.value)
    with pytest.raises(UsageError) as info:  # the same through --set: exit code 2
        load_search_config("digits", None, items)
    for needle in needles:
        assert needle in str(info.value)


def test_cost_settings_load_and_default(tmp_path):
    assert load_search_config("digits").cost == "comm"
    config = load_search_config("digits", None, LATENCY)
    assert (config.cost, config.cost_profile) == ("latency", "rpi3b+")
    back = type(config).from_json(config.to_json())
    assert (back.cost, back.cost_profile) == ("latency", "rpi3b+")
    # A configuration saved before the cost existed reads as the communication cost.
    from snnas.search._config import with_defaults

    old = {k: v for k, v in config.to_json().items() if k not in ("cost", "cost_profile")}
    assert (with_defaults(old)["cost"], with_defaults(old)["cost_profile"]) == ("comm", None)


def _compare(space, digits, path, extra=(), **kw):
    from snnas.search._compare import compare

    config = load_search_config("digits", None, ["strategy.reinforce.batch=3", *extra])
    args = {"seeds": 2, "budget": 6, "rewards": ["penalized", "pareto"], "reference": 40}
    return compare(
        space, digits, config, ["random"], run=RunDir(path), accel=CPU, supernet_epochs=1,
        **{**args, **kw},
    )  # fmt: skip


def test_compare_in_latency_mode_scores_the_latency_ratio(tmp_path, space, digits):
    report = _compare(space, digits, tmp_path / "c", LATENCY)
    assert report["cost"]["cost"] == "latency" and report["cost"]["profile"] == "rpi3b+"
    assert report["objectives"] == ["accuracy", "latency_ratio"]
    reference = _ms(space, densest_policy(space))
    run = RunDir(tmp_path / "c")
    lam = load_search_config("digits").reward_lambda
    for e in run.read_jsonl("evaluations.jsonl") + run.read_jsonl("reference.jsonl"):
        ms = _ms(space, space.validate(e["policy"]))
        assert e["latency_ms"] == ms and e["latency_ratio"] == ms / reference
        assert e["comm_ratio"] == communication(space, space.validate(e["policy"])).live_ratio
        if e.get("reward_mode") == "penalized":
            assert e["reward"] == e["accuracy"] - lam * e["latency_ratio"]
    point = report["reference"]["pareto"]["reference_point"]
    assert point["latency_ratio"] == 1.0
    text = (tmp_path / "c" / "report.md").read_text()
    assert "Cost term of the cost-aware modes: the latency ratio" in text
    assert f"{reference:.4f} ms" in text and "(accuracy, latency ratio)" in text
    # Resuming with another profile, or the communication cost, is refused.
    for other in (['reward.cost="latency"', 'reward.profile="a57x4"'], []):
        with pytest.raises(CheckpointError, match="other settings"):
            _compare(space, digits, tmp_path / "c", other)


def test_compare_refuses_what_it_would_ignore(tmp_path, space, digits):
    with pytest.raises(UsageError, match="--rewards"):
        _compare(space, digits, tmp_path / "a", LATENCY, rewards=["accuracy"])
    with pytest.raises(ConfigError, match=r"constraints: expected none in snnas compare's fixed"):
        _compare(space, digits, tmp_path / "b", ["constraints.comm_ratio=0.2"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("cost", "profile", "needle"),
    [
        ("energy", None, "reward.cost: expected one of comm, latency"),
        ("Latency", "rpi3b+", "reward.cost: expected one of comm, latency"),
        ("comm", "rpi3b+", "reward.profile: expected unset"),
        ("latency", None, "reward.profile: expected a device profile"),
    ],
)
def test_a_cost_term_refuses_what_the_loader_refuses(space, cost, profile, needle):
    # A SearchConfig built in Python (dataclasses.replace) skips the loader's checks: an
    # unknown cost must not fall back to the communication ratio, nor a profile be ignored.
    with pytest.raises(ConfigError, match=re.escape(needle)):
        CostTerm(space, cost, profile)


def test_run_search_refuses_an_unknown_cost_from_python(tmp_path, space, digits):
    from dataclasses import replace

    config = replace(
        load_search_config("digits", None, [*TINY, "reward.mode=penalized"]), cost="lat"
    )
    with pytest.raises(ConfigError, match=r"reward\.cost"):
        run_search(space, digits, config, "random", RunDir(tmp_path / "x"), accel=CPU)
    assert not (tmp_path / "x").exists()
