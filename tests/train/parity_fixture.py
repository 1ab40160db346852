"""A fine-tuned run folder in ``snnas finetune``'s format, built quickly for parity tests."""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F

from snnas._run import RunDir
from snnas.data import DataSplits
from snnas.models import FrozenSepResNeXt, SepResNeXt
from snnas.space import policy_json, space_from_text
from snnas.train._trainer import Accelerator, recalibrate_bn
from tests.conftest import SMALL_TOML

CPU = Accelerator.pick("cpu")

PARITY_TOML = (
    SMALL_TOML
    + """
[parity]
r = 1

[decisions.encode]
values = [0, 50, 100]

[decisions.encoder]
choices = ["sum", "concat"]
"""
)


def small_digits(digits: DataSplits, train: int = 192, evaluate: int = 96) -> DataSplits:
    """The first images of every split: enough for the mechanics, seconds to train."""
    sizes = {"train": train, "val": evaluate, "test": evaluate}
    tensors = {s: (x[: sizes[s]], y[: sizes[s]]) for s, (x, y) in digits.tensors.items()}
    return DataSplits(digits.name, 10, digits.input_size, digits.input_channels, tensors)


def make_finetuned_run(
    path: Path, data: DataSplits, text: str = PARITY_TOML, epochs: int = 4, seed: int = 0
) -> FrozenSepResNeXt:
    """Train a frozen policy a few epochs and write ``config.json`` (with ``space_toml``,
    as ``snnas search`` does) and ``finetune/best.pt`` (as ``snnas finetune`` does)."""
    space = space_from_text(text)
    torch.manual_seed(seed)
    policy = space.sample(random.Random(seed))
    policy.update({f"t{p}.perm": (1, 2, 3, 0) for p in range(space.num_points)})  # talkative
    policy = {**policy, **{k: 100.0 for k in policy if k.endswith(".encode")}}
    frozen = SepResNeXt(space).freeze(policy)
    optimizer = torch.optim.SGD(frozen.parameters(), lr=0.05, momentum=0.9)
    loader = data.loader("train", 32, shuffle=True, seed=seed)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        frozen.train()
        for x, y in loader:
            loss = F.cross_entropy(frozen(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    recalibrate_bn(frozen, data.loader("train", 64), CPU)
    frozen.eval()
    run = RunDir(path)
    run.create()
    run.write_json("config.json", {"space_toml": text, "space_hash": space.hash})
    identity = {"space_hash": space.hash, "policy": policy_json(frozen.policy)}
    RunDir(path / "finetune").save_checkpoint(
        "best.pt", {"identity": identity, "model": frozen.state_dict(), "epoch": epochs}
    )
    return frozen
