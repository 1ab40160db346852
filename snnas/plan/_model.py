"""The plan as typed, immutable data: what ``plan.json`` says, parsed once.

:meth:`Plan.from_json` checks a JSON document against the shipped JSON Schema and builds the
model; :meth:`Plan.to_json` writes it back (``Plan.from_json(d).to_json() == d`` for every
valid ``d``). The exporter writes ``to_json()``, the loader (``_load.py``) parses with
``from_json`` and checks everything it can derive; every consumer reads the model. A send and
a receive are the program's own :class:`~snnas.plan._program.Send` and
:class:`~snnas.plan._program.Receive`, so the engine runs exactly what the plan says.
Field meanings: docs/plan.md, "plan.json, field by field".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from snnas.plan._program import Receive, Send
from snnas.plan._schema import SCHEMA_VERSION, validate_plan

__all__ = [
    "Accuracy",
    "DegradedRule",
    "DeviceEntry",
    "Encoder",
    "FileRef",
    "InputSpec",
    "Link",
    "OnnxSegment",
    "OutputSpec",
    "ParitySection",
    "Plan",
    "Point",
    "Prediction",
    "ReferenceRef",
    "Schedule",
    "Source",
    "SpaceRef",
    "Standin",
    "Totals",
]


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy (the model never changes after parsing)."""
    return MappingProxyType(dict(mapping))


def _plain(value: Any) -> Any:
    """A JSON value out of read-only mappings and tuples."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class FileRef:
    """A file of the plan folder: its name (inside the folder), SHA-256 and size."""

    file: str
    sha256: str
    bytes: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FileRef:
        """From ``{"file", "sha256", "bytes"}``."""
        return cls(d["file"], d["sha256"], d["bytes"])

    def to_json(self) -> dict[str, Any]:
        """As written in ``plan.json``."""
        return {"file": self.file, "sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class ReferenceRef:
    """``reference``: the frozen network's logits file and the images per split."""

    file: str
    sha256: str
    splits: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        """As written in ``plan.json``."""
        return {"file": self.file, "sha256": self.sha256, "splits": dict(self.splits)}


@dataclass(frozen=True)
class SpaceRef:
    """``space``: the search space's name, hash and file in the folder."""

    name: str
    hash: str
    file: str


@dataclass(frozen=True)
class Source:
    """``source``: where the plan was exported from (never read by ``plan verify`` unless
    the user names the run)."""

    run: str
    checkpoint: str
    sha256: str


@dataclass(frozen=True)
class Point:
    """One transmission point of the schedule."""

    point: int
    send_block: int
    aggregate_block: int
    channels: int  # the stream's channels per device at the point
    size: int  # H = W


@dataclass(frozen=True)
class Schedule:
    """``schedule``: G, alpha, overlap, B and the points."""

    groups: int
    alpha: int
    overlap: int
    blocks: int
    points: tuple[Point, ...]

    def to_json(self) -> dict[str, Any]:
        """As written in ``plan.json``."""
        return {
            "groups": self.groups,
            "alpha": self.alpha,
            "overlap": self.overlap,
            "blocks": self.blocks,
            "points": [vars(p).copy() for p in self.points],
        }


@dataclass(frozen=True)
class InputSpec:
    """``input``: the image one device or several take."""

    shape: tuple[int, ...]
    dtype: str
    dataset: str
    normalization: Mapping[str, Any]
    devices: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        """As written in ``plan.json``."""
        return {
            "shape": list(self.shape),
            "dtype": self.dtype,
            "dataset": self.dataset,
            "normalization": _plain(self.normalization),
            "devices": list(self.devices),
        }


