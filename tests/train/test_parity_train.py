"""Parity training, evaluation and their run folders, on a small slice of the digits."""

import json
import random

import pytest
import torch

from snnas._run import RunDir
from snnas.errors import CheckpointError, ConfigError
from snnas.models import SepResNeXt
from snnas.models.parity import CodedNetwork, ParityStreams, erasure_grid, fail_at_tensor
from snnas.space import space_from_text
from snnas.train._degraded import degraded_report, overall
from snnas.train._finetuned import load_finetuned
from snnas.train._parity import ParityTrainConfig, load_parity_run, train_parity
from snnas.train._parity_report import parity_eval
from tests.conftest import SMALL_TOML
from tests.train.parity_fixture import CPU, PARITY_TOML, make_finetuned_run, small_digits


@pytest.fixture(scope="module")
def data(digits):
    return small_digits(digits)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("ft") / "run"
    make_finetuned_run(path, data)
    return path


def _net(path, **choices):
    base = load_finetuned(path, parity_choices=choices or None)
    return CodedNetwork(base, ParityStreams(base.space))


def test_load_finetuned_reads_the_finetune_format(finetuned, data, tmp_path, write_space):
    base = load_finetuned(finetuned)
    x, _ = next(iter(data.loader("val", 8)))
    state = RunDir(finetuned / "finetune").load_checkpoint("best.pt")
    saved = base.space.validate(state["identity"]["policy"])
    assert base.space.parity.r == 1
    assert {k: v for k, v in base.policy.items() if "encode" not in k} == {
        k: v for k, v in saved.items() if "encode" not in k
    }
    # The parity decisions default to the most protective, not the run's (unscored) ones.
    assert all(v == 100.0 for k, v in base.policy.items() if k.endswith(".encode"))
    assert base.policy["encoder"] == "sum"  # the first listed
    # Another space with the same network and split but other parity settings...
    other = write_space(PARITY_TOML.replace("r = 1", "r = 2"), "r2.toml")
    coded = load_finetuned(finetuned, other, {"encoder": "sum", "t0.encode": 50})
    assert coded.space.parity.r == 2 and coded.policy["t0.encode"] == 50.0
    assert torch.equal(coded(x), base(x))  # the same data network
    # ... but not another network.
    wider = write_space(PARITY_TOML.replace("num_classes = 10", "num_classes = 11"), "w.toml")
    with pytest.raises(CheckpointError, match="network or split"):
        load_finetuned(finetuned, wider)
    (tmp_path / "nothing").mkdir()
    RunDir(tmp_path / "nothing").write_json("config.json", {})
    with pytest.raises(CheckpointError, match="space_toml"):
        load_finetuned(tmp_path / "nothing")


def test_degraded_report_scores_every_position(finetuned, data):
    net = _net(finetuned).eval()
    net.parity.init_from(net.base)
    batches = list(data.loader("val", 48))
    report = degraded_report(net, batches, CPU)
    positions = erasure_grid(4, 3)
    j, p = 2, 1
    correct = total = 0
    for x, y in batches:
        out = net(x, None, fail_at_tensor([(j, p)], 4, len(y)))
        correct += int((out.device_logits.argmax(1) == y).sum())
        total += len(y)
    assert report.device[j][p] == pytest.approx(correct / total)
    assert len(report.by_position) == 4 and len(report.by_position[0]) == 3
    assert report.degraded == pytest.approx(sum(map(sum, report.by_position)) / len(positions))
    # At the start the parity device is device 0's copy: device 0's loss barely matters.
    assert min(report.parity[0]) >= report.available - 0.25
    assert overall(0.9, 0.5, 0.1) == pytest.approx(0.86)


