"""Loading a plan folder safely, and ``snnas plan verify``.

Loading checks, in this order, and refuses with one line naming the file and the reason: the
folder and ``plan.json`` exist and parse; the schema version is one this snnas reads; the
JSON Schema; the space file's hash and the plan's network and schedule against it; every
send has its receive; every file named by the plan is a plain file inside the folder whose
SHA-256 matches; weights files hold exactly the tensors their device needs, in the right
shapes. Weights are safetensors: loading one never runs code.

``verify_plan`` then executes the whole plan in one process, device by device, from the
plan's own files (a mailbox stands in for the network), and compares the answers with the
frozen network's on the validation split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from snnas.arch import Architecture
from snnas.engine import drive, run_device
from snnas.errors import PlanError, SnnasError, shorten
from snnas.plan._compare import RTOL, compare_logits, passed
from snnas.plan._erasure import execute_degraded, verify_degraded
from snnas.plan._export import PLAN_FILE, sha256_file
from snnas.plan._program import DeviceNet, Op, architecture_of, device_ops
from snnas.plan._schema import validate_plan
from snnas.plan._weights import expected_shapes

__all__ = [
    "RTOL",
    "LoadedPlan",
    "compare_logits",
    "drive",
    "execute_plan",
    "load_plan",
    "passed",
    "verify_plan",
]


@dataclass
class LoadedPlan:
    """A plan folder that passed every check of :func:`load_plan`."""

    folder: Path
    data: dict[str, Any]
    arch: Architecture
    ops: dict[int, list[Op]] = field(default_factory=dict)

    @property
    def groups(self) -> int:
        """Number of data devices."""
        return int(self.data["schedule"]["groups"])

    @property
    def world(self) -> int:
        """Number of devices, parity devices included (one process each)."""
        return len(self.data["devices"])

    @property
    def parity(self) -> dict[str, Any] | None:
        """The ``parity`` section (None: a plan without parity devices)."""
        section: dict[str, Any] | None = self.data.get("parity")
        return section

    def impute(self) -> dict[str, Tensor]:
        """The imputation constants (``impute{q}``: (G, w)) of a plan with parity devices."""
        assert self.parity is not None
        path = self.folder / self.parity["impute"]["file"]
        tensors = _read_safetensors(path)
        for p in self.data["schedule"]["points"]:
            t = tensors.get(f"impute{p['point']}")
            shape = (self.groups, p["channels"])
            if t is None or tuple(t.shape) != shape or t.dtype != torch.float32:
                raise PlanError(f"{path}: impute{p['point']} must be float32 {shape}")
            if not bool(torch.isfinite(t).all()):
                raise PlanError(f"{path}: impute{p['point']} holds NaN or infinite values")
        return tensors

    def device(self, d: int) -> dict[str, Any]:
        """Device ``d``'s entry."""
        entry: dict[str, Any] = self.data["devices"][d]
        return entry

    def weights(self, d: int) -> dict[str, Tensor]:
        """Device ``d``'s tensors (checked names and shapes); {} for an idle device."""
        entry = self.device(d)
        if entry["weights"] is None:
            return {}
        path = self.folder / entry["weights"]["file"]
        tensors = _read_safetensors(path)
        if entry["role"] == "parity":
            from snnas.plan._parity import parity_expected_shapes

            assert self.parity is not None
            scale = int(self.parity["bottleneck_scale"])
            expected = parity_expected_shapes(self.arch, entry, scale)
        else:
            expected = expected_shapes(self.arch, entry["blocks"], entry["head"])
        if set(tensors) != set(expected):
            missing = sorted(set(expected) - set(tensors))
            extra = sorted(set(tensors) - set(expected))
            raise PlanError(
                f"{path}: weights do not match device {d}'s blocks "
                f"(missing {missing[:3]}, unexpected {extra[:3]})"
            )
        for name, shape in expected.items():
            t = tensors[name]
            if tuple(t.shape) != shape or t.dtype != torch.float32:
                raise PlanError(
                    f"{path}: {name} is {t.dtype} {tuple(t.shape)}, expected float32 {shape}"
                )
            if not bool(torch.isfinite(t).all()):
                raise PlanError(f"{path}: {name} holds NaN or infinite values")
        return tensors

    def net(self, d: int) -> DeviceNet:
        """Device ``d``'s network from its weights file."""
        entry = self.device(d)
        parity = self.parity
        scale = int(parity["bottleneck_scale"]) if parity and entry["role"] == "parity" else 1
        return DeviceNet(self.arch, entry["blocks"], self.weights(d), scale)

    def reference(self) -> dict[str, Tensor]:
        """The frozen network's logits and the labels of the splits it was exported with
        (checked: one float32 logit row of finite numbers and one label per image, as many
        images as the plan says)."""
        path = self.folder / self.data["reference"]["file"]
        tensors = _read_safetensors(path)
        splits = self.data["reference"]["splits"]
        classes = int(self.data["network"]["num_classes"])
        kinds = ["logits", "labels"]
        if self.parity:  # the coded network's answers at every erasure position (j, p)
            points = len(self.data["schedule"]["points"])
            kinds += [f"degraded.{j}.{p}" for j in range(self.groups) for p in range(points)]
        expected = {f"{s}.{k}" for s in splits for k in kinds}
        if set(tensors) != expected:
            raise PlanError(
                f"{path}: reference holds {sorted(tensors)[:6]}, expected {sorted(expected)}"
            )
        for split, count in splits.items():
            logits, labels = tensors[f"{split}.logits"], tensors[f"{split}.labels"]
            if logits.dtype != torch.float32 or tuple(logits.shape) != (count, classes):
                raise PlanError(
                    f"{path}: reference {split}.logits is {logits.dtype} "
                    f"{tuple(logits.shape)}, expected float32 {(count, classes)}"
                )
            if labels.dtype != torch.int64 or tuple(labels.shape) != (count,):
                raise PlanError(
                    f"{path}: reference {split}.labels is {labels.dtype} "
                    f"{tuple(labels.shape)}, expected int64 {(count,)}"
                )
            for kind in ["logits", *kinds[2:]]:
                values = tensors[f"{split}.{kind}"]
                if values.dtype != torch.float32 or tuple(values.shape) != (count, classes):
                    raise PlanError(
                        f"{path}: reference {split}.{kind} is {values.dtype} "
                        f"{tuple(values.shape)}, expected float32 {(count, classes)}"
                    )
                if not bool(torch.isfinite(values).all()):
                    raise PlanError(
                        f"{path}: reference {split}.{kind} holds NaN or infinite values"
                    )
            if count and not 0 <= int(labels.min()) <= int(labels.max()) < classes:
                raise PlanError(f"{path}: reference {split}.labels outside 0..{classes - 1}")
        return tensors


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PlanError(f"{path}: not a readable safetensors file ({exc})") from None


