import json
import shutil
from pathlib import Path

import pytest
import torch

from snnas.cost import PROFILES, communication, liveness
from snnas.errors import PlanError
from snnas.plan import execute_plan, load_plan, plan_schema, validate_plan, verify_plan
from tests.plan.conftest import ACCURACY, random_frozen


def _copy(folder, tmp_path):
    target = tmp_path / "plan"
    shutil.copytree(folder, target)
    return target


def test_plan_round_trip_equals_the_frozen_network(exported, digits):
    _space, model, _plan, folder = exported
    loaded = load_plan(folder)
    images, _ = digits.eval_tensors("val")
    with torch.no_grad():
        expected = model(images)
    got = execute_plan(loaded, images)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert float((got - expected).abs().max()) < 1e-4
    # One image at a time gives the same answers (eval mode: running statistics only).
    # (Float16 on the wire can round a last-bit difference of the convolutions either way.)
    one = torch.cat([execute_plan(loaded, images[i : i + 1]) for i in range(16)])
    assert torch.equal(one.argmax(1), got[:16].argmax(1))
    assert float((one - got[:16]).abs().max()) < 1e-4


def test_plan_json_follows_the_schema_and_counts_live_bytes(exported):
    space, model, plan, folder = exported
    data = json.loads((folder / "plan.json").read_text())
    validate_plan(data, "plan.json")
    assert data == json.loads(json.dumps(plan))
    comm = communication(space, model.policy)
    totals = data["totals"]
    assert totals["transfer_bytes"] == comm.live_policy_bytes
    assert totals["stem_bytes"] == comm.live_stem_bytes
    assert totals["bytes_per_image"] == sum(s["bytes"] for d in data["devices"] for s in d["sends"])
    assert sum(link["bytes"] for link in totals["links"]) == totals["bytes_per_image"]
    live = liveness(space, model.policy)
    for d, entry in enumerate(data["devices"]):
        assert entry["blocks"] == list(live.live_blocks[d])
        assert entry["skipped_blocks"] == list(live.skipped_blocks(d))
    assert data["accuracy"]["val"] == ACCURACY["val_acc"]
    assert data["prediction"]["profile"] == "rpi3b+"


def test_each_device_file_holds_only_its_own_folded_weights(exported):
    from safetensors.torch import load_file

    _space, model, plan, folder = exported
    sizes = []
    for entry in plan["devices"]:
        tensors = load_file(str(folder / entry["weights"]["file"]))
        names = set(tensors)
        assert ("fc.weight" in names) == (entry["device"] == 0)
        assert not any("bn" in n for n in names)  # batch norm is folded
        blocks = {int(n.split(".")[1]) for n in names if n.startswith("blocks.")}
        assert blocks == set(entry["blocks"])
        assert entry["params"] == sum(t.numel() for t in tensors.values())
        sizes.append(entry["params"])
    assert sum(sizes) < sum(p.numel() for p in model.parameters())


def test_onnx_segments_match_the_torch_segments(exported):
    import onnx

    _, _, plan, folder = exported
    segments = [s for d in plan["devices"] for s in d["onnx"]]
    assert len(segments) > len(plan["devices"])
    for seg in segments:
        # float16 payloads may round a last-bit difference either way: one float16 step at
        # the payloads' magnitudes (below 4) is at most 2**-8.
        assert seg["max_abs_diff"] < 2**-8
        graph = onnx.load(str(folder / seg["file"]))
        onnx.checker.check_model(graph)
        assert [i.name for i in graph.graph.input] == seg["inputs"]
        assert [o.name for o in graph.graph.output] == seg["outputs"]
    heads = [s for s in plan["devices"][0]["onnx"] if "logits" in s["outputs"]]
    assert len(heads) == 1 and heads[0]["inputs"][0] in ("stream_in", "image")


def test_verify_passes(exported):
    report = verify_plan(exported[3])
    assert report["passed"] and report["top1_agreement"] == 1.0
    assert report["max_abs_diff"] < 1e-4
    assert report["images"] == 180


def test_a_tampered_weight_file_is_refused(exported, tmp_path):
    folder = _copy(exported[3], tmp_path)
    path = folder / "device1.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(PlanError, match=r"device1.safetensors: checksum mismatch"):
        load_plan(folder)


@pytest.mark.parametrize("name", ["device2.safetensors", "space.toml", "reference.safetensors"])
def test_a_missing_file_is_refused(exported, tmp_path, name):
    folder = _copy(exported[3], tmp_path)
    (folder / name).unlink()
    with pytest.raises(PlanError, match=name.replace(".", r"\.")):
        load_plan(folder)


