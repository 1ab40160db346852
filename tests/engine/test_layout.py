"""The prediction runs the programs a plan runs: ``device_entries`` (from the space and the
policy alone) gives exactly the sends, receives and blocks of every device of an exported
plan, with and without parity devices."""

import json

import pytest

from snnas.cost import PROFILES, programs
from snnas.engine import device_ops
from snnas.plan import export_plan
from tests.plan.conftest import ACCURACY, random_frozen, talking_policy

KEYS = ("device", "role", "input", "stem", "head", "blocks", "sends", "receives")


def _same(entries, plan):
    assert len(entries) == len(plan["devices"])
    for ours, theirs in zip(entries, plan["devices"], strict=True):
        for key in KEYS:
            assert ours[key] == theirs[key], (ours["device"], key)
        if theirs["role"] == "parity":
            assert ours["encoders"] == theirs["encoders"] and ours["shadows"] == theirs["shadows"]
        else:
            assert device_ops(ours) == device_ops(theirs)


@pytest.fixture(scope="module")
def plain_plan(tmp_path_factory, plan_space, digits):
    policy = talking_policy(plan_space)
    model = random_frozen(plan_space, policy)
    folder = tmp_path_factory.mktemp("runs") / "plan"
    return export_plan(plan_space, model, digits, PROFILES["rpi3b+"], ACCURACY, folder)


def test_entries_of_a_plan_without_parity_devices(plan_space, plain_plan):
    _same(programs(plan_space, plan_space.validate(plain_plan["policy"])), plain_plan)


def test_entries_of_a_plan_with_parity_devices(parity_exported):
    coded, _, folder = parity_exported
    _same(programs(coded.space, coded.base.policy), json.loads((folder / "plan.json").read_text()))