def _read_json(path: Path) -> Any:
    """``plan.json``, strictly (no key twice, no NaN or Infinity, a regular file)."""
    from snnas.space._space import load_json

    if not path.exists() and not path.is_symlink():
        raise PlanError(f"{shorten(str(path))}: missing (not a plan folder?)")
    if path.is_symlink():  # like every file a plan names: a plain file inside the folder
        raise PlanError(f"{shorten(str(path))}: is a symbolic link, not a plain file of the plan")
    try:
        return load_json(path, "<plan>", "plan file")
    except SnnasError as exc:
        raise PlanError(str(exc)) from None


def _check_file(folder: Path, entry: Mapping[str, Any], what: str) -> None:
    path = folder / entry["file"]
    if path.is_symlink() or not path.is_file():
        raise PlanError(f"{path}: {what} is missing (or not a plain file)")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise PlanError(
            f"{path}: checksum mismatch (sha256 {digest[:16]}..., the plan says "
            f"{entry['sha256'][:16]}...): the file was changed after export"
        )


def _check_space(folder: Path, plan: Mapping[str, Any], arch: Architecture) -> None:
    from snnas.space import space_from_text
    from snnas.space._toml import read_user_file

    path = folder / plan["space"]["file"]
    if path.is_symlink() or not path.is_file():
        raise PlanError(f"{shorten(str(path))}: the plan's space file is missing")
    try:
        space = space_from_text(read_user_file(path, "<space>", "space file"), str(path))
    except SnnasError as exc:
        raise PlanError(f"{shorten(str(path))}: not a valid space ({exc})") from None
    if space.hash != plan["space"]["hash"]:
        raise PlanError(
            f"{path}: space hash {space.hash} differs from the plan's {plan['space']['hash']}"
        )
    same = (
        space.arch.network == arch.network
        and (space.groups, space.alpha, space.overlap) == (arch.groups, arch.alpha, arch.overlap)
        and [(p.block, p.aggregate_block) for p in space.arch.points]
        == [(p["send_block"], p["aggregate_block"]) for p in plan["schedule"]["points"]]
    )
    if not same:
        raise PlanError(
            f"{folder / PLAN_FILE}: network or schedule differs from its space file {path.name}"
        )
    if space.check(plan["policy"]) is not None:
        raise PlanError(f"{folder / PLAN_FILE}: policy: {space.check(plan['policy'])}")
    from snnas.cost import communication

    comm = communication(space, space.validate(plan["policy"]))
    totals = plan["totals"]
    expected = {
        "raw_policy_bytes": comm.policy_bytes,
        "live_policy_bytes": comm.live_policy_bytes,
        "ratio": comm.ratio,
        "live_ratio": comm.live_ratio,
    }
    for key, value in expected.items():
        if not math.isclose(totals[key], value, rel_tol=1e-9, abs_tol=1e-12):
            raise PlanError(
                f"{folder / PLAN_FILE}: totals.{key} is {shorten(totals[key])}, the policy's "
                f"cost is {value}"
            )


