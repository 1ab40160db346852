"""Loading a plan folder safely: a plan that loads is a plan that runs.

:func:`load_plan` parses ``plan.json`` once into the typed model (``_model.Plan``) and checks,
in this order, refusing in one line that names the file, the device and the field: the
folder and ``plan.json`` exist and parse; the schema version and the JSON Schema; the space
file (a plain file of the folder) against the plan's name, hash, network, schedule and
policy; the devices, and every block index, point and send or receive against the
architecture (nothing the loader or a device loops over can be out of range); every
receive against its sender's send, none scheduled before it; everything derived from the
space and policy (``_derive.py``: wiring, wire dtypes and destinations, shapes, bytes,
FLOPs, parameters, totals, the prediction, the degraded rules); every file the plan names is
a plain file inside the folder whose SHA-256 matches; every safetensors file's header
against its size before it is read, and weights files hold exactly the tensors their device
needs, in the right shapes, finite. Weights are safetensors: loading one never runs code.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from snnas.arch import Architecture
from snnas.errors import PlanError, SnnasError, shorten
from snnas.plan._derive import derive, parity_shapes
from snnas.plan._files import (
    PLAN_FILE,
    check_file,
    checked_tensors,
    read_plan_json,
    read_safetensors,
)
from snnas.plan._model import Plan
from snnas.plan._program import DeviceNet, Op, architecture_of, device_ops
from snnas.plan._weights import expected_shapes

__all__ = ["LoadedPlan", "load_plan", "plan_space_name", "read_safetensors"]

#: A space name as the DSL allows it (snnas/space/_config.py), and no longer.
_SPACE_NAME = re.compile(r"[^\W][\w.+-]{0,99}", re.ASCII)


@dataclass
class LoadedPlan:
    """A plan folder that passed every check of :func:`load_plan`: the typed model
    (``model``) and, for the device programs, the same plan as JSON (``data``)."""

    folder: Path
    data: dict[str, Any]
    arch: Architecture
    ops: dict[int, list[Op]] = field(default_factory=dict)
    model: Plan = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = Plan.from_json(self.data, str(self.folder / PLAN_FILE))

    @property
    def groups(self) -> int:
        """Number of data devices."""
        return self.model.groups

    @property
    def world(self) -> int:
        """Number of devices, parity devices included (one process each)."""
        return self.model.world

    @property
    def parity(self) -> dict[str, Any] | None:
        """The ``parity`` section as JSON (None: a plan without parity devices)."""
        section: dict[str, Any] | None = self.data.get("parity")
        return section

    def device(self, d: int) -> dict[str, Any]:
        """Device ``d``'s entry as JSON (``model.devices[d]`` typed)."""
        entry: dict[str, Any] = self.data["devices"][d]
        return entry

    def impute(self) -> dict[str, Tensor]:
        """The imputation constants (``impute{q}``: (G, w)) of a plan with parity devices."""
        if self.model.parity is None:
            raise PlanError(f"{self.folder}: the plan has no parity devices")
        shapes = {f"impute{p.point}": (self.groups, p.channels) for p in self.model.schedule.points}
        return checked_tensors(self.folder / self.model.parity.impute.file, shapes, "impute")

    def expected_shapes(self, d: int) -> dict[str, tuple[int, ...]]:
        """The tensors device ``d``'s weights file must hold, and their shapes."""
        e = self.model.devices[d]
        if e.role == "parity":
            if self.model.parity is None or e.encoders is None:
                raise PlanError(f"{self.folder}: device {d} is a parity device of a plan "
                                "without a parity section (or without encoders)")  # fmt: skip
            encoders = [x.to_json() for x in e.encoders]
            return parity_shapes(self.arch, e.blocks, e.head, encoders,
                                 self.model.parity.bottleneck_scale)  # fmt: skip
        return expected_shapes(self.arch, e.blocks, e.head) if e.blocks or e.head else {}

    def weights(self, d: int) -> dict[str, Tensor]:
        """Device ``d``'s tensors (checked names, shapes, finite); {} for an idle device."""
        entry = self.model.devices[d]
        if entry.weights is None:
            return {}
        return checked_tensors(self.folder / entry.weights.file, self.expected_shapes(d),
                                f"device {d}'s weights")  # fmt: skip

    def net(self, d: int) -> DeviceNet:
        """Device ``d``'s network from its weights file."""
        entry = self.model.devices[d]
        parity = self.model.parity
        scale = parity.bottleneck_scale if parity and entry.role == "parity" else 1
        return DeviceNet(self.arch, list(entry.blocks), self.weights(d), scale)

    def reference(self) -> dict[str, Tensor]:
        """The frozen network's logits and the labels of the splits it was exported with
        (checked: one float32 logit row of finite numbers and one label per image, as many
        images as the plan says)."""
        path = self.folder / self.model.reference.file
        tensors = read_safetensors(path)
        splits = self.model.reference.splits
        classes = int(self.model.network["num_classes"])
        kinds = ["logits", "labels"]
        if self.model.parity:  # the coded network's answers at every erasure position (j, p)
            points = len(self.model.schedule.points)
            kinds += [f"degraded.{j}.{p}" for j in range(self.groups) for p in range(points)]
        expected = {f"{s}.{k}" for s in splits for k in kinds}
        if set(tensors) != expected:
            raise PlanError(
                f"{path}: reference holds {sorted(tensors)[:6]}, expected {sorted(expected)}"
            )
        for split, count in splits.items():
            labels = tensors[f"{split}.labels"]
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


