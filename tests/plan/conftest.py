"""A small exported plan: a random frozen network (batch norm statistics randomised, so
folding is exercised) on an alpha = 2 space, with sparsity and float16 on the wire."""

from __future__ import annotations

import random

import pytest
import torch

from snnas.cost import PROFILES
from snnas.models import SepResNeXt
from snnas.space import space_from_text
from tests.conftest import SMALL_TOML

# depth 29: 3 blocks per stage; alpha 2, overlap 1: points after blocks 1, 3, 5, 7.
PLAN_TOML = SMALL_TOML.replace("depth = 11", "depth = 29").replace("alpha = 1", "alpha = 2")
ACCURACY = {"val_acc": 0.5, "test_acc": 0.5, "selected_epoch": 0}


def random_frozen(space, policy, seed=0):
    """A frozen network with random weights and random running statistics, eval mode."""
    torch.manual_seed(seed)
    net = SepResNeXt(space)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight, 1.0, 0.3)
            torch.nn.init.normal_(m.bias, 0.0, 0.3)
            m.running_mean.normal_(0.0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return net.freeze(policy).eval()


def talking_policy(space, seed=3):
    """A random policy in which every point sends something, some of it in float16."""
    rng = random.Random(seed)
    policy = space.sample(rng)
    for label in space.labels:
        if label.endswith("perm"):
            policy[label] = (1, 2, 3, 0) if rng.random() < 0.5 else (2, 3, 0, 1)
    return space.validate(policy)


@pytest.fixture(scope="session")
def plan_space():
    return space_from_text(PLAN_TOML)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, plan_space, digits):
    """(space, frozen model, plan dict, plan folder) of a plan exported with ONNX segments."""
    from snnas.plan import export_plan

    policy = talking_policy(plan_space)
    model = random_frozen(plan_space, policy)
    folder = tmp_path_factory.mktemp("runs") / "run" / "plan"
    plan = export_plan(plan_space, model, digits, PROFILES["rpi3b+"], ACCURACY, folder, onnx=True)
    return plan_space, model, plan, folder


PARITY = """
[parity]
r = {r}

[decisions.encode]
values = [0, 50, 100]

[decisions.encoder]
choices = ["sum", "concat", "mirror"]
"""


def parity_space(r=1):
    """The plan tests' space with r parity devices and every encoder."""
    return space_from_text(PLAN_TOML + PARITY.format(r=r))


def coded_network(space, encoder="concat", seed=0):
    """A CodedNetwork over a random frozen base: a talking policy, every point protected
    (two at 50%), random encoders, imputation constants and ``answers[1]``, so that every
    part of a parity plan matters."""
    from snnas.models.parity import CodedNetwork, ParityStreams

    policy = dict(talking_policy(space))
    for i, label in enumerate(sorted(k for k in policy if k.endswith(".encode"))):
        policy[label] = 50.0 if i in (1, 2) else 100.0
    policy["encoder"] = encoder
    policy = space.validate(policy)
    base = random_frozen(space, policy, seed)
    streams = ParityStreams(space)
    streams.init_from(base)
    torch.manual_seed(seed + 1)
    for w in streams.sum.values():
        torch.nn.init.normal_(w, std=0.3)
    for conv in streams.concat.values():
        torch.nn.init.normal_(conv.weight, std=0.05)
    for p in space.arch.points:
        streams.impute(p.index).normal_()
    streams.answers[1] = True
    return CodedNetwork(base, streams).eval()


@pytest.fixture(scope="session")
def parity_exported(tmp_path_factory, digits):
    """(coded network, plan dict, plan folder) of a plan with one parity device."""
    from snnas.plan import export_plan

    coded = coded_network(parity_space(1))
    folder = tmp_path_factory.mktemp("runs") / "parity" / "plan"
    plan = export_plan(coded.space, coded.base, digits, PROFILES["rpi3b+"], ACCURACY, folder,
                       coded=coded)  # fmt: skip
    return coded, plan, folder
