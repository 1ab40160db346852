"""Plans with parity devices: export, schema, load, and every erasure position executed from
the plan's own files against the coded network."""

import json
import shutil

import pytest
import torch

from snnas.cost import PROFILES, parity_cost
from snnas.errors import PlanError
from snnas.plan import export_plan, load_plan, validate_plan, verify_plan
from snnas.plan._erasure import Erasure, execute_degraded
from tests.plan.conftest import ACCURACY, coded_network, parity_space


def test_parity_devices_are_devices_of_the_plan(parity_exported):
    coded, plan, folder = parity_exported
    space = coded.space
    g, points = space.groups, space.num_points
    validate_plan(plan, "plan.json")
    assert [e["role"] for e in plan["devices"]] == ["data"] * g + ["parity"]
    parity = plan["parity"]
    assert parity["devices"] == [g] and plan["input"]["devices"] == [0, g]
    assert parity["answers"] == [True, True, False, False]
    # Encodings are sends of the data devices, counted apart from the policy's traffic.
    sends = [s for e in plan["devices"] for s in e["sends"]]
    encoded = [s for s in sends if s["kind"] == "encoding"]
    cost = parity_cost(space, coded.base.policy)
    assert sum(s["bytes"] for s in encoded) == parity["encoding_bytes"] == cost.encoding_bytes
    assert sum(link["bytes"] for link in parity["links"]) == parity["encoding_bytes"]
    assert plan["totals"]["bytes_per_image"] == sum(
        s["bytes"] for s in sends if s["kind"] != "encoding"
    )
    assert all(s["to"] == g for s in encoded)
    entry = plan["devices"][g]
    assert entry["head"] and entry["shadows"] == 0
    assert {e["point"] for e in entry["encoders"]} == set(range(points))
    assert [e["channels"] for e in entry["encoders"]] == [
        p.channels if i not in (1, 2) else p.channels // 2 for i, p in enumerate(space.arch.points)
    ]
    # A degraded rule for every erasure position, with who answers.
    rules = {(r["device"], r["from_point"]): r for r in parity["rules"]}
    assert set(rules) == {(j, p) for j in range(g) for p in range(points)}
    assert all(rules[(0, p)]["answer_by"] == g for p in range(points))
    assert all(rules[(1, p)]["answer_by"] == g for p in range(points))
    assert all(rules[(2, p)]["answer_by"] == 0 for p in range(points))
    assert rules[(0, 0)]["stem_by"] == g and rules[(0, 1)]["stem_by"] is None
    # Device 0's stand-ins come from the parity device; the others' are imputed (no bytes).
    assert all(s["by"] == g for s in rules[(0, 0)]["standins"])
    assert rules[(0, 0)]["bytes"] > 0 and rules[(2, 0)]["bytes"] == 0
    assert all(s["by"] is None for s in rules[(2, 0)]["standins"])
    loaded = load_plan(folder)
    assert loaded.world == g + 1 and loaded.groups == g
    assert set(loaded.impute()) == {f"impute{q}" for q in range(points)}
    assert "fc.weight" in loaded.weights(g) and "encoder.0.weight" in loaded.weights(g)
    reference = loaded.reference()
    assert reference["test.degraded.0.0"].shape == reference["test.logits"].shape


def test_verify_executes_every_erasure_position(parity_exported):
    coded, _, folder = parity_exported
    report = verify_plan(folder)
    assert report["passed"] and report["top1_agreement"] == 1.0
    degraded = report["degraded"]
    assert degraded["passed"] and len(degraded["positions"]) == 4 * 4
    assert degraded["min_top1_agreement"] == 1.0 and degraded["max_abs_diff"] < 1e-3
    # The coded network itself, recomputed: the reference file is what it answers.
    images, _ = (
        __import__("snnas.data", fromlist=["x"])
        .load_dataset("digits", input_size=8, input_channels=1)
        .eval_tensors("val")
    )
    from snnas.models.parity import fail_at_tensor

    with torch.no_grad():
        expected = coded(images, None, fail_at_tensor([(0, 2)], 4, len(images))).logits
    plan = load_plan(folder)
    rule = next(r for r in plan.parity["rules"] if (r["device"], r["from_point"]) == (0, 2))
    nets = {d: plan.net(d) for d in range(plan.world)}
    got = execute_degraded(plan, images, Erasure.from_json(rule), nets)
    assert torch.allclose(got, expected, atol=1e-4)


