"""The Python API (issue 16, section 1) on the tiny space and the bundled digits: search,
finetune, export, Plan (forward, verify), cost, and what they refuse. One pipeline is built
once per module; nothing in it prints."""

from __future__ import annotations

import json

import pytest
import torch

import snnas
from snnas.errors import CheckpointError, ConfigError, PlanError, PolicyError, UsageError
from tests.conftest import SMALL_TOML

TINY = {
    "search.iterations": 1,
    "search.train_steps": 4,
    "search.strategy_steps": 1,
    "search.samples": 2,
    "search.topk": 2,
    "search.batch_size": 64,
    "search.rescore": 2,
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A search, its fine-tuning and its plan, made through the API (nothing printed)."""
    root = tmp_path_factory.mktemp("api")
    (root / "tiny.toml").write_text(SMALL_TOML)
    space = snnas.load_space(root / "tiny.toml")
    run = snnas.search(
        space, name="s", runs_dir=root / "runs", overrides=TINY, strategy="random", device="cpu"
    )
    tuned = snnas.finetune(run, epochs=1, device="cpu")
    plan = snnas.export(tuned, out=root / "elsewhere" / "plan")
    return root, space, run, tuned, plan


def test_nothing_printed_progress_when_asked(tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(SMALL_TOML)
    calls: list[tuple[str, int, int]] = []
    snnas.search(
        tmp_path / "tiny.toml", name="q", runs_dir=tmp_path, overrides=TINY, strategy="random",
        device="cpu", progress=lambda phase, done, total, info: calls.append((phase, done, total)),
    )  # fmt: skip
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", "")
    assert calls and all(0 <= done <= total for _, done, total in calls)


def test_run_local(pipeline):
    _, _, _, _, plan = pipeline
    live = plan.run_local(count=3)
    assert live.images == 3 and live.top1_agreement == 1.0
    assert live.report["images"] == 3
    with pytest.raises(UsageError, match="count"):
        plan.run_local(count=0)


def test_search_run(pipeline):
    root, space, run, _, _ = pipeline
    assert run.path == root / "runs" / "s"
    assert space.validate(run.best_policy) == run.best_policy
    summary = json.loads((run.path / "summary.json").read_text())
    assert run.summary == summary
    assert run.best_val_acc == summary["best_val_acc"]
    assert run.best_comm_ratio == summary["best_comm_ratio"]
    again = snnas.SearchRun.open(run.path)
    assert again.best_policy == run.best_policy and again.space.hash == space.hash


def test_search_again_is_refused_before_any_work(pipeline, capsys):
    root, space, run, _, _ = pipeline
    before = (run.path / "last.pt").stat().st_mtime_ns
    with pytest.raises(CheckpointError, match="already holds a search: pass --resume"):
        snnas.search(space, name="s", runs_dir=root / "runs", overrides=TINY, strategy="random")
    assert (run.path / "last.pt").stat().st_mtime_ns == before
    assert capsys.readouterr().err == ""


def test_search_refuses_bad_arguments(pipeline):
    root, space, _, _, _ = pipeline
    with pytest.raises(UsageError, match="--strategy"):
        snnas.search(space, name="x", runs_dir=root / "runs", strategy="bogus")
    with pytest.raises(UsageError, match="--name"):
        snnas.search(space, name="../x", runs_dir=root / "runs")
    with pytest.raises(UsageError, match=r"search\.iterations"):
        snnas.search(space, name="x", runs_dir=root / "runs", overrides={"search.iterations": 0})
    with pytest.raises(UsageError, match="overrides"):
        snnas.search(space, name="x", runs_dir=root / "runs", overrides={"search.lr": {"a": 1}})
    assert not (root / "runs" / "x").exists()


def test_override_items():
    from snnas.api._search import override_items

    items = override_items(
        {"search.iterations": 1, "search.lr": 0.05, "reward.mode": "pareto", "a.b": [1, 2.5],
         "c.d": True, "e.f": float("nan")}
    )  # fmt: skip
    assert items == [
        "search.iterations=1",
        "search.lr=0.05",
        'reward.mode="pareto"',
        "a.b=[1, 2.5]",
        "c.d=true",
        "e.f=nan",
    ]
    assert override_items(["search.iterations=2"]) == ["search.iterations=2"]
    assert override_items(None) == []
    with pytest.raises(UsageError, match="overrides"):
        override_items("search.iterations=1")


def test_finetune_result(pipeline):
    _, _, run, tuned, _ = pipeline
    final = json.loads((run.path / "finetune" / "final.json").read_text())
    assert tuned.path == run.path / "finetune" and tuned.run == run.path
    assert (tuned.val_acc, tuned.test_acc, tuned.selected_epoch) == (
        final["val_acc"],
        final["test_acc"],
        final["selected_epoch"],
    )
    assert tuned.metrics == final


def test_finetune_again_gives_true_advice(pipeline):
    _, _, run, _, _ = pipeline
    with pytest.raises(CheckpointError) as caught:
        snnas.finetune(run, epochs=1)
    message = str(caught.value)
    assert "already holds a fine-tuning: pass --resume to continue it" in message
    assert "remove that folder" in message and "--name" not in message


def test_finetune_refuses_bad_numbers(pipeline):
    _, _, run, _, _ = pipeline
    for kwargs, option in (
        ({"epochs": 0}, "--epochs"),
        ({"lr": float("nan")}, "--lr"),
        ({"lr": 11.0}, "--lr"),
        ({"batch_size": 1.5}, "--batch-size"),
    ):
        with pytest.raises(UsageError, match=option):
            snnas.finetune(run, **kwargs)
    with pytest.raises(CheckpointError, match="no such run folder"):
        snnas.finetune(run.path / "nope")


def test_export_honours_out_outside_the_runs(pipeline):
    root, _, run, tuned, plan = pipeline
    assert plan.path == root / "elsewhere" / "plan"
    assert (plan.path / "plan.json").is_file()
    assert plan.input_shape == (1, 8, 8)
    assert plan.groups == 4 and plan.num_classes == 10
    data = json.loads((plan.path / "plan.json").read_text())
    assert data["source"]["run"] == str(run.path)
    assert data["source"]["checkpoint"] == "finetune/best.pt"
    assert data["accuracy"]["test"] == tuned.test_acc


def test_export_refuses_a_folder_it_would_not_replace(pipeline, tmp_path):
    _, _, _, tuned, _ = pipeline
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(PlanError, match="non-empty folder that holds no plan"):
        snnas.export(tuned, out=tmp_path / "full")
    (tmp_path / "link").symlink_to(tmp_path / "full")
    with pytest.raises(PlanError, match="symbolic link"):
        snnas.export(tuned, out=tmp_path / "link")
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["keep.txt"]


def _digits(split: str):
    from snnas.data import load_dataset

    return load_dataset("digits", input_size=8, input_channels=1).eval_tensors(split)


def test_forward_matches_the_plan_and_the_reference(pipeline):
    _, _, _, _, plan = pipeline
    from safetensors.torch import load_file

    images, labels = _digits("val")
    logits = plan.forward(images, normalized=True)
    reference = load_file(str(plan.path / "reference.safetensors"))
    assert logits.shape == (len(labels), 10)
    assert torch.equal(reference["val.labels"], labels)
    assert torch.allclose(logits, reference["val.logits"], atol=1e-4)
    assert torch.equal(logits.argmax(1), reference["val.logits"].argmax(1))
    one = plan.forward(images[0], normalized=True)  # one image (C, H, W)
    assert one.shape == (1, 10)
    assert torch.allclose(one, logits[:1], atol=1e-5)  # batch size changes the rounding only


def test_forward_applies_the_plans_normalisation(pipeline):
    """Raw digits (pixel values 0..16) become exactly the network inputs training used."""
    _, _, _, _, plan = pipeline
    from sklearn.datasets import load_digits

    raw = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1)  # (1797, 1, 8, 8)
    inputs = plan.inputs(raw).view(len(raw), -1)  # (1797, 64)
    val, _ = _digits("val")
    same = (inputs[None] == val.view(len(val), -1)[:, None]).all(-1)  # (180, 1797)
    assert bool(same.any(1).all())  # every validation image, bit for bit
    from_raw = plan.forward(raw[same.float().argmax(1)])
    assert torch.equal(from_raw, plan.forward(val, normalized=True))
    # a uint8 or float64 numpy array gives the same answers
    assert torch.equal(plan.forward(raw[:5].numpy().astype("uint8")), plan.forward(raw[:5]))
    assert torch.equal(plan.forward(raw[:5].double().numpy()), plan.forward(raw[:5]))


@pytest.mark.parametrize(
    ("images", "normalized", "words"),
    [
        (torch.zeros(2, 1, 8, 9), True, "network inputs (N, 1, 8, 8) float32"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.float64), True, "found <shape (2, 1, 8, 8) float64"),
        (torch.zeros(2, 3, 8, 8), False, "found <shape (2, 3, 8, 8) float32"),
        (torch.zeros(2, 8, 8, dtype=torch.int32), False, "uint8 or float"),
        (torch.zeros(8, 8), False, "found <shape (8, 8)"),
        (torch.full((1, 1, 8, 8), float("nan")), False, "finite values"),
        ([[0.0] * 8] * 8, False, "a torch tensor or a numpy array"),
    ],
)
def test_forward_refuses_what_the_spec_does_not_allow(pipeline, images, normalized, words):
    _, _, _, _, plan = pipeline
    with pytest.raises(UsageError) as caught:
        plan.forward(images, normalized=normalized)
    message = str(caught.value)
    assert message.startswith("images: expected") and words in message and "\n" not in message


def test_a_plan_without_normalisation_takes_network_inputs_only(pipeline, tmp_path):
    import shutil

    _, _, _, _, plan = pipeline
    copy = tmp_path / "plan"
    shutil.copytree(plan.path, copy)
    data = json.loads((copy / "plan.json").read_text())
    data["input"]["normalization"] = {"scale": 1, "gamma": 2}
    (copy / "plan.json").write_text(json.dumps(data))
    with pytest.raises(PlanError, match=r"normalization\.gamma: not a step snnas applies"):
        snnas.Plan.load(copy)
    data["input"]["normalization"] = {"std": [0.0]}
    (copy / "plan.json").write_text(json.dumps(data))
    expected = r"std\[0\]: expected a number in \(0, 1,000,000\], found 0\.0"
    with pytest.raises(PlanError, match=expected):
        snnas.Plan.load(copy)
    data["input"]["normalization"] = {}
    (copy / "plan.json").write_text(json.dumps(data))
    bare = snnas.Plan.load(copy)
    images, _ = _digits("val")
    assert torch.equal(bare.forward(images[:3]), plan.forward(images[:3], normalized=True))


def test_verify(pipeline):
    _, _, run, _, plan = pipeline
    check = plan.verify()
    assert check.top1_agreement == 1.0 and check.passed
    assert check.report["compared_with"].endswith("reference.safetensors")  # the plan only
    recomputed = plan.verify(reference_run=run.path)
    assert recomputed.passed and recomputed.report["compared_with"].endswith("finetune/best.pt")
    assert check.accuracy == check.report["accuracy"]
    with pytest.raises(UsageError, match="split"):
        plan.verify("train")


def test_cost(pipeline):
    from snnas.cost import PROFILES, communication, latency

    _, space, run, _, _ = pipeline
    got = snnas.cost(space, run.best_policy)
    assert got.ratio == communication(space, run.best_policy).ratio
    assert got.profile.name == "rpi3b+"
    a57 = snnas.cost(space, run.best_policy, profile="a57x4")
    assert a57.latency_ms == 1e3 * latency(space, run.best_policy, PROFILES["a57x4"]).latency_s
    assert snnas.cost(space, run.best_policy, profile=PROFILES["a57x4"]).to_json() == a57.to_json()
    from_file = snnas.cost(space, run.path / "best_policy.json")
    assert from_file.to_json() == got.to_json()
    with pytest.raises(UsageError, match="profile"):
        snnas.cost(space, run.best_policy, profile="tpu")
    with pytest.raises(PolicyError, match=r"missing decision 't0\.sparsity'"):
        snnas.cost(space, {"t0.perm": [0, 0, 0, 0]})


def test_search_and_cost_are_the_packages_too():
    import snnas.cost as cost_package
    import snnas.search as search_package

    assert callable(snnas.search) and snnas.search is search_package
    assert callable(snnas.cost) and snnas.cost is cost_package
    assert hasattr(snnas.search, "run_search") and hasattr(snnas.cost, "communication")


def test_search_takes_an_optuna_sampler_instance_and_a_user_objective(pipeline):
    import optuna

    root, space, _, _, _ = pipeline
    seen = []

    def objective(policy):
        seen.append(policy)
        return 0.0

    with pytest.raises(ConfigError, match="penalized or pareto with a user objective"):
        snnas.search(space, name="x", runs_dir=root / "runs", overrides=TINY, objective=objective)
    assert not (root / "runs" / "x").exists()  # refused before any work
    penalized = {**TINY, "reward.mode": "penalized"}
    run = snnas.search(
        space, name="sampler", runs_dir=root / "runs", overrides=penalized,
        strategy=optuna.samplers.RandomSampler(seed=3), device="cpu", objective=objective,
    )  # fmt: skip
    assert space.validate(run.best_policy) == run.best_policy
    assert run.path.name == "sampler"
    assert seen  # the user objective scored the sampled policies


def test_search_with_the_latency_cost(tmp_path):
    """snnas.search(..., overrides={"reward.cost": "latency", "reward.profile": ...})."""
    from snnas.cost import PROFILES, latency

    (tmp_path / "tiny.toml").write_text(SMALL_TOML)
    latency_cost = {"reward.mode": "penalized", "reward.cost": "latency", "reward.profile": "a57x4"}
    run = snnas.search(
        tmp_path / "tiny.toml", name="l", runs_dir=tmp_path, strategy="random", device="cpu",
        overrides={**TINY, **latency_cost},
    )  # fmt: skip
    ms = 1e3 * latency(run.space, run.best_policy, PROFILES["a57x4"]).latency_s
    assert run.summary["best_latency_ms"] == ms
    assert run.summary["cost"]["cost"] == "latency"
    with pytest.raises(ConfigError, match=r"reward\.profile: expected one of rpi3b\+, a57x4"):
        snnas.search(
            tmp_path / "tiny.toml", name="m", runs_dir=tmp_path, strategy="random",
            overrides={**TINY, **latency_cost, "reward.profile": "rpi4"},
        )  # fmt: skip
