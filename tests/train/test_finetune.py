"""Fine-tuning a tiny search's selected policy, and the CLI pipeline after it."""

import json

import pytest
import torch
from click.testing import CliRunner

from snnas._run import RunDir
from snnas.cli import cli
from snnas.errors import CheckpointError
from snnas.search import load_search_config, run_search
from snnas.search._artifacts import load_search_run
from snnas.train import Accelerator, evaluate
from snnas.train._finetune import FinetuneConfig, finetune, load_finetuned

CPU = Accelerator.pick("cpu")
TINY = [
    "search.iterations=1",
    "search.train_steps=6",
    "search.strategy_steps=2",
    "search.samples=2",
    "search.topk=2",
    "search.batch_size=64",
]
CONFIG = FinetuneConfig(epochs=2, lr=0.02, batch_size=128, calib_batches=2)


@pytest.fixture(scope="module")
def search_run(tmp_path_factory, space, digits):
    runs = tmp_path_factory.mktemp("runs")
    config = load_search_config("digits", None, TINY)
    run_search(space, digits, config, "random", RunDir(runs / "s"), accel=CPU)
    return runs


def _finetune(run, digits, out, **kw):
    search = load_search_run(RunDir(run))
    return finetune(
        search.space, digits, search.policy, search.weights, CONFIG, RunDir(out), accel=CPU, **kw
    )


def test_finetune_selects_on_validation_and_reports_test_once(search_run, digits, tmp_path):
    result = _finetune(search_run / "s", digits, tmp_path / "ft")
    run = RunDir(tmp_path / "ft")
    for name in ("config.json", "metrics.jsonl", "last.pt", "best.pt", "final.json"):
        assert (run / name).is_file(), name
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    metrics = run.read_jsonl("metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [0, 1, 2]
    best = max(metrics, key=lambda m: (m["val_acc"], -m["epoch"]))
    final = result.metrics
    assert final["selected_epoch"] == best["epoch"]
    assert final["val_acc"] == best["val_acc"]
    assert set(final) >= {"val_acc", "test_acc", "val_acc_before", "selected_epoch"}
    # The selected network in eval mode: one image at a time gives the batched answers.
    model = load_finetuned(run, result.model.space)
    images, labels = digits.eval_tensors("val")
    with torch.no_grad():
        batched = model(images)
        single = torch.cat([model(images[i : i + 1]) for i in range(len(images))])
    assert torch.equal(batched.argmax(1), single.argmax(1))
    assert float((batched - single).abs().max()) < 1e-4
    acc = int((batched.argmax(1) == labels).sum()) / len(labels)
    assert acc == final["val_acc"] == evaluate(model, [(images, labels)], CPU)


def test_finetune_resumes_exactly(search_run, digits, tmp_path):
    straight = _finetune(search_run / "s", digits, tmp_path / "a")

    def stop_after_first_epoch(phase, done, total, info):
        if phase == "epoch" and done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _finetune(search_run / "s", digits, tmp_path / "b", progress=stop_after_first_epoch)
    with pytest.raises(CheckpointError, match="pass --resume"):
        _finetune(search_run / "s", digits, tmp_path / "b")
    resumed = _finetune(search_run / "s", digits, tmp_path / "b", resume=True)
    assert resumed.metrics["val_acc"] == straight.metrics["val_acc"]
    assert resumed.metrics["test_acc"] == straight.metrics["test_acc"]
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_resume_refuses_a_missing_or_different_run(search_run, digits, tmp_path):
    with pytest.raises(CheckpointError, match="no fine-tuning to resume"):
        _finetune(search_run / "s", digits, tmp_path / "none", resume=True)
    _finetune(search_run / "s", digits, tmp_path / "c")
    search = load_search_run(RunDir(search_run / "s"))
    longer = FinetuneConfig(epochs=3, lr=0.02, batch_size=128, calib_batches=2)
    with pytest.raises(CheckpointError, match=r"epochs: 2 != 3"):
        finetune(search.space, digits, search.policy, search.weights, longer,
                 RunDir(tmp_path / "c"), accel=CPU, resume=True)  # fmt: skip


def test_cli_finetune_export_verify(search_run):
    runner = CliRunner()
    runs = str(search_run)
    result = runner.invoke(cli, ["finetune", "s", "--runs-dir", runs, "--epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["epochs"] == 1
    result = runner.invoke(cli, ["export", "s", "--runs-dir", runs, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["plan"].endswith("s/plan")
    result = runner.invoke(cli, ["plan", "verify", summary["plan"], "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] and report["top1_agreement"] == 1.0
    assert report["compared_with"].endswith("plan/reference.safetensors")  # the plan alone
    result = runner.invoke(cli, ["plan", "verify", summary["plan"], "--json",
                                 "--reference-run", str(search_run / "s")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["compared_with"].endswith("finetune/best.pt")
    # A path given explicitly is honoured outside the runs folder too (issue 16).
    elsewhere = search_run.parent / "elsewhere" / "plan"
    result = runner.invoke(cli, ["export", "s", "--runs-dir", runs, "--out", str(elsewhere)])
    assert result.exit_code == 0, result.output
    assert (elsewhere / "plan.json").is_file()


def test_each_dataset_has_its_own_finetune_recipe():
    # Fashion-MNIST used to fall back to the paper's 45-epoch CIFAR recipe (hours on a CPU).
    from snnas.train._finetune import default_finetune_config

    fashion = default_finetune_config("fashion-mnist")
    assert (fashion.epochs, fashion.lr, fashion.batch_size, fashion.augment) == (
        5,
        0.01,
        128,
        False,
    )
    digits = default_finetune_config("digits")
    assert (digits.epochs, digits.lr, digits.batch_size, digits.augment) == (20, 0.03, 32, True)
    cifar = default_finetune_config("cifar10", epochs=3)
    assert (cifar.epochs, cifar.lr, cifar.batch_size) == (3, 1e-4, 128)
