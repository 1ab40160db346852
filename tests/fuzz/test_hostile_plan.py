"""A hostile pass over plan loading (issue 14, section 2): plans edited by hand, checksums
recomputed where a field needs one, each refused by ``snnas plan verify`` before anything
runs, in one line naming the file, the device and the field (:func:`tests.fuzz._cli.invoke`
checks the one line, the exit code and that nothing is written outside the runs folder).

The plans are exported from random frozen networks (``tests/plan/conftest.py``): one on the
plan tests' alpha = 2 space, one with a parity device.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from snnas.cost import PROFILES
from snnas.plan import export_plan
from tests.fuzz._cli import invoke
from tests.plan.conftest import (
    ACCURACY,
    coded_network,
    parity_space,
    random_frozen,
    talking_policy,
)


@pytest.fixture(scope="module")
def plain_plan(tmp_path_factory, digits) -> Path:
    from snnas.space import space_from_text
    from tests.plan.conftest import PLAN_TOML

    space = space_from_text(PLAN_TOML)
    policy = talking_policy(space)
    folder = tmp_path_factory.mktemp("hostile") / "plan"
    model = random_frozen(space, policy)
    export_plan(space, model, digits, PROFILES["rpi3b+"], ACCURACY, folder)
    return folder


@pytest.fixture(scope="module")
def parity_plan(tmp_path_factory, digits) -> Path:
    coded = coded_network(parity_space(1))
    folder = tmp_path_factory.mktemp("hostile") / "parity"
    export_plan(coded.space, coded.base, digits, PROFILES["rpi3b+"], ACCURACY, folder,
                coded=coded)  # fmt: skip
    return folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rehash(folder: Path, data: dict, name: str) -> None:
    """Record ``name``'s new checksum and size (a tamperer who covers their tracks)."""
    path = folder / name
    for entry in [e["weights"] for e in data["devices"] if e["weights"]]:
        if entry["file"] == name:
            entry["sha256"], entry["bytes"] = _sha(path), path.stat().st_size


def _transfer(data: dict, device: int) -> tuple[dict, dict]:
    """``device``'s first transfer send and the receive that matches it."""
    send = next(s for s in data["devices"][device]["sends"] if s["kind"] == "transfer")
    receive = next(
        r for r in data["devices"][send["to"]]["receives"]
        if r["from"] == device and r["point"] == send["point"]
    )  # fmt: skip
    return send, receive


def _both(key: str, value: object) -> Callable[[Path, dict], None]:
    """Set ``key`` on device 1's first transfer and on its receive (so they still match)."""

    def edit(folder: Path, data: dict) -> None:
        send, receive = _transfer(data, 1)
        send[key] = receive[key] = value

    return edit


def _field(path: str, value: object) -> Callable[[Path, dict], None]:
    def edit(folder: Path, data: dict) -> None:
        keys = path.split("/")
        target = data
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = keys[-1]
        target[int(last) if isinstance(target, list) else last] = value

    return edit


def _receive_early(folder: Path, data: dict) -> None:
    """Device 1's payload added before the block it is sent after."""
    _, receive = _transfer(data, 1)
    receive["after_block"] = receive["sent_after_block"] - 1


def _send_late(folder: Path, data: dict) -> None:
    """Device 1's send (and the receive's record of it) moved after the receive's block."""
    send, receive = _transfer(data, 1)
    send["after_block"] = receive["sent_after_block"] = receive["after_block"] + 1


def _send_early(folder: Path, data: dict) -> None:
    """Device 1's send (and the receive's record of it) one block earlier than its point."""
    send, receive = _transfer(data, 1)
    send["after_block"] = receive["sent_after_block"] = send["after_block"] - 1


def _redirect(folder: Path, data: dict) -> None:
    """Device 1's first transfer sent to another device than the permutation says (the
    receive moved along, so the wiring itself is consistent)."""
    send, receive = _transfer(data, 1)
    old = send["to"]
    new = next(
        d
        for d in range(4)
        if d not in (1, old)
        and not any(
            r["from"] == 1 and r["point"] == send["point"] for r in data["devices"][d]["receives"]
        )
    )
    data["devices"][old]["receives"].remove(receive)
    data["devices"][new]["receives"].append(receive)
    send["to"] = new


def _wire_dtype(folder: Path, data: dict) -> None:
    """Device 1's first transfer in the other dtype, bytes recomputed, on both ends."""
    send, receive = _transfer(data, 1)
    other = "float32" if send["wire_dtype"] == "float16" else "float16"
    nbytes = send["bytes"] * (2 if other == "float32" else 1) // (1 if other == "float32" else 2)
    for x in (send, receive):
        x["wire_dtype"], x["bytes"] = other, nbytes


