"""Degraded accuracy with batch statistics: each erasure position is normalised on its own
images, so its accuracy does not depend on which other positions are scored (issue 15)."""

import random

import pytest
import torch

from snnas.models import SepResNeXt
from snnas.models.parity import CodedNetwork, ParityStreams, erasure_grid
from snnas.space import space_from_text
from snnas.train import Accelerator, degraded_accuracy, degraded_report
from tests.train.parity_fixture import PARITY_TOML, small_digits

CPU = Accelerator.pick("cpu")
SPACE = space_from_text(PARITY_TOML)


@pytest.fixture(scope="module")
def setup(digits):
    torch.manual_seed(0)
    net = CodedNetwork(SepResNeXt(SPACE), ParityStreams(SPACE))
    # Train mode a few steps so that batch statistics differ from the initial running ones.
    policy = SPACE.sample(random.Random(3))
    policy.update({k: 100.0 for k in policy if k.endswith(".encode")})
    policy.update({f"t{p}.perm": (1, 2, 3, 0) for p in range(SPACE.num_points)})
    data = small_digits(digits, train=32, evaluate=48)
    return net, policy, data


def test_each_position_scores_as_if_run_alone(setup):
    net, policy, data = setup
    batches = list(data.loader("val", 16))
    together = degraded_report(net, batches, CPU, policy, bn="batch")
    positions = erasure_grid(SPACE.groups, SPACE.num_points)
    assert len(positions) > 1
    for j, p in positions:
        alone = degraded_report(net, batches, CPU, policy, bn="batch", positions=[(j, p)])
        # Exactly the same figures, position by position.
        assert together.parity[j][p] == alone.parity[j][p], (j, p)
        assert together.device[j][p] == alone.device[j][p], (j, p)
    assert together.available == alone.available
    # The order positions are listed in does not matter either.
    reverse = degraded_report(net, batches, CPU, policy, bn="batch", positions=positions[::-1])
    assert reverse.parity == together.parity and reverse.device == together.device
    assert degraded_accuracy(net, policy, batches, CPU) == together.degraded


def test_running_statistics_are_unchanged_by_position_batching(setup):
    net, policy, data = setup
    batches = list(data.loader("val", 16))
    positions = erasure_grid(SPACE.groups, SPACE.num_points)
    together = degraded_report(net, batches, CPU, policy, bn="running")
    j, p = positions[-1]
    alone = degraded_report(net, batches, CPU, policy, bn="running", positions=[(j, p)])
    assert together.parity[j][p] == pytest.approx(alone.parity[j][p], abs=1e-12)
