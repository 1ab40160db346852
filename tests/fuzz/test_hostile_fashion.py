"""Hostile Fashion-MNIST files and options (issue 15): truncated, wrong magic, wrong counts,
bad labels, not gzip, missing files, a download without internet. Each is one line naming
the file (or the folder) through the real CLI, exit code 1, no traceback."""

from __future__ import annotations

import gzip
import struct

import pytest
import torch

from snnas.data import load_dataset
from snnas.errors import DatasetError
from tests.data.fashion_fixture import fashion_arrays, idx_images, idx_labels, write_fashion
from tests.fuzz._cli import invoke

ARRAYS = fashion_arrays()
IMAGES = idx_images(ARRAYS["train_images"])
LABELS = idx_labels(ARRAYS["train_labels"])
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"

CASES = [
    # (id, file, bytes, words of the message)
    ("truncated-images", TRAIN_IMAGES, IMAGES[:-100], "invalid for input of size"),
    ("header-only", TRAIN_IMAGES, IMAGES[:16], "expected a Fashion-MNIST IDX file"),
    ("empty", TRAIN_LABELS, b"", "IDX file of labels"),
    ("wrong-magic", TRAIN_IMAGES, b"\x00\x00\x00\x00" + IMAGES[4:], "bad IDX header"),
    ("labels-as-images", TRAIN_IMAGES, LABELS, "3 dimension"),
    ("float-type", TRAIN_IMAGES, struct.pack(">I", 0xD03) + IMAGES[4:], "IDX file of images"),
    ("long-file", TRAIN_LABELS, LABELS + b"\x01\x02", "invalid for input of size"),
    (
        "count-mismatch",
        TRAIN_LABELS,
        idx_labels(ARRAYS["train_labels"][:-2]),
        "expected as many labels as",
    ),
    ("label-range", TRAIN_LABELS, idx_labels(ARRAYS["train_labels"] + 10), "labels 0 to 9"),
    (
        "wrong-size",
        TRAIN_IMAGES,
        idx_images(torch.zeros(24, 20, 20, dtype=torch.uint8)),
        "28x28 pixels, found 20x20",
    ),
    ("too-few", TRAIN_LABELS, idx_labels(ARRAYS["train_labels"][:5]), "as many labels"),
]


@pytest.mark.parametrize(("case", "name", "data", "words"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("gz", [True, False])
def test_bad_files_are_one_line_naming_the_file(tmp_path, case, name, data, words, gz):
    write_fashion(tmp_path, gz=gz, override={name: data})
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion-mnist", input_size=28, input_channels=1, data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and words in message, message
    assert name in message, message


def test_too_few_training_images(tmp_path):
    write_fashion(tmp_path, train=11)
    with pytest.raises(DatasetError, match=r"at least 12 training images.* found 11"):
        load_dataset("fashion-mnist", input_size=28, input_channels=1, data_dir=tmp_path)


def test_not_gzip_and_gzip_bombs(tmp_path):
    write_fashion(tmp_path / "a")
    (tmp_path / "a" / f"{TRAIN_LABELS}.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="does not decompress") as info:
        load_dataset("fashion-mnist", input_size=28, input_channels=1, data_dir=tmp_path / "a")
    assert f"{TRAIN_LABELS}.gz" in str(info.value)
    write_fashion(tmp_path / "b")
    (tmp_path / "b" / f"{TRAIN_IMAGES}.gz").write_bytes(gzip.compress(bytes(65 << 20)))
    with pytest.raises(DatasetError, match="at most 67,108,864 bytes uncompressed"):
        load_dataset("fashion-mnist", input_size=28, input_channels=1, data_dir=tmp_path / "b")
    write_fashion(tmp_path / "c")
    (tmp_path / "c" / f"{TRAIN_IMAGES}.gz").write_bytes(gzip.compress(IMAGES)[:-20])
    with pytest.raises(DatasetError, match="does not decompress"):
        load_dataset("fashion-mnist", input_size=28, input_channels=1, data_dir=tmp_path / "c")


def test_missing_files_and_folders(tmp_path):
    write_fashion(tmp_path)
    (tmp_path / f"{TRAIN_LABELS}.gz").unlink()
    with pytest.raises(DatasetError, match=f"incomplete: missing {TRAIN_LABELS} "):
        load_dataset("fashion-mnist", input_size=28, input_channels=1, data_dir=tmp_path)
    with pytest.raises(DatasetError, match=r"does not exist.*dataset-fashion-mnist"):
        load_dataset("fashion-mnist", input_size=28, input_channels=1, data_dir=tmp_path / "x")
    with pytest.raises(DatasetError, match="input_size from 8 to 32"):
        load_dataset("fashion-mnist", input_size=64, input_channels=1, data_dir=tmp_path)


def test_download_without_internet_is_one_line(tmp_path, monkeypatch):
    from torchvision.datasets import FashionMNIST

    # No internet here: a mirror that refuses connections stands for one.
    monkeypatch.setattr(FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DatasetError) as info:
        load_dataset(
            "fashion-mnist", input_size=28, input_channels=1, data_dir=tmp_path, download=True
        )
    message = str(info.value)
    assert "\n" not in message and "could not download" in message
    assert "apt-get install dataset-fashion-mnist" in message
    with pytest.raises(DatasetError, match="--download needs --data-dir"):
        load_dataset("fashion-mnist", input_size=28, input_channels=1, download=True)
    with pytest.raises(DatasetError, match="only fashion-mnist can be downloaded"):
        load_dataset("digits", input_size=8, input_channels=1, download=True)


def test_the_cli_reports_a_bad_file_in_one_line(tmp_path, write_space):
    from tests.conftest import SMALL_TOML

    write_fashion(tmp_path / "data", override={TRAIN_IMAGES: IMAGES[:-7]})
    space = write_space(SMALL_TOML, "s.toml")
    args = ["train", str(space), "--plain", "--dataset", "fashion-mnist"]
    args += ["--data-dir", str(tmp_path / "data"), "--epochs", "1"]
    outcome = invoke(tmp_path, args)
    assert outcome.code == 1, outcome
    assert f"{TRAIN_IMAGES}.gz" in outcome.error and "IDX file of images" in outcome.error
    # The folder a download writes to is the user's (here under the sandbox's runs folder).
    target = tmp_path / "runs" / "fashion"
    outcome = invoke(tmp_path, [*args[:5], "--data-dir", str(target), "--download"])
    assert outcome.code == 1 and "could not download" in outcome.error, outcome