@dataclass(frozen=True)
class OutputSpec:
    """``output``: the device with the head and the logits' shape."""

    device: int
    shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        """As written in ``plan.json``."""
        return {"device": self.device, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class OnnxSegment:
    """One ONNX graph of a device (``--onnx``)."""

    index: int
    file: FileRef
    blocks: tuple[int, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    max_abs_diff: float

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> OnnxSegment:
        """From a device's ``onnx`` entry."""
        return cls(d["index"], FileRef.from_json(d), tuple(d["blocks"]), tuple(d["inputs"]),
                   tuple(d["outputs"]), d["max_abs_diff"])  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """As written in ``plan.json``."""
        return {"index": self.index, **self.file.to_json(), "blocks": list(self.blocks),
                "inputs": list(self.inputs), "outputs": list(self.outputs),
                "max_abs_diff": self.max_abs_diff}  # fmt: skip


@dataclass(frozen=True)
class Encoder:
    """A parity device's encoder of one point ((P1) of docs/parity.md)."""

    point: int
    encoder: str  # "sum", "concat" or "mirror"
    channels: int  # m
    wire_dtype: str
    send_block: int
    after_block: int
    mirror: tuple[int, int] | None  # (from, channels) the shadowed device receives

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Encoder:
        """From a parity device's ``encoders`` entry."""
        m = d["mirror"]
        mirror = None if m is None else (m["from"], m["channels"])
        return cls(d["point"], d["encoder"], d["channels"], d["wire_dtype"], d["send_block"],
                   d["after_block"], mirror)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """As written in ``plan.json``."""
        mirror = None if self.mirror is None else {"from": self.mirror[0],
                                                   "channels": self.mirror[1]}  # fmt: skip
        return {"point": self.point, "encoder": self.encoder, "channels": self.channels,
                "wire_dtype": self.wire_dtype, "send_block": self.send_block,
                "after_block": self.after_block, "mirror": mirror}  # fmt: skip


@dataclass(frozen=True)
class DeviceEntry:
    """One device of the plan: what it computes, sends and receives, and its files."""

    device: int
    role: str  # "data" or "parity"
    input: bool
    stem: bool
    head: bool
    blocks: tuple[int, ...]
    skipped_blocks: tuple[int, ...]
    sends: tuple[Send, ...]
    receives: tuple[Receive, ...]
    weights: FileRef | None
    flops: int
    params: int
    onnx: tuple[OnnxSegment, ...] | None = None  # None: exported without --onnx
    shadows: int | None = None  # parity devices only
    encoders: tuple[Encoder, ...] | None = None  # parity devices only

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DeviceEntry:
        """From a ``devices`` entry."""
        onnx = d.get("onnx")
        encoders = d.get("encoders")
        return cls(
            device=d["device"],
            role=d["role"],
            input=d["input"],
            stem=d["stem"],
            head=d["head"],
            blocks=tuple(d["blocks"]),
            skipped_blocks=tuple(d["skipped_blocks"]),
            sends=tuple(Send.from_json(s) for s in d["sends"]),
            receives=tuple(Receive.from_json(r) for r in d["receives"]),
            weights=None if d["weights"] is None else FileRef.from_json(d["weights"]),
            flops=d["flops"],
            params=d["params"],
            onnx=None if onnx is None else tuple(OnnxSegment.from_json(s) for s in onnx),
            shadows=d.get("shadows"),
            encoders=None if encoders is None else tuple(Encoder.from_json(e) for e in encoders),
        )

    def to_json(self) -> dict[str, Any]:
        """As written in ``plan.json`` (optional keys only when present)."""
        out: dict[str, Any] = {"device": self.device, "role": self.role}
        if self.shadows is not None:
            out["shadows"] = self.shadows
        out |= {
            "input": self.input,
            "stem": self.stem,
            "head": self.head,
            "blocks": list(self.blocks),
            "skipped_blocks": list(self.skipped_blocks),
            "sends": [s.to_json() for s in self.sends],
            "receives": [r.to_json() for r in self.receives],
        }
        if self.encoders is not None:
            out["encoders"] = [e.to_json() for e in self.encoders]
        out |= {
            "weights": None if self.weights is None else self.weights.to_json(),
            "flops": self.flops,
            "params": self.params,
        }
        if self.onnx is not None:
            out["onnx"] = [s.to_json() for s in self.onnx]
        return out


@dataclass(frozen=True)
class Link:
    """Bytes per image from one device to another."""

    src: int
    dst: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        """As written in ``plan.json``."""
        return {"from": self.src, "to": self.dst, "bytes": self.bytes}


def _links(items: Any) -> tuple[Link, ...]:
    return tuple(Link(x["from"], x["to"], x["bytes"]) for x in items)


@dataclass(frozen=True)
class Totals:
    """``totals``: the policy's traffic and the live FLOPs, per image."""

    bytes_per_image: int
    stem_bytes: int
    transfer_bytes: int
    links: tuple[Link, ...]
    raw_policy_bytes: int
    live_policy_bytes: int
    ratio: float
    live_ratio: float
    flops: int

    def to_json(self) -> dict[str, Any]:
        """As written in ``plan.json``."""
        out = dict(vars(self))
        out["links"] = [x.to_json() for x in self.links]
        return out


@dataclass(frozen=True)
class Prediction:
    """``prediction``: the cost model's latency for a named device profile."""

    profile: str
    flops_per_s: float
    bandwidth_bps: float
    link_latency_s: float
    latency_ms: float
    compute_ms: float
    exposed_transfer_ms: float
    single_device_ms: float
    speedup: float


@dataclass(frozen=True)
class Accuracy:
    """``accuracy``: the fine-tuned network's."""

    val: float
    test: float
    selected_epoch: int


@dataclass(frozen=True)
class Standin:
    """What replaces one missing payload or encoding under a degraded rule."""

    point: int  # -1: the stem
    missing: int
    dst: int
    channels: int
    by: int | None  # the parity device that sends it; None: the receiver imputes
    dtype: str
    bytes: int


@dataclass(frozen=True)
class DegradedRule:
    """Data device ``device`` unavailable from ``from_point`` on (docs/plan.md)."""

    device: int
    from_point: int
    answer_by: int
    stem_by: int | None
    stem_to: tuple[int, ...]
    standins: tuple[Standin, ...]
    bytes: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DegradedRule:
        """From a ``parity.rules`` entry."""
        return cls(d["device"], d["from_point"], d["answer_by"], d["stem_by"],
                   tuple(d["stem_to"]), tuple(Standin(**s) for s in d["standins"]),
                   d["bytes"])  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """As written in ``plan.json``."""
        return {"device": self.device, "from_point": self.from_point,
                "answer_by": self.answer_by, "stem_by": self.stem_by,
                "stem_to": list(self.stem_to), "standins": [vars(s).copy() for s in self.standins],
                "bytes": self.bytes}  # fmt: skip


@dataclass(frozen=True)
class ParitySection:
    """``parity``: the parity devices, their traffic and the degraded rules."""

    r: int
    data_devices: int
    devices: tuple[int, ...]
    bottleneck_scale: int
    answers: tuple[bool, ...]
    impute: FileRef
    image_bytes: int
    encoding_bytes: int
    links: tuple[Link, ...]
    flops: int
    rules: tuple[DegradedRule, ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ParitySection:
        """From the ``parity`` section."""
        return cls(d["r"], d["data_devices"], tuple(d["devices"]), d["bottleneck_scale"],
                   tuple(d["answers"]), FileRef.from_json(d["impute"]), d["image_bytes"],
                   d["encoding_bytes"], _links(d["links"]), d["flops"],
                   tuple(DegradedRule.from_json(x) for x in d["rules"]))  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """As written in ``plan.json``."""
        return {"r": self.r, "data_devices": self.data_devices, "devices": list(self.devices),
                "bottleneck_scale": self.bottleneck_scale, "answers": list(self.answers),
                "impute": self.impute.to_json(), "image_bytes": self.image_bytes,
                "encoding_bytes": self.encoding_bytes,
                "links": [x.to_json() for x in self.links], "flops": self.flops,
                "rules": [x.to_json() for x in self.rules]}  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """A whole ``plan.json``."""

    created: Mapping[str, str]
    space: SpaceRef
    policy: Mapping[str, Any]
    network: Mapping[str, Any]
    schedule: Schedule
    input: InputSpec
    output: OutputSpec
    devices: tuple[DeviceEntry, ...]
    totals: Totals
    prediction: Prediction
    accuracy: Accuracy
    reference: ReferenceRef
    parity: ParitySection | None = None
    source: Source | None = None

    @property
    def groups(self) -> int:
        """G, the data devices."""
        return self.schedule.groups

    @property
    def world(self) -> int:
        """Every device, parity devices included."""
        return len(self.devices)

    @classmethod
    def from_json(cls, data: Any, source: str) -> Plan:
        """Check ``data`` against the JSON Schema (one line naming ``source`` and the key
        otherwise) and build the model."""
        validate_plan(data, source)
        sched = data["schedule"]
        inp, out, ref = data["input"], data["output"], data["reference"]
        return cls(
            created=_frozen(data["created"]),
            space=SpaceRef(**data["space"]),
            policy=_frozen(data["policy"]),
            network=_frozen(
                {k: tuple(v) if isinstance(v, list) else v for k, v in data["network"].items()}
            ),
            schedule=Schedule(
                sched["groups"],
                sched["alpha"],
                sched["overlap"],
                sched["blocks"],
                tuple(Point(**p) for p in sched["points"]),
            ),
            input=InputSpec(
                tuple(inp["shape"]),
                inp["dtype"],
                inp["dataset"],
                _frozen(inp["normalization"]),
                tuple(inp["devices"]),
            ),
            output=OutputSpec(out["device"], tuple(out["shape"]), out["dtype"]),
            devices=tuple(DeviceEntry.from_json(e) for e in data["devices"]),
            totals=Totals(**{**data["totals"], "links": _links(data["totals"]["links"])}),
            prediction=Prediction(**data["prediction"]),
            accuracy=Accuracy(**data["accuracy"]),
            reference=ReferenceRef(ref["file"], ref["sha256"], _frozen(ref["splits"])),
            parity=None if data.get("parity") is None else ParitySection.from_json(data["parity"]),
            source=None if data.get("source") is None else Source(**data["source"]),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``plan.json`` document (keys in the documented order)."""
        out: dict[str, Any] = {
            "format": "snnas-plan",
            "schema_version": SCHEMA_VERSION,
            "created": dict(self.created),
            "space": vars(self.space).copy(),
            "policy": _plain(self.policy),
            "network": _plain(self.network),
            "schedule": self.schedule.to_json(),
            "input": self.input.to_json(),
            "output": self.output.to_json(),
            "devices": [e.to_json() for e in self.devices],
            "totals": self.totals.to_json(),
            "prediction": vars(self.prediction).copy(),
            "accuracy": vars(self.accuracy).copy(),
            "reference": self.reference.to_json(),
        }
        if self.parity is not None:
            out["parity"] = self.parity.to_json()
        if self.source is not None:
            out["source"] = vars(self.source).copy()
        return out
