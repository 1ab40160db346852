"""Failout training (whole data devices dropped at random), its run folder and its place in
``parity eval`` (failout, failout + parity), on a small slice of the digits."""

import json

import pytest
import torch
import torch.nn.functional as F

from snnas._run import RunDir
from snnas.errors import CheckpointError, ConfigError
from snnas.models.parity import NEVER, CodedNetwork, ParityStreams, fail_at_tensor
from snnas.train._degraded import degraded_report
from snnas.train._failout import (
    FailoutConfig,
    failout_figures,
    failout_loss,
    failout_positions,
    load_failout,
    sample_fail_at,
    train_failout,
)
from snnas.train._finetuned import load_finetuned
from snnas.train._parity import ParityTrainConfig, load_parity_run, train_parity
from snnas.train._parity_report import METHODS, parity_eval
from snnas.train._trainer import evaluate
from tests.train.parity_fixture import CPU, make_finetuned_run, small_digits


@pytest.fixture(scope="module")
def data(digits):
    return small_digits(digits)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("ft") / "run"
    make_finetuned_run(path, data)
    return path


@pytest.fixture(scope="module")
def failout_run(finetuned, data, tmp_path_factory):
    """One failout run of 2 epochs (rate 1: every image loses a device)."""
    run = RunDir(tmp_path_factory.mktemp("fo") / "failout")
    config = FailoutConfig(epochs=2, batch_size=64, lr=1e-3, rate=1.0)
    final = train_failout(load_finetuned(finetuned), data, config, run, accel=CPU)
    return run, final


def test_positions_never_drop_device_0():
    assert failout_positions(4, 3) == [(j, p) for j in (1, 2, 3) for p in range(3)]
    assert failout_positions(1, 3) == []