def test_a_wrong_rule_is_refused_at_load_and_disagrees_when_run(parity_exported, tmp_path, digits):
    from snnas.plan._verify import compare_logits, passed

    _, _, folder = parity_exported
    broken = tmp_path / "plan"
    shutil.copytree(folder, broken)
    data = json.loads((broken / "plan.json").read_text())
    for rule in data["parity"]["rules"]:
        if rule["device"] == 0:  # impute device 0's payloads instead of the parity stand-ins
            for s in rule["standins"]:
                if s["point"] >= 0 and s["dst"] < 4:
                    s["by"], s["bytes"] = None, 0
            rule["bytes"] = sum(s["bytes"] for s in rule["standins"])
    (broken / "plan.json").write_text(json.dumps(data))
    # The degraded rules follow from the space and policy: the edit is refused at load ...
    with pytest.raises(PlanError, match=r"plan\.json: parity\.rules\[0\]\.standins\[0\]\.by "
                       r"is null, its space and policy give 4$"):  # fmt: skip
        load_plan(broken)
    # ... and, executed anyway, the edited rules disagree with the coded network exactly at
    # device 0's positions.
    plan = load_plan(folder)
    reference = plan.reference()
    images, labels = digits.eval_tensors("val")
    nets = {d: plan.net(d) for d in range(plan.world)}
    results = {}
    for rule in data["parity"]["rules"]:
        j, p = rule["device"], rule["from_point"]
        logits = execute_degraded(plan, images, Erasure.from_json(rule), nets)
        results[(j, p)] = passed(compare_logits(logits, reference[f"val.degraded.{j}.{p}"], labels))
    bad = [k for k, ok in results.items() if not ok]
    assert bad and all(j == 0 for j, _ in bad)


@pytest.mark.parametrize(("r", "encoder"), [(2, "mirror"), (1, "sum")])
def test_other_encoders_and_two_parity_devices(tmp_path, digits, r, encoder):
    coded = coded_network(parity_space(r), encoder, seed=r)
    folder = tmp_path / "run" / "plan"
    plan = export_plan(coded.space, coded.base, digits, PROFILES["rpi3b+"], ACCURACY, folder,
                       coded=coded)  # fmt: skip
    assert [e["role"] for e in plan["devices"]].count("parity") == r
    if r == 2:  # device 1 has a shadow: its stand-ins are sent, not imputed
        rule = next(x for x in plan["parity"]["rules"] if (x["device"], x["from_point"]) == (1, 0))
        assert rule["standins"] and all(s["by"] == 5 for s in rule["standins"])
    report = verify_plan(folder, split="test")
    assert report["passed"], report["degraded"]["positions"]
    assert report["degraded"]["min_top1_agreement"] == 1.0


def test_a_parity_plan_with_a_missing_parity_device_is_refused(parity_exported, tmp_path):
    _, _, folder = parity_exported
    broken = tmp_path / "plan"
    shutil.copytree(folder, broken)
    data = json.loads((broken / "plan.json").read_text())
    data["devices"].pop()
    (broken / "plan.json").write_text(json.dumps(data))
    with pytest.raises(PlanError, match=r"devices must be listed once each, 0\.\.4"):
        load_plan(broken)


def test_a_parity_stem_apart_from_the_base_stem_verifies(tmp_path, digits):
    # After `snnas parity train --joint-epochs`, the parity stem and the base stem have trained
    # apart. With device 0 lost before the image, only the parity device's stem output
    # exists: the plan sends it to the data devices (its rule's stem stand-in), so the
    # reference for that position must start the data devices' streams from it too.
    coded = coded_network(parity_space(1), seed=5)
    with torch.no_grad():
        for p in coded.parity.stem.parameters():
            p.add_(0.3 * torch.randn_like(p))
    folder = tmp_path / "run" / "plan"
    export_plan(coded.space, coded.base, digits, PROFILES["rpi3b+"], ACCURACY, folder,
                coded=coded)  # fmt: skip
    report = verify_plan(folder)
    positions = {(x["device"], x["from_point"]): x for x in report["degraded"]["positions"]}
    assert positions[(0, 0)]["passed"] and positions[(0, 0)]["max_abs_diff"] < 1e-4
    assert report["passed"]


def test_a_plan_after_a_joint_phase_verifies(tmp_path, digits):
    # The same through `snnas parity train --joint-epochs`: the joint phase trains both
    # stems; the plan of the trained coded network passes at every erasure position.
    from snnas._run import RunDir
    from snnas.train._parity import ParityTrainConfig, train_parity
    from snnas.train._trainer import Accelerator

    coded = coded_network(parity_space(1), seed=7)
    config = ParityTrainConfig(epochs=1, joint_epochs=1, batch_size=128, joint_lr=1e-2)
    train_parity(coded, digits, config, RunDir(tmp_path / "parity"),
                 accel=Accelerator(torch.device("cpu")))  # fmt: skip
    coded = coded.cpu().eval()
    base_stem = coded.base.stem.state_dict()
    assert any(not torch.equal(v, coded.parity.stem.state_dict()[k]) for k, v in base_stem.items())
    folder = tmp_path / "run" / "plan"
    export_plan(coded.space, coded.base, digits, PROFILES["rpi3b+"], ACCURACY, folder,
                coded=coded)  # fmt: skip
    report = verify_plan(folder)
    assert report["passed"], [x for x in report["degraded"]["positions"] if not x["passed"]]
