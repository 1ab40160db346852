"""Fashion-MNIST from IDX files the tests write (never the real files): both layouts, .gz or
not, the fixed validation split, resizing and normalisation (issue 15)."""

import torch
import torch.nn.functional as F

from snnas.data import DATASETS, FASHION_DIR, load_dataset
from snnas.data._fashion import VAL_DIVISOR, read_fashion
from tests.data.fashion_fixture import write_fashion


def test_both_layouts_gz_or_not_read_the_same_images(tmp_path):
    arrays = write_fashion(tmp_path / "flat", gz=True)
    write_fashion(tmp_path / "raw", gz=False, raw_layout=True)
    mixed = {"train-images-idx3-ubyte": False, "t10k-labels-idx1-ubyte": False}
    write_fashion(tmp_path / "mixed", gz=mixed)
    for folder in ("flat", "raw", "mixed"):
        raw = read_fashion(tmp_path / folder)
        assert torch.equal(raw["train"][0], arrays["train_images"].to(torch.uint8)), folder
        assert torch.equal(raw["train"][1], arrays["train_labels"]), folder
        assert torch.equal(raw["test"][0], arrays["test_images"].to(torch.uint8)), folder
        assert raw["train"][1].dtype == torch.int64
    # The raw layout is found from its parent folder too (DIR/FashionMNIST/raw).
    assert torch.equal(read_fashion(tmp_path / "raw")["test"][1], arrays["test_labels"])


def test_the_validation_split_is_the_last_twelfth_of_training(tmp_path):
    arrays = write_fashion(tmp_path, train=36, test=10)
    data = load_dataset("fashion-mnist", input_size=28, input_channels=1, data_dir=tmp_path)
    assert VAL_DIVISOR == 12 and 60_000 // VAL_DIVISOR == 5_000  # the real files: 5,000
    assert (data.size("train"), data.size("val"), data.size("test")) == (33, 3, 10)
    assert data.tensors["val"][1].tolist() == arrays["train_labels"][33:].tolist()
    assert data.tensors["test"][1].tolist() == arrays["test_labels"].tolist()
    # Normalised by the training split's statistics, the same for every split.
    x = data.tensors["train"][0]
    assert x.shape == (33, 1, 28, 28) and x.dtype == torch.float32
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-4
    pixels = arrays["train_images"][:33].float() / 255
    mean, std = float(pixels.mean()), float(pixels.std())
    expected = arrays["train_images"][33:].float() / 255
    assert torch.allclose(data.tensors["val"][0][:, 0], (expected - mean) / std, atol=1e-5)
    assert data.normalization["mean"] == [data.normalization["mean"][0]]
    assert abs(data.normalization["mean"][0] - mean) < 1e-6
    # Loading twice gives the same split (no randomness in it).
    again = load_dataset("fashion-mnist", input_size=28, input_channels=1, data_dir=tmp_path)
    assert torch.equal(again.tensors["val"][0], data.tensors["val"][0])


def test_resized_and_three_channels(tmp_path):
    arrays = write_fashion(tmp_path, train=24)
    data = load_dataset("fashion-mnist", input_size=16, input_channels=3, data_dir=tmp_path)
    x = data.tensors["train"][0]
    assert x.shape == (22, 3, 16, 16)
    assert torch.equal(x[:, 0], x[:, 2])
    small = F.interpolate(
        arrays["train_images"][:22].float().unsqueeze(1) / 255, size=(16, 16), mode="bilinear"
    )
    three = small.repeat(1, 3, 1, 1)  # the statistics of the inputs as the network sees them
    mean, std = float(three.mean()), float(three.std())
    assert torch.allclose(x[:, :1], (small - mean) / std, atol=1e-5)
    assert data.normalization["resize"]["size"] == 16
    batch, labels = next(iter(data.loader("train", 8, shuffle=True, augment=True)))
    assert batch.shape == (8, 3, 16, 16) and labels.shape == (8,)


def test_registered_with_the_apt_folder_as_default():
    assert "fashion-mnist" in DATASETS
    assert str(FASHION_DIR) == "/usr/share/datasets/fashion-mnist"


def test_the_shipped_fashion_space_and_search_config():
    from dataclasses import replace

    from snnas.search import load_search_config
    from snnas.space import load_space
    from tests.conftest import ROOT, SPACES

    space = load_space(SPACES / "fashion.toml")
    net = space.network
    assert (net.num_classes, net.input_size, net.input_channels) == (10, 16, 1)
    assert space.groups == 4 and space.parity.r == 0
    spelled = load_search_config("fashion-mnist", ROOT / "configs" / "search_fashion.toml")
    defaults = load_search_config("fashion-mnist")
    assert replace(spelled, strategy={}) == defaults
    assert (defaults.iterations, defaults.train_steps, defaults.eval_batch_size) == (10, 200, 1000)
    assert defaults.budget is None and defaults.scoring == "batch"


def test_snnas_train_reads_the_files_from_data_dir(tmp_path, write_space):
    import json

    from click.testing import CliRunner

    from snnas.cli import cli
    from tests.conftest import SMALL_TOML

    write_fashion(tmp_path / "data", raw_layout=True, gz=False, train=48)
    space = write_space(SMALL_TOML, "s.toml")
    args = ["train", str(space), "--plain", "--dataset", "fashion-mnist", "--data-dir"]
    args += [str(tmp_path / "data"), "--epochs", "1", "--batch-size", "16", "--json"]
    args += ["--runs-dir", str(tmp_path / "runs"), "--name", "f"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    final = json.loads(result.stdout)
    assert 0.0 <= final["test_acc"] <= 1.0
    config = json.loads((tmp_path / "runs" / "f" / "config.json").read_text())
    assert config["config"]["dataset"] == "fashion-mnist", config


def test_fashion_training_defaults():
    from snnas.train import default_config

    config = default_config("plain", "fashion-mnist", epochs=2)
    assert (config.batch_size, config.lr, config.milestones) == (128, 0.1, (0.5, 0.75))
    assert config.augment is False and config.epochs == 2
    assert default_config("supernet", "fashion-mnist").epochs == 10