def test_training_writes_its_folder_selects_on_validation_and_resumes(finetuned, data, tmp_path):
    config = ParityTrainConfig(epochs=2, batch_size=64)
    straight = train_parity(_net(finetuned), data, config, RunDir(tmp_path / "a"), accel=CPU)
    metrics = RunDir(tmp_path / "a").read_jsonl("metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    best = max(metrics, key=lambda m: (m["val_degraded_acc"], -m["epoch"]))
    assert straight["best_epoch"] == best["epoch"]
    assert {"config.json", "metrics.jsonl", "last.pt", "best.pt", "final.json"} <= {
        p.name for p in (tmp_path / "a").iterdir()
    }

    def interrupt(phase, done, total, info):
        if phase == "epoch" and done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_parity(
            _net(finetuned), data, config, RunDir(tmp_path / "b"), accel=CPU, progress=interrupt
        )
    with pytest.raises(CheckpointError, match="--resume"):
        train_parity(_net(finetuned), data, config, RunDir(tmp_path / "b"), accel=CPU)
    other = ParityTrainConfig(epochs=2, batch_size=64, lr=0.5)
    with pytest.raises(CheckpointError, match="lr"):
        train_parity(_net(finetuned), data, other, RunDir(tmp_path / "b"), resume=True, accel=CPU)
    resumed = train_parity(
        _net(finetuned), data, config, RunDir(tmp_path / "b"), resume=True, accel=CPU
    )
    assert resumed == {**straight, "train_time_s": resumed["train_time_s"]}
    a = RunDir(tmp_path / "a").load_checkpoint("last.pt")["model"]
    b = RunDir(tmp_path / "b").load_checkpoint("last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_joint_phase_trains_the_base_and_the_run_reloads(finetuned, data, tmp_path):
    net = _net(finetuned, encoder="sum")
    before = {k: v.clone() for k, v in net.base.state_dict().items()}
    config = ParityTrainConfig(epochs=1, joint_epochs=1, batch_size=64)
    train_parity(net, data, config, RunDir(tmp_path / "j"), accel=CPU)
    metrics = RunDir(tmp_path / "j").read_jsonl("metrics.jsonl")
    assert [m["phase"] for m in metrics] == ["frozen", "joint"]
    last = RunDir(tmp_path / "j").load_checkpoint("last.pt")["model"]
    assert any(not torch.equal(last[f"base.{k}"], v) for k, v in before.items())
    reloaded = load_parity_run(RunDir(tmp_path / "j"))
    best = RunDir(tmp_path / "j").load_checkpoint("best.pt")
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in best["model"].items())


def test_supernet_parity_training(data, tmp_path):
    space = space_from_text(PARITY_TOML)
    torch.manual_seed(0)
    net = CodedNetwork(SepResNeXt(space), ParityStreams(space))
    final = train_parity(
        net, data, ParityTrainConfig(epochs=1, batch_size=96), RunDir(tmp_path / "s"), accel=CPU
    )
    assert 0.0 <= final["val_degraded_acc"] <= 1.0
    assert json.loads((tmp_path / "s" / "config.json").read_text())["supernet"] is True
    # The supernet's running statistics are left alone (scoring uses batch statistics).
    fresh = SepResNeXt(space).state_dict()
    assert torch.equal(
        net.base.state_dict()["blocks.0.bn1.running_mean"], fresh["blocks.0.bn1.running_mean"]
    )
    policy = space.sample(random.Random(5))
    from snnas.train._degraded import degraded_accuracy

    acc = degraded_accuracy(net, policy, list(data.loader("val", 96)), CPU)
    assert 0.0 <= acc <= 1.0


def test_parity_eval_reports_the_figures_and_baselines(finetuned, data, tmp_path):
    net = _net(finetuned)
    run = RunDir(tmp_path / "e")
    train_parity(net, data, ParityTrainConfig(epochs=1, batch_size=64), run, accel=CPU)
    result = parity_eval(net.base, run, data, CPU, backup_epochs=1)
    assert {"available_acc", "degraded_acc", "degraded_by_device", "overall", "baselines"} <= set(
        result
    )
    assert set(result["overall"]) == {"0.01", "0.05", "0.1"}
    a, d = result["available_acc"], result["degraded_acc"]
    assert result["overall"]["0.05"] == pytest.approx(0.95 * a + 0.05 * d)
    assert set(result["baselines"]) == {"none", "impute", "replicate", "backup"}
    for figures in result["baselines"].values():
        assert {"degraded_acc", "extra_bytes", "extra_flops", "degraded_by_device"} <= set(figures)
    none = result["baselines"]["none"]
    assert none["degraded_by_device"][0] == 0.0 and none["extra_bytes"] == 0  # nobody answers
    rep = result["baselines"]["replicate"]
    assert rep["degraded_by_device"][rep["device"]] == pytest.approx(a)
    assert result["extra_bytes"] == result["parity_cost"]["bytes"] > 0
    for name in ("eval.json", "by_device.png", "overall.png", "backup.pt"):
        assert (run / name).is_file()
    assert json.loads((run / "eval.json").read_text())["degraded_acc"] == d


def test_no_parity_space_is_refused(tmp_path, data):
    path = tmp_path / "plain"
    make_finetuned_run(path, data, text=SMALL_TOML, epochs=1)
    base = load_finetuned(path)
    with pytest.raises(ValueError, match="no parity devices"):
        ParityStreams(base.space)


def test_label_term_changes_the_loss(finetuned, data):
    from snnas.train._parity import parity_loss

    net = _net(finetuned)
    net.parity.init_from(net.base)
    net.detach_base = True
    x, y = next(iter(data.loader("train", 16)))
    pure = parity_loss(net, x, None)
    with_labels = parity_loss(net, x, None, labels=y, label_weight=1.0)
    assert float(with_labels.detach()) > float(pure.detach())
    with pytest.raises(ValueError, match="labels"):
        parity_loss(net, x, None, label_weight=1.0)


def test_train_images_trains_on_a_seeded_subset_and_is_part_of_the_identity(
    finetuned, data, tmp_path
):
    # A parity epoch over Fashion-MNIST's 55,000 images is hours on a CPU: --train-images.
    steps = []

    def record(phase, done, total, info):
        if phase == "train":
            steps.append(total)

    config = ParityTrainConfig(epochs=1, batch_size=32, train_images=64)
    train_parity(_net(finetuned), data, config, RunDir(tmp_path / "s"), accel=CPU, progress=record)
    assert set(steps) == {2}  # 64 images of the 192: 2 steps of 32
    assert RunDir(tmp_path / "s").read_json("config.json")["config"]["train_images"] == 64
    with pytest.raises(CheckpointError, match="train_images"):
        train_parity(
            _net(finetuned),
            data,
            ParityTrainConfig(epochs=2, batch_size=32, train_images=96),
            RunDir(tmp_path / "s"),
            resume=True,
            accel=CPU,
        )
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ConfigError, match="--train-images"):
            ParityTrainConfig(train_images=bad).check()


