"""A training checkpoint's contents are checked against the run before use; a loss that is
no longer a number stops training; option values are checked on construction."""

import math

import pytest
import torch

from snnas._run import RunDir
from snnas.errors import CheckpointError, ConfigError, TrainingError, UsageError
from snnas.train import Accelerator, default_config, train

CPU = Accelerator.pick("cpu")


def _config(**kw):
    base = {"epochs": 1, "batch_size": 2000, "eval_policies": 1, "epoch_eval_policies": 1}
    return default_config("supernet", "digits", **{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, space, digits):
    """One finished run whose checkpoint the tests copy and break."""
    run = RunDir(tmp_path_factory.mktemp("runs") / "good")
    train(space, digits, _config(), run, accel=CPU)
    return torch.load(run / "last.pt", weights_only=True)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"epoch": -5}, "epoch -5 of 1"),
        ({"epoch": 7}, "epoch 7 of 1"),
        ({"epoch": True}, "'epoch' should be an integer, found a boolean"),
        ({"metrics": []}, "0 epochs of metrics"),
        ({"metrics": [{"epoch": 1}]}, "no 'time_s' entry"),
        ({"model": None}, "'model' should be an object, found null"),
        ({"optimizer": []}, "'optimizer' should be an object"),
        ({"config": {"lr": 1}}, "its 'config' is not one"),
        ({"space_hash": 3}, "'space_hash' should be a string"),
    ],
)
def test_bad_checkpoint_contents_are_refused(tmp_path, space, digits, trained, change, reason):
    run = RunDir(tmp_path / "r")
    run.create()
    torch.save({**trained, **change}, run / "last.pt")
    with pytest.raises(CheckpointError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        train(space, digits, _config(epochs=2), run, resume=True, accel=CPU)


def test_checkpoint_of_another_network_is_refused(tmp_path, space, digits, trained):
    run = RunDir(tmp_path / "r")
    run.create()
    model = dict(trained["model"])
    name = next(k for k in model if k.endswith("weight"))
    model[name] = model[name][:1]
    torch.save({**trained, "model": model}, run / "last.pt")
    with pytest.raises(CheckpointError, match=f"does not match this network \\({name}"):
        train(space, digits, _config(epochs=2), run, resume=True, accel=CPU)
    del model[name]
    torch.save({**trained, "model": model}, run / "last.pt")
    with pytest.raises(CheckpointError, match="1 missing and 0 unexpected tensors"):
        train(space, digits, _config(epochs=2), run, resume=True, accel=CPU)
    optimizer = {
        "state": {},
        "param_groups": [{**trained["optimizer"]["param_groups"][0], "params": [0]}],
    }
    torch.save({**trained, "optimizer": optimizer}, run / "last.pt")
    with pytest.raises(CheckpointError, match="optimizer state does not match"):
        train(space, digits, _config(epochs=2), run, resume=True, accel=CPU)


def test_a_diverging_loss_stops_training(tmp_path, space, digits, monkeypatch):
    import torch.nn.functional as F

    real = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda logits, y: real(logits, y) * math.nan)
    run = RunDir(tmp_path / "r")
    with pytest.raises(TrainingError, match="diverged in epoch 1: the loss is nan"):
        train(space, digits, _config(), run, accel=CPU)
    assert not (run / "last.pt").exists()  # nothing saved of the diverged epoch


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("lr", math.nan),
        ("lr", math.inf),
        ("lr", -1.0),
        ("momentum", -0.9),
        ("momentum", 1.0),
        ("weight_decay", -5e-4),
        ("epochs", 0),
        ("seed", -1),
        ("seed", 2**40),
        ("eval_policies", 0),
        ("workers", -1),
        ("milestones", (math.nan,)),
    ],
)
def test_train_config_ranges(option, value):
    with pytest.raises(ConfigError):
        default_config("supernet", "digits", **{option: value})


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "", "cpu:0 ", "[/x]"])
def test_unknown_devices_are_usage_errors(device):
    with pytest.raises(UsageError, match="--device: expected cpu, cuda, cuda:N or mps"):
        Accelerator.pick(device)