def _check_sizes(root: Path, plan: Plan) -> None:
    """Every file's recorded size (after its content: a content error says more)."""
    refs = [(e.weights, f"device {e.device}'s weights") for e in plan.devices if e.weights]
    refs += [(s.file, f"device {e.device}'s ONNX segment {s.index}") for e in plan.devices
             for s in e.onnx or ()]  # fmt: skip
    if plan.parity is not None:
        refs.append((plan.parity.impute, "the imputation constants"))
    for ref, what in refs:
        size = (root / ref.file).stat().st_size
        if size != ref.bytes:
            raise PlanError(f"{root / ref.file}: {what} holds {size} bytes, the plan says "
                            f"{ref.bytes}")  # fmt: skip


def _load_space(folder: Path, plan: Plan, arch: Architecture, source: str) -> Any:
    """The plan's space file, checked against the plan (name, hash, network, schedule,
    policy); returns the space."""
    import tomllib

    from snnas.space import space_from_text
    from snnas.space._toml import read_user_file

    path = folder / plan.space.file
    name = plan.space.name
    if not _SPACE_NAME.fullmatch(name):
        raise PlanError(f"{source}: space.name: expected a name of letters, digits and _ . + - "
                        f"(at most 100), found {shorten(name, 60, quote=True)}")  # fmt: skip
    if path.is_symlink() or not path.is_file():
        raise PlanError(f"{shorten(str(path))}: the plan's space file is missing")
    try:
        text = read_user_file(path, "<space>", "space file")
        space = space_from_text(text, str(path))
        named = tomllib.loads(text).get("name")
    except (SnnasError, tomllib.TOMLDecodeError) as exc:
        raise PlanError(f"{shorten(str(path))}: not a valid space ({exc})") from None
    if named is not None and named != name:
        raise PlanError(f"{source}: space.name is {shorten(name, 60, quote=True)}, its space file "
                        f"names {shorten(str(named), 60, quote=True)}")  # fmt: skip
    if space.hash != plan.space.hash:
        raise PlanError(
            f"{path}: space hash {space.hash} differs from the plan's {plan.space.hash}"
        )
    same = (
        space.arch.network == arch.network
        and (space.groups, space.alpha, space.overlap) == (arch.groups, arch.alpha, arch.overlap)
        and [(p.block, p.aggregate_block) for p in space.arch.points]
        == [(p.send_block, p.aggregate_block) for p in plan.schedule.points]
    )
    if not same:
        raise PlanError(f"{source}: network or schedule differs from its space file {path.name}")
    problem = space.check(dict(plan.policy))
    if problem is not None:
        raise PlanError(f"{source}: policy: {problem}")
    if (space.parity.r if space.parity else 0) != (plan.parity.r if plan.parity else 0):
        raise PlanError(f"{source}: parity: the plan's parity devices differ from its space file's")
    return space