def _wide(folder: Path, data: dict) -> None:
    """Device 1's first transfer claims more channels than the stream has, consistently."""
    send, receive = _transfer(data, 1)
    width = data["schedule"]["points"][send["point"]]["channels"]
    for x in (send, receive):
        factor = x["bytes"] // x["shape"][0]
        x["channels"], x["shape"][0], x["bytes"] = [0, width + 4], width + 4, factor * (width + 4)


def _shape(folder: Path, data: dict) -> None:
    """Device 1's first transfer with a spatial size that is not the point's."""
    send, receive = _transfer(data, 1)
    for x in (send, receive):
        x["shape"] = [x["shape"][0], x["shape"][1] * 2, x["shape"][2] * 2]
        x["bytes"] *= 4


def _weights(change: Callable[[dict], object]) -> Callable[[Path, dict], None]:
    def edit(folder: Path, data: dict) -> None:
        from safetensors.torch import load_file, save_file

        path = folder / "device1.safetensors"
        tensors = load_file(str(path))
        change(tensors)
        save_file(tensors, str(path))
        _rehash(folder, data, "device1.safetensors")

    return edit


def _transpose(tensors: dict) -> None:
    name = next(k for k in sorted(tensors) if k.endswith("conv1.weight"))
    tensors[name] = tensors[name].transpose(0, 1).contiguous()


def _huge_header(folder: Path, data: dict) -> None:
    """A header that claims a tensor of 2**40 elements in a file of a few bytes."""
    header = json.dumps(
        {
            "blocks.0.conv1.weight": {
                "dtype": "F32",
                "shape": [1 << 20, 1 << 20],
                "data_offsets": [0, 1 << 42],
            }
        }
    ).encode()
    path = folder / "device1.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    _rehash(folder, data, "device1.safetensors")


def _space_name(name: str) -> Callable[[Path, dict], None]:
    return _field("space/name", name)


