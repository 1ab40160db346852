import pytest
import torch

from snnas.data import DIGITS_SPLIT, TensorLoader, load_dataset
from snnas.errors import DatasetError
from tests.data.cifar_fixture import write_cifar


def test_digits_split_sizes_and_determinism():
    a = load_dataset("digits", input_size=16, input_channels=1)
    b = load_dataset("digits", input_size=16, input_channels=1)
    assert DIGITS_SPLIT == (1257, 180, 360)
    assert tuple(a.size(s) for s in ("train", "val", "test")) == DIGITS_SPLIT
    assert sum(DIGITS_SPLIT) == 1797
    for split in ("train", "val", "test"):
        assert torch.equal(a.tensors[split][0], b.tensors[split][0])
        assert torch.equal(a.tensors[split][1], b.tensors[split][1])
    x = a.tensors["train"][0]
    assert x.shape == (1257, 1, 16, 16)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    # stratified: every class is in every split
    for split in ("train", "val", "test"):
        assert set(a.tensors[split][1].tolist()) == set(range(10))


def test_digits_three_channels_and_other_sizes():
    d = load_dataset("digits", input_size=32, input_channels=3)
    assert d.tensors["val"][0].shape == (180, 3, 32, 32)


def test_tensor_loader_is_seeded_per_epoch():
    images, labels = torch.arange(20.0).view(20, 1, 1, 1), torch.arange(20)
    loader = TensorLoader(images, labels, 6, shuffle=True, seed=3)
    first = [y.tolist() for _, y in loader]
    assert [len(b) for b in first] == [6, 6, 6, 2]
    assert sorted(y for batch in first for y in batch) == list(range(20))
    again = [y.tolist() for _, y in TensorLoader(images, labels, 6, shuffle=True, seed=3)]
    assert first == again
    loader.set_epoch(1)
    assert [y.tolist() for _, y in loader] != first


@pytest.mark.parametrize(("name", "classes"), [("cifar10", 10), ("cifar100", 100)])
def test_cifar_fixture_in_the_real_format(tmp_path, name, classes):
    write_cifar(tmp_path, name, per_batch=20, test=30)
    for data_dir in (
        tmp_path,
        tmp_path / ("cifar-10-batches-py" if classes == 10 else "cifar-100-python"),
    ):
        data = load_dataset(name, input_size=32, input_channels=3, data_dir=data_dir)
        assert data.num_classes == classes
        assert (data.size("train"), data.size("val"), data.size("test")) == (90, 10, 30)
    images = data.tensors["train"][0]
    assert images.dtype == torch.uint8 and images.shape == (90, 3, 32, 32)
    # validation is held out of the training split, never the test split
    train_rows = {bytes(r.numpy()) for r in data.tensors["train"][0].view(90, -1)}
    val_rows = {bytes(r.numpy()) for r in data.tensors["val"][0].view(10, -1)}
    assert not train_rows & val_rows
    x, y = next(iter(data.loader("train", 8, shuffle=True, augment=True)))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (8,)
    # evaluation transforms are deterministic
    e1 = next(iter(data.loader("val", 10)))[0]
    e2 = next(iter(data.loader("val", 10)))[0]
    assert torch.equal(e1, e2)


def test_cifar_missing_folder_names_folder_and_files(tmp_path):
    with pytest.raises(DatasetError, match=r"does not exist \(looked for cifar-10-batches-py/\)"):
        load_dataset("cifar10", input_size=32, input_channels=3, data_dir=tmp_path / "nope")
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dataset("cifar10", input_size=32, input_channels=3)


def test_cifar_incomplete_folder_names_the_missing_files(tmp_path):
    folder = write_cifar(tmp_path, "cifar10")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", input_size=32, input_channels=3, data_dir=tmp_path)
    message = str(info.value)
    assert str(folder) in message and "missing data_batch_3" in message
    assert "test_batch" in message  # the full list of expected files


def test_cifar_corrupt_file_is_refused(tmp_path):
    folder = write_cifar(tmp_path, "cifar100")
    (folder / "test").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="not a CIFAR python batch"):
        load_dataset("cifar100", input_size=32, input_channels=3, data_dir=tmp_path)