def _check_ranges(plan: Plan, arch: Architecture, source: str) -> None:
    """Devices listed in order with their roles; every block index, point and peer inside
    the architecture, so that nothing later loops over a number the plan made up."""
    g, world, blocks = plan.groups, plan.world, arch.num_blocks
    points = plan.schedule.points
    if plan.schedule.blocks != blocks:
        raise PlanError(f"{source}: schedule.blocks is {plan.schedule.blocks}, the network has "
                        f"{blocks}")  # fmt: skip
    if [p.point for p in points] != list(range(len(arch.points))):
        raise PlanError(f"{source}: schedule.points must be the {len(arch.points)} points in order")
    r = plan.parity.r if plan.parity else 0
    if world != g + r or [e.device for e in plan.devices] != list(range(world)):
        raise PlanError(f"{source}: devices must be listed once each, 0..{g + r - 1}")
    if [e.role for e in plan.devices] != ["data"] * g + ["parity"] * r:
        raise PlanError(f"{source}: devices 0..{g - 1} must be data devices, the rest parity")
    for e in plan.devices:
        where = f"{source}: device {e.device}"

        def block(value: int, what: str, low: int = 0, where: str = where) -> None:
            if not low <= value < blocks:
                raise PlanError(f"{where}: {what} is {value}, outside the network's blocks "
                                f"{low}..{blocks - 1}")  # fmt: skip

        for i, b in enumerate(e.blocks):
            block(b, f"blocks[{i}]")
        for i, b in enumerate(e.skipped_blocks):
            block(b, f"skipped_blocks[{i}]")
        for i, s in enumerate(e.sends):
            block(s.after_block, f"sends[{i}].after_block", -1)
            if not 0 <= s.to < world or s.to == e.device:
                raise PlanError(f"{where}: sends[{i}].to: device {e.device} sends to device "
                                f"{s.to}")  # fmt: skip
            if s.point is not None and not 0 <= s.point < len(points):
                raise PlanError(f"{where}: sends[{i}].point is {s.point}, the plan has "
                                f"{len(points)} points")  # fmt: skip
        for i, x in enumerate(e.receives):
            block(x.after_block, f"receives[{i}].after_block", -1)
            block(x.sent_after_block, f"receives[{i}].sent_after_block", -1)
            if not 0 <= x.src < world or x.src == e.device:
                raise PlanError(f"{where}: receives[{i}].from is device {x.src}")
            if x.point is not None and not 0 <= x.point < len(points):
                raise PlanError(f"{where}: receives[{i}].point is {x.point}, the plan has "
                                f"{len(points)} points")  # fmt: skip
        for i, enc in enumerate(e.encoders or ()):
            block(enc.after_block, f"encoders[{i}].after_block")
            block(enc.send_block, f"encoders[{i}].send_block")
            if not 0 <= enc.point < len(points):
                raise PlanError(f"{where}: encoders[{i}].point is {enc.point}")


def _check_wiring(plan: Plan, source: str) -> None:
    """Every receive has exactly one send with the same payload, scheduled no later; every
    send is received; the input devices are the ones marked so."""
    takers = tuple(e.device for e in plan.devices if e.input)
    if plan.input.devices != takers or not takers:
        raise PlanError(f"{source}: input.devices is {list(plan.input.devices)}, but the devices "
                        f"marked input are {list(takers)}")  # fmt: skip
    sends: dict[tuple[int, int, Any], Any] = {}
    for e in plan.devices:
        for i, s in enumerate(e.sends):
            key = (e.device, s.to, s.point)
            if key in sends:
                raise PlanError(f"{source}: device {e.device}: sends[{i}]: it sends twice to "
                                f"device {s.to} at point {s.point}")  # fmt: skip
            sends[key] = s
    received = set()
    for e in plan.devices:
        for i, r in enumerate(e.receives):
            where = f"{source}: device {e.device}: receives[{i}]"
            key = (r.src, e.device, r.point)
            sent = sends.get(key)
            if sent is None or any(getattr(sent, k) != getattr(r, k) for k in
                                ("kind", "channels", "wire_dtype", "shape", "bytes")):  # fmt: skip
                raise PlanError(f"{where}: the receive from device {r.src} at point {r.point} "
                                f"has no matching send")  # fmt: skip
            if sent.after_block != r.sent_after_block:
                raise PlanError(f"{where}.sent_after_block is {r.sent_after_block}, device "
                                f"{r.src} sends after block {sent.after_block}")  # fmt: skip
            if r.after_block < r.sent_after_block:
                raise PlanError(f"{where}.after_block is {r.after_block}: scheduled before its "
                                f"sender's send after block {r.sent_after_block}")  # fmt: skip
            received.add(key)
    for key, s in sends.items():
        if key not in received:
            raise PlanError(f"{source}: device {key[0]}: its send to device {s.to} at point "
                            f"{s.point} is never received")  # fmt: skip