PF = r"plan\.json: "
PLAIN_CASES: list[tuple[str, Callable[[Path, dict], None], str]] = [
    # block indices against the architecture (a block index of 1e9 hung verify and run)
    (
        "block-1e9",
        _field("devices/1/blocks/0", 10**9),
        PF + r"device 1: blocks\[0\] is 1000000000, outside the network's blocks 0\.\.8",
    ),
    (
        "skipped-1e9",
        _field("devices/0/skipped_blocks", [10**9]),
        PF + r"device 0: skipped_blocks\[0\] is 1000000000",
    ),
    (
        "send-after-1e9",
        _both("after_block", 10**9),
        PF + r"device 1: sends\[\d\]\.after_block is 1000000000",
    ),
    (
        "receive-after-1e9",
        _field("devices/2/receives/0/after_block", 10**9),
        PF + r"device 2: receives\[0\]\.after_block is 1000000000",
    ),
    (
        "send-point-99",
        _both("point", 99),
        PF + r"device 1: sends\[\d\]\.point is 99, the plan has 4 points",
    ),
    (
        "schedule-blocks",
        _field("schedule/blocks", 13),
        PF + r"schedule\.blocks is 13, the network has 9",
    ),
    # every receive and send against the schedule
    (
        "receive-before-send",
        _receive_early,
        PF + r"device \d: receives\[\d\]\.after_block is \d+: scheduled before its sender's send",
    ),
    (
        "send-after-receive",
        _send_late,
        PF + r"device \d: receives\[\d\]\.after_block is \d+: scheduled before its sender's send",
    ),
    (
        "send-at-other-block",
        _send_early,
        PF + r"device 1: sends\[\d\]\.after_block is \d+, its space and policy give \d+",
    ),
    (
        "receive-record-differs",
        _both("after_block", 0),
        PF + r"device \d: receives\[\d\]\.sent_after_block is \d+, device 1 sends after block 0",
    ),
    (
        "channels-beyond-stream",
        _wide,
        PF + r"device 1: sends\[\d\]\.channels\[1\] is \d+, its space",
    ),
    ("shape-not-size", _shape, PF + r"device 1: sends\[\d\]\.shape\[1\] is \d+, its space"),
    # the sends against the plan's own policy
    (
        "wire-dtype",
        _wire_dtype,
        PF + r"device 1: sends\[\d\]\.wire_dtype is \"float\d\d\", its space and policy give",
    ),
    (
        "destination",
        _redirect,
        PF + r"device 1: sends\[\d\]\.to is \d, its space and policy give \d",
    ),
    (
        "point-send-block",
        _field("schedule/points/0/send_block", 2),
        PF + r"network or schedule differs",
    ),
    # every derived figure
    (
        "totals-bytes",
        _field("totals/bytes_per_image", 8),
        PF + r"totals\.bytes_per_image is 8, its space and policy give \d+",
    ),
    ("totals-link", _field("totals/links/0/bytes", 8), PF + r"totals\.links\[0\]\.bytes is 8"),
    ("totals-flops", _field("totals/flops", 8), PF + r"totals\.flops is 8"),
    ("totals-stem", _field("totals/stem_bytes", 8), PF + r"totals\.stem_bytes is 8"),
    ("totals-ratio", _field("totals/live_ratio", 0.5), PF + r"totals\.live_ratio is 0\.5"),
    ("device-flops", _field("devices/2/flops", 8), PF + r"device 2: flops is 8"),
    ("device-params", _field("devices/2/params", 8), PF + r"device 2: params is 8"),
    (
        "prediction",
        _field("prediction/latency_ms", 1.0),
        PF + r"prediction\.latency_ms is 1\.0, its space and policy give",
    ),
    ("prediction-speedup", _field("prediction/speedup", 9.0), PF + r"prediction\.speedup is 9\.0"),
    ("output-shape", _field("output/shape", [1, 11]), PF + r"output\.shape\[1\] is 11"),
    # every weights file against the shapes its device needs
    (
        "weights-transposed",
        _weights(_transpose),
        r"device1\.safetensors: blocks\.\d+\.conv1\.weight is F32 \(\d+, \d+, 1, 1\), "
        r"expected float32",
    ),
    (
        "weights-extra",
        _weights(lambda t: t.update(evil=torch.zeros(1))),
        r"device1\.safetensors: device 1's weights do not match the blocks "
        r"\(missing \[\], unexpected \['evil'\]\)",
    ),
    (
        "weights-nan",
        _weights(lambda t: t[sorted(t)[0]].view(-1).__setitem__(0, float("nan"))),
        r"device1\.safetensors: \S+ holds NaN or infinite values",
    ),
    (
        "weights-inf",
        _weights(lambda t: t[sorted(t)[0]].view(-1).__setitem__(0, float("inf"))),
        r"device1\.safetensors: \S+ holds NaN or infinite values",
    ),
    (
        "weights-float64",
        _weights(lambda t: t.update({sorted(t)[0]: t[sorted(t)[0]].double()})),
        r"device1\.safetensors: \S+ is F64 .*expected float32",
    ),
    (
        "weights-huge-header",
        _huge_header,
        r"device1\.safetensors: tensor 'blocks\.0\.conv1\.weight': its header entry "
        r"claims sizes the file \(\d+ bytes\) does not hold",
    ),
    (
        "weights-size",
        _field("devices/1/weights/bytes", 1),
        r"device1\.safetensors: device 1's weights holds \d+ bytes, the plan says 1",
    ),
    # the space name
    (
        "space-name-control",
        _space_name("tiny\x1b[2J"),
        PF + r"space\.name: expected a name of letters",
    ),
    ("space-name-newline", _space_name("ti\nny"), PF + r"space\.name: expected a name of letters"),
    ("space-name-slash", _space_name("../../x"), PF + r"space\.name: expected a name of letters"),
    (
        "space-name-other",
        _space_name("other"),
        PF + r"space\.name is 'other', its space file names 'tiny'",
    ),
]

PARITY_CASES: list[tuple[str, Callable[[Path, dict], None], str]] = [
    ("encoding-bytes", _field("parity/encoding_bytes", 8), PF + r"parity\.encoding_bytes is 8"),
    (
        "rule-answer",
        _field("parity/rules/1/answer_by", 0),
        PF + r"parity\.rules\[1\]\.answer_by is 0, its space and policy give 4",
    ),
    (
        "encoder-channels",
        _field("devices/4/encoders/0/channels", 1),
        PF + r"device 4: encoders\[0\]\.channels is 1",
    ),
    (
        "parity-block-1e9",
        _field("devices/4/blocks/0", 10**9),
        PF + r"device 4: blocks\[0\] is 1000000000",
    ),
    (
        "answers-0",
        _field("parity/answers/0", False),
        PF + r"parity\.answers\[0\] is false: the parity device always answers for device 0",
    ),
    (
        "answers-1",
        _field("parity/answers/1", False),
        PF + r"parity\.rules\[\d+\]\.answer_by is 4, its space and policy give 0",
    ),
]