def test_schema_violations_and_newer_versions_are_refused(exported, tmp_path):
    folder = _copy(exported[3], tmp_path)
    data = json.loads((folder / "plan.json").read_text())
    data["devices"][1]["sends"][0]["bytes"] = -4
    (folder / "plan.json").write_text(json.dumps(data))
    with pytest.raises(PlanError, match=r"plan\.json: devices/1/sends/0/bytes: does not follow"):
        load_plan(folder)
    data["schema_version"] = 2
    (folder / "plan.json").write_text(json.dumps(data))
    with pytest.raises(PlanError, match=r"schema_version 2 comes from a newer snnas"):
        load_plan(folder)
    (folder / "plan.json").write_text("{not json")
    with pytest.raises(PlanError, match=r"plan\.json:1: not valid JSON"):
        load_plan(folder)


def test_inconsistent_wiring_is_refused(exported, tmp_path):
    folder = _copy(exported[3], tmp_path)
    data = json.loads((folder / "plan.json").read_text())
    receive = data["devices"][1]["receives"][-1]
    receive["wire_dtype"] = "float16" if receive["wire_dtype"] == "float32" else "float32"
    (folder / "plan.json").write_text(json.dumps(data))
    with pytest.raises(PlanError, match="has no matching send"):
        load_plan(folder)


def test_a_wrong_space_file_is_refused(exported, tmp_path):
    folder = _copy(exported[3], tmp_path)
    text = (folder / "space.toml").read_text()
    (folder / "space.toml").write_text(text.replace("alpha = 2", "alpha = 2\noverlap = 2"))
    with pytest.raises(PlanError, match=r"space hash .* differs from the plan's"):
        load_plan(folder)


def test_a_dead_device_gets_no_weights_and_the_plan_still_answers(plan_space, digits, tmp_path):
    from snnas.plan import export_plan

    identity = (0, 1, 2, 3)
    policy = {}
    for p in range(plan_space.num_points):
        # Devices 1 and 0 talk; devices 2 and 3 never send anything.
        policy |= {f"t{p}.perm": (1, 0, 2, 3), f"t{p}.sparsity": 75.0, f"t{p}.dtype": "float16"}
    policy = plan_space.validate(policy)
    assert policy["t0.perm"] != identity
    model = random_frozen(plan_space, policy, seed=1)
    folder = tmp_path / "plan"
    plan = export_plan(plan_space, model, digits, PROFILES["a57x4"], ACCURACY, folder)
    assert [e["weights"] is None for e in plan["devices"]] == [False, False, True, True]
    assert plan["devices"][2]["blocks"] == [] and plan["devices"][2]["receives"] == []
    images, _ = digits.eval_tensors("val")
    with torch.no_grad():
        expected = model(images)
    got = execute_plan(load_plan(folder), images)
    assert float((got - expected).abs().max()) < 1e-4


def test_the_schema_is_valid_json_schema():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(plan_schema())


def test_verify_fails_on_wrong_weights(exported, tmp_path):
    # Weights that load and fit but are not the frozen network's: refused with exit 1.
    from click.testing import CliRunner
    from safetensors.torch import load_file, save_file

    from snnas.cli import cli
    from snnas.plan import sha256_file

    folder = _copy(exported[3], tmp_path)
    path = folder / "device2.safetensors"
    tensors = load_file(str(path))
    tensors = {k: v * 1.5 if k.endswith("conv3.weight") else v for k, v in tensors.items()}
    save_file(tensors, str(path))
    data = json.loads((folder / "plan.json").read_text())
    entry = data["devices"][2]["weights"]
    entry["sha256"], entry["bytes"] = sha256_file(path), path.stat().st_size
    (folder / "plan.json").write_text(json.dumps(data))
    result = CliRunner().invoke(cli, ["plan", "verify", str(folder)])
    assert result.exit_code == 1
    assert "disagrees with the frozen network" in result.output


def test_compare_logits_tolerates_numerical_ties_only():
    from snnas.plan import compare_logits

    reference = torch.tensor([[1.0, 0.9999], [3.0, 0.0]])
    labels = torch.tensor([0, 0])
    tie = compare_logits(torch.tensor([[0.9999, 1.0], [3.0, 0.0]]), reference, labels)
    assert tie["top1_agreement"] == 0.5 and tie["disagreements_beyond_tolerance"] == 0
    wrong = compare_logits(torch.tensor([[1.0, 0.9999], [0.0, 3.0]]), reference, labels)
    assert wrong["disagreements_beyond_tolerance"] == 1


def test_duplicate_keys_and_nan_in_plan_json_are_refused(exported, tmp_path):
    folder = _copy(exported[3], tmp_path)
    text = (folder / "plan.json").read_text()
    (folder / "plan.json").write_text(text.replace('"format"', '"schema_version": 1, "format"', 1))
    with pytest.raises(PlanError, match="given twice"):
        load_plan(folder)
    data = json.loads(text)
    data["totals"]["ratio"] = float("nan")
    (folder / "plan.json").write_text(json.dumps(data))
    with pytest.raises(PlanError, match="NaN"):
        load_plan(folder)