def _counting(monkeypatch):
    """Count the computations of the baselines (the reuse is observable only this way)."""
    import snnas.train._parity_report as report

    calls = []
    original = report._baselines

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(report, "_baselines", counted)
    return calls


def test_parity_runs_of_one_network_share_its_baselines(finetuned, data, tmp_path, monkeypatch):
    from snnas.train._parity_report import BASELINE_CACHE

    calls = _counting(monkeypatch)
    first, second = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    train_parity(_net(finetuned), data, ParityTrainConfig(epochs=1, batch_size=64), first,
                 accel=CPU)  # fmt: skip
    other = _net(finetuned, encoder="concat")
    train_parity(other, data, ParityTrainConfig(epochs=1, batch_size=64), second, accel=CPU)
    a = parity_eval(_net(finetuned).base, first, data, CPU, backup_epochs=1)
    assert not a["baselines_reused"] and calls == [1]
    (second / "backup.pt").write_bytes((first / "backup.pt").read_bytes())
    b = parity_eval(other.base, second, data, CPU, backup_epochs=1)
    assert b["baselines_reused"] and calls == [1]  # another parity run, the same baselines
    assert b["baselines"] == a["baselines"]
    assert b["degraded_by_position"] != a["degraded_by_position"]  # its own figures
    # Computed again from scratch, the figures are the cached ones.
    (tmp_path / BASELINE_CACHE).unlink()
    c = parity_eval(other.base, second, data, CPU, backup_epochs=1)
    assert not c["baselines_reused"] and calls == [1, 1]
    assert c["baselines"] == a["baselines"]
    # Another backup model is another key.
    state = second.load_checkpoint("backup.pt")
    model = state["model"]
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.items()}
    second.save_checkpoint("backup.pt", state)
    d = parity_eval(other.base, second, data, CPU, backup_epochs=1)
    assert not d["baselines_reused"] and calls == [1, 1, 1]
    assert d["baselines"]["backup"] != a["baselines"]["backup"]
    cache = json.loads((tmp_path / BASELINE_CACHE).read_text())
    assert len(cache["entries"]) == 2


def test_the_baselines_key_names_everything_they_depend_on(finetuned, data, monkeypatch):
    """Each input of the baselines' figures changes the key: the data, the network's
    weights, its imputation constants, the backup, the device, the code."""
    import snnas.train._parity_report as report

    net = _net(finetuned)
    backup = torch.nn.Linear(2, 2)
    key = report._baselines_key(net, data, CPU, backup, None, None)
    assert key == report._baselines_key(_net(finetuned), data, CPU, backup, None, None)
    assert key == report._baselines_key(
        _net(finetuned, encoder="concat"), data, CPU, backup, None, None
    )  # fmt: skip  (parity decisions: the same)
    changed = []
    images, labels = data.tensors["test"]
    other = type(data)(data.name, data.num_classes, data.input_size, data.input_channels,
                       {**data.tensors, "test": (images, labels.flip(0))})  # fmt: skip
    changed.append(report._baselines_key(net, other, CPU, backup, None, None))
    with torch.no_grad():
        net.parity.impute(0).add_(0.5)
    changed.append(report._baselines_key(net, data, CPU, backup, None, None))
    net = _net(finetuned)
    with torch.no_grad():
        next(net.base.parameters()).mul_(1.01)
    changed.append(report._baselines_key(net, data, CPU, backup, None, None))
    net = _net(finetuned)
    changed.append(report._baselines_key(net, data, CPU, torch.nn.Linear(2, 2), None, None))

    class Gpu:
        device = torch.device("cuda")
        cuda = True

    changed.append(report._baselines_key(net, data, Gpu(), backup, None, None))
    monkeypatch.setattr(report, "_code_digest", lambda: "another version of the code")
    changed.append(report._baselines_key(net, data, CPU, backup, None, None))
    assert len({key, *changed}) == 1 + len(changed)