def _check_wiring(plan: Mapping[str, Any], source: str) -> None:
    """Every send has exactly one matching receive, and the totals add up."""
    groups = plan["schedule"]["groups"]
    parity = plan.get("parity")
    world = groups + (parity["r"] if parity else 0)
    devices = plan["devices"]
    if len(devices) != world or [e["device"] for e in devices] != list(range(world)):
        raise PlanError(f"{source}: devices must be listed once each, 0..{world - 1}")
    roles = ["data"] * groups + ["parity"] * (world - groups)
    if [e["role"] for e in devices] != roles:
        raise PlanError(f"{source}: devices 0..{groups - 1} must be data devices, the rest parity")
    if parity and (
        parity["data_devices"] != groups
        or len(parity["answers"]) != groups
        or len(parity["rules"]) != groups * len(plan["schedule"]["points"])
    ):
        raise PlanError(f"{source}: parity: data_devices, answers or rules do not match "
                        f"{groups} data devices and their points")  # fmt: skip
    takers = [e["device"] for e in devices if e["input"]]
    if plan["input"]["devices"] != takers or not takers:
        raise PlanError(
            f"{source}: input.devices is {shorten(plan['input']['devices'])}, but the devices "
            f"marked input are {takers}"
        )
    sends: dict[tuple[int, int, Any], dict[str, Any]] = {}
    for e in devices:
        for s in e["sends"]:
            parity_dst = s["kind"] == "encoding"
            in_range = groups <= s["to"] < world if parity_dst else 0 <= s["to"] < groups
            if not in_range or s["to"] == e["device"]:
                raise PlanError(f"{source}: device {e['device']} sends to device {s['to']}")
            key = (e["device"], s["to"], s["point"])
            if key in sends:
                raise PlanError(f"{source}: device {e['device']} sends twice at {s['point']}")
            sends[key] = s
    received = 0
    for e in devices:
        for r in e["receives"]:
            s = sends.get((r["from"], e["device"], r["point"]))
            same = s is not None and all(
                s[k] == r[k] for k in ("kind", "channels", "wire_dtype", "shape", "bytes")
            )
            if not same or s is None or s["after_block"] != r["sent_after_block"]:
                raise PlanError(
                    f"{source}: device {e['device']}'s receive from device {r['from']} "
                    f"at point {r['point']} has no matching send"
                )
            received += 1
    if received != len(sends):
        raise PlanError(f"{source}: {len(sends) - received} send(s) are never received")
    total = sum(s["bytes"] for s in sends.values() if s["kind"] != "encoding")
    encoded = sum(s["bytes"] for s in sends.values() if s["kind"] == "encoding")
    if encoded != (parity["encoding_bytes"] if parity else 0):
        raise PlanError(f"{source}: parity.encoding_bytes does not add up to the encodings "
                        f"sent ({encoded})")  # fmt: skip
    if total != plan["totals"]["bytes_per_image"]:
        raise PlanError(
            f"{source}: totals.bytes_per_image is {plan['totals']['bytes_per_image']}, "
            f"the sends add up to {total}"
        )