def test_sample_fail_at_draws_one_device_per_dropped_image():
    g, points = 4, 3
    every = sample_fail_at(3000, g, points, 1.0, torch.Generator().manual_seed(0))
    assert every.shape == (3000, g) and every.dtype == torch.long
    lost = every < NEVER
    assert bool((lost.sum(1) == 1).all())  # exactly one device per image
    assert not bool(lost[:, 0].any())  # never device 0
    drawn = {(int(j), int(every[i, j])) for i, j in zip(*torch.nonzero(lost).T, strict=True)}
    assert drawn == set(failout_positions(g, points))  # every position is drawn
    # The same generator seed, the same draws (exact resume); the rate is a share of images.
    again = sample_fail_at(3000, g, points, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(every, again)
    some = sample_fail_at(4000, g, points, 0.25, torch.Generator().manual_seed(1))
    share = float((some < NEVER).any(1).float().mean())
    assert 0.22 < share < 0.28
    with pytest.raises(ValueError, match="two data devices"):
        sample_fail_at(4, 1, points, 0.5, torch.Generator())


@torch.no_grad()
def test_failout_loss_is_device_0s_cross_entropy_under_the_standins(finetuned, data):
    base = load_finetuned(finetuned)
    net = CodedNetwork(base, ParityStreams(base.space)).eval()
    x, y = next(iter(data.loader("val", 16)))
    clean = torch.full((16, 4), NEVER, dtype=torch.long)
    assert float(failout_loss(net, x, y, clean)) == pytest.approx(
        float(F.cross_entropy(base(x), y)), abs=1e-6
    )
    net.standin = "zeros"
    lost = fail_at_tensor([(2, 1)], 4, 16)
    out = net(x, None, lost)
    assert float(failout_loss(net, x, y, lost)) == pytest.approx(
        float(F.cross_entropy(out.device_logits, y)), abs=1e-6
    )
    assert float(failout_loss(net, x, y, lost)) != pytest.approx(
        float(failout_loss(net, x, y, clean)), abs=1e-4
    )


def test_config_check_names_the_option():
    for config, option in (
        (FailoutConfig(rate=0.0), "--failout-rate"),
        (FailoutConfig(rate=1.5), "--failout-rate"),
        (FailoutConfig(rate=float("nan")), "--failout-rate"),
        (FailoutConfig(lr=0.0), "--lr"),
        (FailoutConfig(epochs=0), "--epochs"),
        (FailoutConfig(batch_size=0), "--batch-size"),
        (FailoutConfig(standin="median"), "--standin"),
    ):
        with pytest.raises(ConfigError, match=option):
            config.check()
    FailoutConfig().check()
    assert FailoutConfig().epochs == ParityTrainConfig().epochs  # the same budget


def test_training_writes_its_folder_selects_on_validation_and_resumes(
    failout_run, finetuned, data, tmp_path
):
    run, straight = failout_run
    metrics = run.read_jsonl("metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(m["dropped_share"] == 1.0 for m in metrics)  # rate 1
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    best = max(metrics, key=lambda m: (m["val_degraded_acc"], -m["epoch"]))
    assert straight["best_epoch"] == best["epoch"]
    assert straight["val_degraded_acc"] == best["val_degraded_acc"]
    assert {"config.json", "metrics.jsonl", "last.pt", "best.pt", "final.json"} == {
        p.name for p in run.path.iterdir()
    }
    config = run.read_json("config.json")
    assert config["method"] == "failout" and config["dataset"] == data.name
    # The fine-tuned network itself, before failout, with the same stand-ins on validation.
    base = load_finetuned(finetuned)
    coded = CodedNetwork(base, ParityStreams(base.space))
    saved = run.load_checkpoint("best.pt")
    for q in range(base.space.num_points):
        coded.parity.impute(q).copy_(saved["impute"][str(q)])
    coded.standin = "mean"
    before = failout_figures(degraded_report(coded, list(data.loader("val", 256)), CPU))
    assert straight["val_before"]["degraded_acc"] == pytest.approx(before["degraded_acc"])

    config = FailoutConfig(epochs=2, batch_size=64, lr=1e-3, rate=1.0)

    def interrupt(phase, done, total, info):
        if phase == "epoch" and done == 1:
            raise KeyboardInterrupt

    other = RunDir(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        train_failout(load_finetuned(finetuned), data, config, other, accel=CPU, progress=interrupt)
    with pytest.raises(CheckpointError, match="--resume"):
        train_failout(load_finetuned(finetuned), data, config, other, accel=CPU)
    changed = FailoutConfig(epochs=2, batch_size=64, lr=1e-3, rate=0.5)
    with pytest.raises(CheckpointError, match="rate"):
        train_failout(load_finetuned(finetuned), data, changed, other, resume=True, accel=CPU)
    resumed = train_failout(load_finetuned(finetuned), data, config, other, resume=True, accel=CPU)
    assert resumed == {**straight, "train_time_s": resumed["train_time_s"]}
    a, b = run.load_checkpoint("last.pt"), other.load_checkpoint("last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["impute"][k], b["impute"][k]) for k in a["impute"])


def test_failout_changes_the_network_and_reloads(failout_run, finetuned, data):
    run, final = failout_run
    tuned = load_finetuned(finetuned)
    failout = load_failout(run)  # rebuilt from the folder alone
    assert failout.standin == "mean" and failout.config.rate == 1.0
    changed = [
        k for k, v in tuned.state_dict().items() if not torch.equal(v, failout.base.state_dict()[k])
    ]
    assert changed  # the data network itself trained
    val = list(data.loader("val", 256))
    figures = failout_figures(degraded_report(failout.coded(), val, CPU))
    assert figures["available_acc"] == pytest.approx(evaluate(failout.base, val, CPU))
    assert figures["degraded_acc"] == pytest.approx(final["val_degraded_acc"])
    assert figures["degraded_by_device"][0] == 0.0  # nobody answers without device 0
    # Into another fine-tuned network object of the same run: the same weights.
    again = load_failout(run, load_finetuned(finetuned))
    assert all(
        torch.equal(v, again.base.state_dict()[k]) for k, v in failout.base.state_dict().items()
    )


def test_parity_on_a_failout_network_keeps_its_constants(failout_run, data, tmp_path):
    run, _ = failout_run
    failout = load_failout(run)
    net = CodedNetwork(failout.base, ParityStreams(failout.base.space))
    out = RunDir(tmp_path / "parity-failout")
    config = ParityTrainConfig(epochs=1, batch_size=96)
    train_parity(net, data, config, out, accel=CPU, base="failout", imputation=failout.impute)
    for q, value in failout.impute.items():
        assert torch.equal(net.parity.impute(q), value)  # not recalibrated
    reloaded = load_parity_run(out)
    assert all(
        torch.equal(reloaded.base.state_dict()[k], v) for k, v in failout.base.state_dict().items()
    )
    assert out.read_json("config.json")["base"] == "failout"
    # Its checkpoint cannot be resumed on another base.
    other = CodedNetwork(load_failout(run).base, ParityStreams(failout.base.space))
    with pytest.raises(CheckpointError, match="base"):
        train_parity(other, data, ParityTrainConfig(epochs=2, batch_size=96), out, resume=True,
                     accel=CPU)  # fmt: skip


def test_load_failout_refuses_another_policy_and_bad_constants(failout_run, tmp_path, data):
    run, _ = failout_run
    other_path = tmp_path / "other"
    make_finetuned_run(other_path, data, epochs=1, seed=3)  # another sampled policy
    with pytest.raises(CheckpointError, match="data policy"):
        load_failout(run, load_finetuned(other_path))
    broken = RunDir(tmp_path / "broken")
    broken.create()
    broken.write_json("config.json", run.read_json("config.json"))
    state = run.load_checkpoint("best.pt")
    state["impute"]["0"] = torch.full_like(state["impute"]["0"], float("nan"))
    broken.save_checkpoint("best.pt", state)
    with pytest.raises(CheckpointError, match="non-finite"):
        load_failout(broken)
    broken.write_json("config.json", {"method": "parity"})
    with pytest.raises(CheckpointError, match="not a failout run"):
        load_failout(broken)


def test_parity_eval_shows_every_method(failout_run, finetuned, data, tmp_path):
    run, _ = failout_run
    base = load_finetuned(finetuned)
    main = RunDir(tmp_path / "parity")
    net = CodedNetwork(base, ParityStreams(base.space))
    train_parity(net, data, ParityTrainConfig(epochs=1, batch_size=96), main, accel=CPU)
    failout = load_failout(run)
    both = RunDir(tmp_path / "parity-failout")
    fnet = CodedNetwork(failout.base, ParityStreams(failout.base.space))
    train_parity(fnet, data, ParityTrainConfig(epochs=1, batch_size=96), both, accel=CPU,
                 base="failout", imputation=failout.impute)  # fmt: skip
    result = parity_eval(
        base, main, data, CPU, backup_epochs=1, failout=load_failout(run), failout_parity=both
    )
    methods = {"parity", *result["baselines"]}
    assert methods == set(METHODS)
    test = list(data.loader("test", 256))
    fo = result["baselines"]["failout"]
    assert fo["available_acc"] == pytest.approx(evaluate(load_failout(run).base, test, CPU))
    assert fo["degraded_by_device"][0] == 0.0
    assert (fo["extra_devices"], fo["extra_bytes"], fo["extra_flops"]) == (0, 0, 0)
    both_figures = result["baselines"]["failout+parity"]
    assert both_figures["available_acc"] == pytest.approx(fo["available_acc"])
    assert (
        both_figures["extra_devices"] == 1 and both_figures["extra_bytes"] == result["extra_bytes"]
    )
    alone = degraded_report(load_parity_run(both), test, CPU)
    assert both_figures["degraded_acc"] == pytest.approx(alone.degraded)
    for name, figures in result["baselines"].items():
        a, d = figures["available_acc"], figures["degraded_acc"]
        assert figures["overall"]["0.1"] == pytest.approx(0.9 * a + 0.1 * d), name
        assert {"extra_devices", "extra_bytes", "extra_flops"} <= set(figures)
    for name in ("none", "impute", "replicate", "backup"):
        assert result["baselines"][name]["available_acc"] == result["available_acc"]
    assert [result["baselines"][n]["extra_devices"] for n in ("backup", "replicate")] == [1, 1]
    saved = json.loads((main / "eval.json").read_text())
    assert set(saved["baselines"]) == set(METHODS) - {"parity"}
    for name in ("by_device.png", "overall.png"):
        assert (main / name).stat().st_size > 10_000
