"""The typed plan model: JSON in and out, and what the loader exposes."""

import dataclasses
import json

import pytest

from snnas.errors import PlanError
from snnas.plan import Plan, load_plan
from snnas.plan._model import Send


@pytest.mark.parametrize("which", ["exported", "parity_exported"])
def test_plan_json_round_trips_through_the_model(request, which):
    folder = request.getfixturevalue(which)[-1]
    text = (folder / "plan.json").read_text()
    data = json.loads(text)
    model = Plan.from_json(data, "plan.json")
    assert model.to_json() == data
    # The exporter writes the model's JSON: the same keys in the same order.
    assert json.dumps(model.to_json()) == json.dumps(data)
    assert model.world == len(data["devices"]) and model.groups == data["schedule"]["groups"]


def test_the_loaded_plan_exposes_the_typed_model(exported):
    loaded = load_plan(exported[3])
    model = loaded.model
    assert model.to_json() == loaded.data
    entry = model.devices[1]
    assert isinstance(entry.sends[0], Send)
    assert entry.sends[0].to == loaded.device(1)["sends"][0]["to"]
    assert entry.weights is not None and entry.weights.file == "device1.safetensors"
    assert [s.index for s in entry.onnx or ()] == list(range(len(entry.onnx or ())))
    assert model.totals.bytes_per_image == sum(x.bytes for x in model.totals.links)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.devices[0].head = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        model.policy["t0.sparsity"] = 0.0  # type: ignore[index]


def test_from_json_checks_the_schema_first(exported):
    data = json.loads((exported[3] / "plan.json").read_text())
    data["devices"][0]["flops"] = -1
    with pytest.raises(PlanError, match=r"^x\.json: devices/0/flops: does not follow"):
        Plan.from_json(data, "x.json")