def _difference(actual: Any, expected: Any, path: str) -> tuple[str, Any, Any] | None:
    """The first place where two JSON values differ (floats: to 1e-9 relative)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in expected:
            found = _difference(actual.get(key), expected[key], f"{path}.{key}".lstrip("."))
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        for i, (a, e) in enumerate(zip(actual, expected, strict=False)):
            found = _difference(a, e, f"{path}[{i}]")
            if found:
                return found
        if len(actual) != len(expected):
            return f"{path} (length)", len(actual), len(expected)
        return None
    if (
        isinstance(expected, float)
        and isinstance(actual, int | float)
        and not isinstance(actual, bool)
    ):
        same = math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12)
        return None if same else (path, actual, expected)
    return (
        None if actual == expected and type(actual) is type(expected) else (path, actual, expected)
    )


def _refuse(source: str, what: str, found: tuple[str, Any, Any]) -> None:
    path, actual, expected = found
    raise PlanError(f"{source}: {what}{path} is {shorten(json.dumps(actual), 60)}, its space and "
                    f"policy give {shorten(json.dumps(expected), 60)}")  # fmt: skip


def _check_derived(plan: Plan, space: Any, source: str) -> None:
    """Everything that follows from the space and policy, recomputed and compared."""
    from snnas.cost import PROFILES, DeviceProfile

    pred = plan.prediction
    known = PROFILES.get(pred.profile)
    numbers = (pred.flops_per_s, pred.bandwidth_bps, pred.link_latency_s)
    if known is not None and (known.flops, known.bandwidth_bps, known.link_latency_s) == numbers:
        profile = known
    else:  # a profile file: only its three figures are in the plan
        profile = DeviceProfile(pred.profile, *numbers, source="plan.json")
    answers = list(plan.parity.answers) if plan.parity else None
    if answers is not None and not answers[0]:
        raise PlanError(f"{source}: parity.answers[0] is false: the parity device always "
                        f"answers for device 0 (it holds the head)")  # fmt: skip
    derived = derive(space, space.validate(dict(plan.policy)), profile, answers)
    found = _difference(plan.schedule.to_json(), derived["schedule"], "")
    if found:
        _refuse(source, "schedule.", found)
    pairs = list(zip(plan.devices, derived["devices"], strict=True))
    for entry, expected in pairs:  # the sends against the policy first: they name the sender
        found = _difference(entry.to_json(), {"sends": expected["sends"]}, "")
        if found:
            _refuse(source, f"device {entry.device}: ", found)
    for entry, expected in pairs:
        found = _difference(entry.to_json(), expected, "")
        if found:
            _refuse(source, f"device {entry.device}: ", found)
    found = _difference(plan.totals.to_json(), derived["totals"], "")
    if found:
        _refuse(source, "totals.", found)
    actual_pred = vars(pred).copy()
    if profile is known:
        found = _difference(actual_pred, derived["prediction"], "")
        if found:
            _refuse(source, "prediction.", found)
    else:  # what the plan's own figures must satisfy
        sums = {
            "latency_ms": pred.compute_ms + pred.exposed_transfer_ms,
            "speedup": pred.single_device_ms / pred.latency_ms if pred.latency_ms else 0.0,
        }
        found = _difference(actual_pred, sums, "")  # fmt: skip
        if found:
            _refuse(source, "prediction.", found)
    found = _difference(plan.output.to_json(), derived["output"], "")
    if found:
        _refuse(source, "output.", found)
    if plan.parity is not None:
        section = plan.parity.to_json()
        del section["impute"]
        found = _difference(section, derived["parity"], "")
        if found:
            _refuse(source, "parity.", found)


def _check_files(root: Path, plan: Plan, source: str) -> None:
    for e in plan.devices:
        if e.weights is not None:
            check_file(root, e.weights, f"device {e.device}'s weights")
        elif e.blocks or e.head or e.role == "parity":
            raise PlanError(f"{source}: device {e.device}: weights is null, but it computes")
        for seg in e.onnx or ():
            check_file(root, seg.file, f"device {e.device}'s ONNX segment {seg.index}")
    check_file(root, plan.reference, "the reference logits")
    if plan.parity is not None:
        check_file(root, plan.parity.impute, "the imputation constants")


def plan_space_name(folder: str | Path) -> str:
    """The plan's space name, checked as :func:`load_plan` checks it, from ``plan.json``
    alone (no weights read): what a default folder name may be made of."""
    root = Path(folder)
    if not root.is_dir():
        raise PlanError(f"{root}: no such plan folder")
    source = str(root / PLAN_FILE)
    name = Plan.from_json(read_plan_json(root / PLAN_FILE), source).space.name
    if not _SPACE_NAME.fullmatch(name):
        raise PlanError(f"{source}: space.name: expected a name of letters, digits and _ . + - "
                        f"(at most 100), found {shorten(name, 60, quote=True)}")  # fmt: skip
    return name


def load_plan(folder: str | Path) -> LoadedPlan:
    """Open and check a plan folder (module docstring); nothing is executed."""
    root = Path(folder)
    if not root.is_dir():
        raise PlanError(f"{root}: no such plan folder")
    source = str(root / PLAN_FILE)
    model = Plan.from_json(read_plan_json(root / PLAN_FILE), source)
    data = model.to_json()
    try:
        arch = architecture_of(data)
    except (ValueError, TypeError) as exc:
        raise PlanError(f"{source}: network/schedule: {exc}") from None
    space = _load_space(root, model, arch, source)
    _check_ranges(model, arch, source)
    _check_wiring(model, source)
    _check_derived(model, space, source)
    _check_files(root, model, source)
    plan = LoadedPlan(root, data, arch, model=model)
    for d in range(plan.world):
        plan.weights(d)  # names, shapes and values, before any process starts
    if model.parity is not None:
        plan.impute()
    _check_sizes(root, model)
    for d in range(plan.groups):
        plan.ops[d] = device_ops(plan.device(d))
    return plan
