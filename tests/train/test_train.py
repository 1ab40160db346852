import json

import pytest
import torch

from snnas._run import RunDir
from snnas.errors import CheckpointError, DatasetError
from snnas.space import space_from_text
from snnas.train import Accelerator, default_config, train
from tests.conftest import SMALL_TOML

CPU = Accelerator.pick("cpu")


def _config(mode="supernet", **kw):
    base = {"epochs": 2, "batch_size": 128, "eval_policies": 4, "epoch_eval_policies": 2}
    return default_config(mode, "digits", **{**base, **kw})


def test_supernet_run_writes_its_folder(tmp_path, space, digits):
    run = RunDir(tmp_path / "run")
    result = train(space, digits, _config(), run, accel=CPU)
    names = {p.name for p in run.path.iterdir()}
    assert {"config.json", "metrics.jsonl", "last.pt", "final.json", "best_policy.json"} <= names
    metrics = run.read_jsonl("metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert {"train_loss", "val_acc_mean", "val_acc_nocomm", "lr"} <= set(metrics[0])
    final = json.loads((run / "final.json").read_text())
    assert final == result.metrics
    assert final["random_policies"] == 4
    assert 0.0 <= final["val_acc_worst"] <= final["val_acc_mean"] <= final["val_acc_best"] <= 1.0
    best = space.load_policy(run / "best_policy.json")
    assert space.check(best) is None
    config = json.loads((run / "config.json").read_text())
    assert config["space_hash"] == space.hash


def test_learning_rate_steps():
    from snnas.train._trainer import learning_rate

    config = default_config("plain", "cifar10")  # the paper: 200 epochs, /10 every 50
    assert [learning_rate(config, e) for e in (0, 49, 50, 99, 100, 150, 199)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.0001, 0.0001]
    )


def test_learning_happens(tmp_path, space, digits):
    config = _config(mode="plain", epochs=4, batch_size=32)
    result = train(space, digits, config, RunDir(tmp_path / "plain"), accel=CPU)
    metrics = RunDir(tmp_path / "plain").read_jsonl("metrics.jsonl")
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert result.metrics["val_acc"] > 0.3  # chance is 0.1


def test_resume_continues_exactly(tmp_path, space, digits):
    straight = train(space, digits, _config(epochs=3), RunDir(tmp_path / "a"), accel=CPU)

    def interrupt(phase, done, total, info):
        if phase == "epoch" and done == 1:
            raise KeyboardInterrupt  # killed right after the first epoch's checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(
            space, digits, _config(epochs=3), RunDir(tmp_path / "b"), accel=CPU, progress=interrupt
        )
    assert not (tmp_path / "b" / "final.json").exists()
    resumed = train(
        space, digits, _config(epochs=3), RunDir(tmp_path / "b"), resume=True, accel=CPU
    )
    for (k, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    m_a = RunDir(tmp_path / "a").read_jsonl("metrics.jsonl")
    m_b = RunDir(tmp_path / "b").read_jsonl("metrics.jsonl")
    assert [m["train_loss"] for m in m_a] == [m["train_loss"] for m in m_b]
    assert straight.metrics["val_acc_best"] == resumed.metrics["val_acc_best"]


def test_existing_run_is_not_overwritten(tmp_path, space, digits):
    run = RunDir(tmp_path / "r")
    train(space, digits, _config(epochs=1), run, accel=CPU)
    before = (run / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match="--resume"):
        train(space, digits, _config(epochs=1), run, accel=CPU)
    assert (run / "last.pt").read_bytes() == before


def test_resume_with_another_config_is_refused(tmp_path, space, digits):
    run = RunDir(tmp_path / "r")
    train(space, digits, _config(epochs=1), run, accel=CPU)
    with pytest.raises(CheckpointError, match=r"lr: 0\.1 != 0\.05"):
        train(space, digits, _config(epochs=2, lr=0.05), run, resume=True, accel=CPU)


def test_corrupt_checkpoint_is_refused(tmp_path, space, digits):
    run = RunDir(tmp_path / "r")
    train(space, digits, _config(epochs=1), run, accel=CPU)
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        train(space, digits, _config(epochs=2), run, resume=True, accel=CPU)
    (run / "last.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        run.load_checkpoint("last.pt")


def test_fixed_policy_and_class_mismatch(tmp_path, space, digits):
    policy = space.sample(__import__("random").Random(0))
    config = _config(
        "policy",
        epochs=1,
        policy={k: list(v) if isinstance(v, tuple) else v for k, v in policy.items()},
    )
    result = train(space, digits, config, RunDir(tmp_path / "p"), accel=CPU)
    assert {"val_acc", "test_acc"} <= set(result.metrics)
    other = space_from_text(SMALL_TOML.replace("num_classes = 10", "num_classes = 7"))
    with pytest.raises(DatasetError, match="num_classes = 10"):
        train(other, digits, _config(), RunDir(tmp_path / "x"), accel=CPU)


def test_resuming_with_more_epochs_keeps_the_schedule(tmp_path, space, digits):
    """The schedule is fixed in absolute epochs when the run starts: more epochs continue at
    the last rate instead of stretching the milestones over the new total."""
    run = RunDir(tmp_path / "r")
    train(space, digits, _config(epochs=2, milestones=(0.5,)), run, accel=CPU)
    train(space, digits, _config(epochs=4, milestones=(0.5,)), run, resume=True, accel=CPU)
    lrs = [m["lr"] for m in run.read_jsonl("metrics.jsonl")]
    assert lrs == pytest.approx([0.1, 0.01, 0.01, 0.01])  # not [0.1, 0.01, 0.01 -> 0.1...]
    assert run.load_checkpoint("last.pt")["schedule"] == {"lr": 0.1, "steps": [1]}


def test_cifar_resume_is_exact(tmp_path):
    """Augmentation is seeded per sample from (seed, epoch, index): an interrupted CIFAR run
    resumes to the same weights as an uninterrupted one."""
    from snnas.data import load_dataset
    from tests.data.cifar_fixture import write_cifar

    write_cifar(tmp_path, "cifar10", per_batch=8, test=8)
    data = load_dataset("cifar10", input_size=32, input_channels=3, data_dir=tmp_path)
    text = SMALL_TOML.replace("input_size = 8", "input_size = 32").replace(
        "input_channels = 1", "input_channels = 3"
    )
    cifar_space = space_from_text(text)

    def config(epochs):
        return default_config(
            "supernet", "cifar10", epochs=epochs, batch_size=12, eval_policies=1,
            epoch_eval_policies=1,
        )  # fmt: skip

    def interrupt(phase, done, total, info):
        if phase == "epoch" and done == 1:
            raise KeyboardInterrupt  # killed right after the first epoch's checkpoint

    straight = train(cifar_space, data, config(2), RunDir(tmp_path / "a"), accel=CPU)
    torch.manual_seed(123)  # the global state must not matter
    with pytest.raises(KeyboardInterrupt):
        train(cifar_space, data, config(2), RunDir(tmp_path / "b"), accel=CPU, progress=interrupt)
    torch.rand(7)
    resumed = train(cifar_space, data, config(2), RunDir(tmp_path / "b"), resume=True, accel=CPU)
    for (k, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