def _run(folder: Path, tmp_path: Path, edit: Callable[[Path, dict], None], needle: str) -> None:
    runs = tmp_path / "runs"
    target = runs / "r" / "plan"
    shutil.copytree(folder, target)
    data = json.loads((target / "plan.json").read_text())
    edit(target, data)
    (target / "plan.json").write_text(json.dumps(data))
    outcome = invoke(tmp_path, ["plan", "verify", str(target)], runs=runs)
    assert outcome.code == 1, outcome
    assert outcome.error.startswith(str(target)), outcome.error
    import re

    assert re.search(needle, outcome.error), (needle, outcome.error)


@pytest.mark.parametrize(("edit", "needle"), [c[1:] for c in PLAIN_CASES],
                         ids=[c[0] for c in PLAIN_CASES])  # fmt: skip
def test_a_hand_edited_plan_is_refused_at_load(plain_plan, tmp_path, edit, needle):
    _run(plain_plan, tmp_path, edit, needle)


@pytest.mark.parametrize(("edit", "needle"), [c[1:] for c in PARITY_CASES],
                         ids=[c[0] for c in PARITY_CASES])  # fmt: skip
def test_a_hand_edited_parity_plan_is_refused_at_load(parity_plan, tmp_path, edit, needle):
    _run(parity_plan, tmp_path, edit, needle)


def test_the_unedited_plans_load(plain_plan, parity_plan):
    from snnas.plan import load_plan

    assert load_plan(plain_plan).world == 4
    assert load_plan(parity_plan).world == 5


def _source_elsewhere(root: Path, data: dict, checkpoint: str = "finetune/best.pt") -> Path:
    """Point the plan's ``source`` at a folder outside the runs folder holding a file whose
    checksum matches (not a checkpoint: whoever reads it fails)."""
    elsewhere = root / "elsewhere"
    (elsewhere / "finetune").mkdir(parents=True)
    (elsewhere / "finetune" / "best.pt").write_bytes(b"not a checkpoint")
    data["source"] = {"run": str(elsewhere), "checkpoint": checkpoint,
                      "sha256": _sha(elsewhere / "finetune" / "best.pt")}  # fmt: skip
    return elsewhere


def test_verify_never_reads_the_plans_source(plain_plan, tmp_path):
    runs = tmp_path / "runs"
    target = runs / "r" / "plan"
    shutil.copytree(plain_plan, target)
    data = json.loads((target / "plan.json").read_text())
    _source_elsewhere(tmp_path, data)
    (target / "plan.json").write_text(json.dumps(data))
    outcome = invoke(tmp_path, ["plan", "verify", str(target), "--json"], runs=runs)
    assert outcome.code == 0, outcome
    report = json.loads(outcome.stdout)
    assert report["compared_with"] == str(target / "reference.safetensors")
    assert report["passed"] and report["top1_agreement"] == 1.0


@pytest.mark.parametrize(
    ("checkpoint", "needle"),
    [
        ("finetune/best.pt", r"elsewhere/finetune/best\.pt: corrupt checkpoint"),
        ("../../etc/passwd", r"plan\.json: source\.checkpoint: expected a path inside the run"),
        ("/etc/passwd", r"plan\.json: source\.checkpoint: expected a path inside the run"),
    ],
)
def test_a_named_reference_run_is_read_only_where_the_plan_says(
    plain_plan, tmp_path, checkpoint, needle
):
    import re

    runs = tmp_path / "runs"
    target = runs / "r" / "plan"
    shutil.copytree(plain_plan, target)
    data = json.loads((target / "plan.json").read_text())
    elsewhere = _source_elsewhere(tmp_path, data, checkpoint)
    (target / "plan.json").write_text(json.dumps(data))
    args = ["plan", "verify", str(target), "--reference-run", str(elsewhere)]
    outcome = invoke(tmp_path, args, runs=runs)
    assert outcome.code == 1 and re.search(needle, outcome.error), outcome


@pytest.mark.parametrize(
    ("which", "needle"),
    [
        ("plain_plan", r"plan\.json: --onnx: device 0 has no ONNX segments \(export the plan"),
        ("parity_plan", r"plan\.json: --onnx: a plan with parity devices has no ONNX segments"),
    ],
)
def test_verify_onnx_without_segments_is_one_line(request, tmp_path, which, needle):
    import re

    runs = tmp_path / "runs"
    target = runs / "r" / "plan"
    shutil.copytree(request.getfixturevalue(which), target)
    outcome = invoke(tmp_path, ["plan", "verify", str(target), "--onnx"], runs=runs)
    assert outcome.code == 1 and re.search(needle, outcome.error), outcome