def test_a_reexport_crashing_at_any_step_leaves_a_whole_plan(plan_space, digits, tmp_path,
                                                             monkeypatch):  # fmt: skip
    import os

    import snnas.plan._export as export_module
    from snnas.plan import export_plan
    from tests.plan.conftest import talking_policy

    model = random_frozen(plan_space, talking_policy(plan_space))
    out = tmp_path / "plan"
    export_plan(plan_space, model, digits, PROFILES["rpi3b+"], ACCURACY, out)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    real_replace, real_rmtree = os.replace, export_module.shutil.rmtree
    # A crash where the new plan would be renamed to `out` ...
    monkeypatch.setattr(export_module.os, "replace",
                        lambda a, b: crash() if Path(b) == out else real_replace(a, b))  # fmt: skip
    with pytest.raises(KeyboardInterrupt):  # (the exchange needs no rename onto `out`)
        export_plan(plan_space, model, digits, PROFILES["a57x4"], ACCURACY, out)
        crash()
    assert load_plan(out).model.prediction.profile in ("rpi3b+", "a57x4")
    monkeypatch.setattr(export_module.os, "replace", real_replace)
    # ... and right after the swap, before the old plan is removed.
    monkeypatch.setattr(export_module.shutil, "rmtree", crash)
    with pytest.raises(KeyboardInterrupt):
        export_plan(plan_space, model, digits, PROFILES["rpi3b+"], ACCURACY, out)
    assert load_plan(out).model.prediction.profile == "rpi3b+"
    monkeypatch.setattr(export_module.shutil, "rmtree", real_rmtree)


def test_verify_onnx_runs_the_whole_plan_in_onnxruntime(exported):
    from click.testing import CliRunner

    from snnas.cli import cli
    from snnas.plan._onnx import verify_onnx

    folder = exported[3]
    report = verify_onnx(load_plan(folder))
    assert report["segments"] == sum(len(e["onnx"]) for e in exported[2]["devices"])
    assert report["passed"] and report["top1_agreement"] == 1.0 and report["images"] == 180
    assert report["max_abs_diff"] < 1e-4
    result = CliRunner().invoke(cli, ["plan", "verify", str(folder), "--onnx"])
    assert result.exit_code == 0, result.output
    assert f"onnxruntime, {report['segments']} segments: top-1 agreement 1.0000" in result.output


def test_verify_onnx_fails_on_a_wrong_graph(exported, tmp_path):
    # A graph that loads and fits but computes something else (its checksum recomputed).
    import onnx
    from click.testing import CliRunner
    from onnx import numpy_helper

    from snnas.cli import cli
    from snnas.plan import sha256_file

    folder = _copy(exported[3], tmp_path)
    data = json.loads((folder / "plan.json").read_text())
    seg = data["devices"][2]["onnx"][0]
    graph = onnx.load(str(folder / seg["file"]))
    weight = next(t for t in graph.graph.initializer if len(t.dims) == 4)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))
    onnx.save(graph, str(folder / seg["file"]))
    seg["sha256"], seg["bytes"] = (
        sha256_file(folder / seg["file"]),
        (folder / seg["file"]).stat().st_size,
    )
    (folder / "plan.json").write_text(json.dumps(data))
    plain = CliRunner().invoke(cli, ["plan", "verify", str(folder)])
    assert plain.exit_code == 0, plain.output  # torch runs the weights files
    result = CliRunner().invoke(cli, ["plan", "verify", str(folder), "--onnx"])
    assert result.exit_code == 1
    assert "the plan's ONNX segments disagree with the frozen network" in result.output


def test_export_fails_when_a_segment_differs_from_torch(plan_space, digits, tmp_path,
                                                        monkeypatch):  # fmt: skip
    import copy

    import snnas.plan._onnx as onnx_module
    from snnas.plan import export_plan
    from tests.plan.conftest import talking_policy

    real = onnx_module._to_onnx

    def skewed(module, inputs):  # the graph of a slightly different network
        other = copy.deepcopy(module)
        with torch.no_grad():
            for p in other.parameters():
                p.mul_(1.05)
        return real(other, inputs)

    monkeypatch.setattr(onnx_module, "_to_onnx", skewed)
    model = random_frozen(plan_space, talking_policy(plan_space))
    out = tmp_path / "plan"
    with pytest.raises(PlanError, match=r"^device 0's ONNX segment 0: output \w+ differs from "
                       r"the torch segment by [\d.e-]+, beyond the tolerance [\d.e-]+ \(2\^-8 x "
                       r"\(1 \+ max \|output\|\)\)$"):  # fmt: skip
        export_plan(plan_space, model, digits, PROFILES["rpi3b+"], ACCURACY, out, onnx=True)
    assert not out.exists()