def test_cifar_needs_a_32x32_rgb_space(tmp_path):
    write_cifar(tmp_path, "cifar10")
    with pytest.raises(DatasetError, match="input_size = 32"):
        load_dataset("cifar10", input_size=16, input_channels=1, data_dir=tmp_path)


class _Payload:
    """A pickle that creates a file when unpickled (the classic ``__reduce__`` exploit)."""

    def __init__(self, command: str, call) -> None:
        self.command, self.call = command, call

    def __reduce__(self):
        return (self.call, (self.command,))


@pytest.mark.parametrize("call", ["system", "eval", "popen"])
def test_crafted_cifar_pickle_never_runs(tmp_path, call):
    import builtins
    import os
    import pickle
    import subprocess

    marker = tmp_path / "pwned"
    folder = write_cifar(tmp_path, "cifar10")
    function = {"system": os.system, "eval": builtins.eval, "popen": subprocess.getoutput}[call]
    command = f"open({str(marker)!r}, 'w').write('x')" if call == "eval" else f"touch {marker}"
    # The exploit sits inside an otherwise real batch, where the labels should be.
    batch = {"data": __import__("numpy").zeros((2, 3072), dtype="uint8")}
    batch["labels"] = _Payload(command, function)
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", input_size=32, input_channels=3, data_dir=tmp_path)
    assert not marker.exists()
    message = str(info.value)
    assert str(folder / "data_batch_2") in message
    assert "refused before running anything" in message
    assert len(message.splitlines()) == 1


def test_cifar_batch_with_wrong_contents(tmp_path):
    import pickle

    import numpy as np

    folder = write_cifar(tmp_path, "cifar10")
    cases = [
        ([1, 2, 3], "no 'data'"),
        ({"data": np.zeros((2, 3072), dtype=object), "labels": [0, 1]}, "integer array"),
        ({"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [0, True]}, "list of integers"),
        ({"data": np.zeros((2, 100), dtype=np.uint8), "labels": [0, 1]}, "shape"),
        ({"data": np.full((1, 3072), 300, dtype=np.int32), "labels": [0]}, "0..255"),
    ]
    for batch, reason in cases:
        (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
        with pytest.raises(DatasetError, match=reason):
            load_dataset("cifar10", input_size=32, input_channels=3, data_dir=tmp_path)


def test_cifar_augmentation_is_seeded_per_sample(tmp_path):
    """Each sample's augmentation comes from (seed, epoch, index): not from the global random
    state, and the same with loader workers (persistent across epochs) as without."""
    write_cifar(tmp_path, "cifar10", per_batch=4, test=4)
    data = load_dataset("cifar10", input_size=32, input_channels=3, data_dir=tmp_path)

    def epochs(workers):
        loader = data.loader("train", 6, shuffle=True, seed=1, augment=True, workers=workers)
        out = []
        for epoch in (0, 1, 0):
            loader.set_epoch(epoch)
            torch.manual_seed(epoch + 100 * workers)  # the global state must not matter
            out.append(torch.cat([x for x, _ in loader]))
        return out

    inline, workers = epochs(0), epochs(2)
    assert torch.equal(inline[0], inline[2])  # an epoch is the same whenever it is drawn
    assert not torch.equal(inline[0], inline[1])  # ...and differs from the next epoch's
    for a, b in zip(inline, workers, strict=True):
        assert torch.equal(a, b)


def test_subset_is_seeded_ordered_and_bounded(digits):
    a = digits.subset("train", 50, seed=3)
    b = digits.subset("train", 50, seed=3)
    c = digits.subset("train", 50, seed=4)
    assert a.size("train") == 50 and a.size("val") == digits.size("val")
    assert torch.equal(a.tensors["train"][0], b.tensors["train"][0])
    assert not torch.equal(a.tensors["train"][0], c.tensors["train"][0])
    # Every kept image is one of the split's, in the split's order.
    images = digits.tensors["train"][0].flatten(1)
    rows = [int((images == x).all(1).nonzero()[0]) for x in a.tensors["train"][0].flatten(1)]
    assert rows == sorted(rows)
    assert digits.subset("train", None) is digits
    assert digits.subset("train", digits.size("train")) is digits
    for bad in (0, digits.size("train") + 1):
        with pytest.raises(DatasetError, match="train examples"):
            digits.subset("train", bad)