def load_plan(folder: str | Path) -> LoadedPlan:
    """Open and check a plan folder (module docstring); nothing is executed."""
    root = Path(folder)
    if not root.is_dir():
        raise PlanError(f"{root}: no such plan folder")
    source = str(root / PLAN_FILE)
    data = _read_json(root / PLAN_FILE)
    validate_plan(data, source)
    try:
        arch = architecture_of(data)
    except (ValueError, TypeError) as exc:
        raise PlanError(f"{source}: network/schedule: {exc}") from None
    _check_space(root, data, arch)
    _check_wiring(data, source)
    for e in data["devices"]:
        if e["weights"] is not None:
            _check_file(root, e["weights"], f"device {e['device']}'s weights")
        elif e["blocks"] or e["head"]:
            raise PlanError(f"{source}: device {e['device']} computes but has no weights file")
        for seg in e.get("onnx", []):
            _check_file(root, seg, f"device {e['device']}'s ONNX segment {seg['index']}")
    _check_file(root, data["reference"], "the reference logits")
    if data.get("parity"):
        _check_file(root, data["parity"]["impute"], "the imputation constants")
    plan = LoadedPlan(root, data, arch)
    for d in range(plan.groups):
        plan.ops[d] = device_ops(plan.device(d))
    return plan


@torch.inference_mode()
def execute_plan(
    plan: LoadedPlan, images: Tensor, nets: Mapping[int, DeviceNet] | None = None
) -> Tensor:
    """Run every device of ``plan`` on ``images`` in this process (the engine with a
    mailbox) and return the answer (device 0's logits)."""
    nets = nets if nets is not None else {d: plan.net(d) for d in range(plan.world)}
    if plan.parity is not None:
        return execute_degraded(plan, images, None, nets)
    inputs = set(plan.data["input"]["devices"])
    programs = {
        d: run_device(nets[d], plan.ops[d], images if d in inputs else None)
        for d in range(plan.groups)
    }
    return drive(programs, len(images))


def _frozen_reference(plan: LoadedPlan, images: Tensor) -> tuple[Tensor, str] | None:
    """The frozen network's logits recomputed from the source run, when it is reachable
    and unchanged since export."""
    from snnas._run import RunDir
    from snnas.space import space_from_text
    from snnas.train._finetune import load_finetuned

    source = plan.data.get("source")
    if not source or plan.parity is not None:  # the base of a parity run: its own checkpoint
        return None
    checkpoint = Path(source["run"]) / source["checkpoint"]
    if not checkpoint.is_file() or sha256_file(checkpoint) != source["sha256"]:
        return None
    space = space_from_text((plan.folder / plan.data["space"]["file"]).read_text("utf-8"))
    model = load_finetuned(RunDir(checkpoint.parent), space)
    with torch.no_grad():
        logits = torch.cat([model(images[i : i + 256]) for i in range(0, len(images), 256)])
    return logits, str(checkpoint)


def verify_plan(folder: str | Path, split: str = "val") -> dict[str, Any]:
    """Check and execute the plan (module docstring); the report has ``top1_agreement``,
    ``max_abs_diff``, ``accuracy``, ``passed`` and what it was compared with."""
    from snnas.data import load_dataset

    plan = load_plan(folder)
    reference = plan.reference()
    if f"{split}.logits" not in reference:
        raise PlanError(f"{plan.folder}: no reference logits for split {split!r}")
    labels = reference[f"{split}.labels"]
    net = plan.data["network"]
    data = load_dataset(
        plan.data["input"]["dataset"],
        input_size=net["input_size"],
        input_channels=net["input_channels"],
    )
    images, data_labels = data.eval_tensors(split)
    if not torch.equal(data_labels, labels):
        raise PlanError(f"{plan.folder}: the {split} split differs from the one exported")
    nets = {d: plan.net(d) for d in range(plan.world)}
    logits = execute_plan(plan, images, nets)
    frozen = _frozen_reference(plan, images)
    stored = reference[f"{split}.logits"]
    if frozen is not None:
        compared, against = frozen
    else:
        compared, against = stored, str(plan.folder / plan.data["reference"]["file"])
    report = compare_logits(logits, compared, labels)
    report.update(
        {
            "plan": str(plan.folder),
            "split": split,
            "compared_with": against,
            "stored_reference_max_abs_diff": float((compared - stored).abs().max()),
            "devices": plan.groups,
            "bytes_per_image": plan.data["totals"]["bytes_per_image"],
        }
    )
    report["passed"] = passed(report)
    if plan.parity is not None:
        report["degraded"] = verify_degraded(plan, images, labels, reference, split, nets)
        report["passed"] = report["passed"] and report["degraded"]["passed"]
    return report
