"""One ONNX graph per (device, segment), so an edge device runs its part with onnxruntime and
moves the payloads with any transport.

A device's operations (``_program.device_ops``) are cut into segments of the form
``[receives] [compute] [sends]``: a segment starts where the device must have something it
receives (it is added to the stream first) and ends with what it sends, so running the
segments in order and moving payloads between them is exactly the device's program, waits
included. A segment's inputs are ``stream_in`` (the device's stream as it enters; ``image`` on
the input device; ``stem`` where the stem's copy starts the stream) and one tensor per
payload received (``recv_<src>_<point>``, in its wire dtype); its outputs are ``stream_out``
(unless nothing follows), ``logits`` on the head's device, and one tensor per payload sent
(``send_<dst>_<point>``, in its wire dtype).

Every graph is checked against the torch segment it came from with onnxruntime, on the
inputs a real execution of the plan on validation images gives it; the largest absolute
difference is recorded per segment in ``plan.json``.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from snnas._io import atomic_write_bytes
from snnas._run import Progress
from snnas.engine import drive
from snnas.errors import PlanError
from snnas.plan._compare import compare_logits, passed
from snnas.plan._files import PLAN_FILE
from snnas.plan._load import LoadedPlan
from snnas.plan._program import (
    DeviceNet,
    Op,
    Receive,
    Send,
    add_payload,
    architecture_of,
    device_ops,
    payload,
)
from snnas.plan._verify import split_images

__all__ = [
    "ONNX_RTOL",
    "Segment",
    "execute_onnx",
    "export_segments",
    "split_segments",
    "verify_onnx",
]

#: Validation images the graphs are checked on.
CHECK_IMAGES = 16
#: How far an ONNX segment's output may be from the torch segment's, relative to the
#: output's scale: ``ONNX_RTOL * (1 + max |output|)``. Float16 payloads round a last-bit
#: difference of the convolutions either way, one float16 step (2^-11 of the value at
#: most), and the blocks after it carry it on; a wrong graph is far outside (docs/plan.md).
ONNX_RTOL = 2.0**-8


def _point(p: int | None) -> str:
    return "stem" if p is None else f"p{p}"


@dataclass
class Segment:
    """A run of one device's operations between two communication boundaries."""

    index: int
    ops: list[Op] = field(default_factory=list)
    last: bool = False  # no segment follows on this device

    @property
    def receives(self) -> list[Receive]:
        """Payloads this segment adds (in order)."""
        return [op[1] for op in self.ops if op[0] == "recv"]

    @property
    def sends(self) -> list[Send]:
        """Payloads this segment sends (in order)."""
        return [op[1] for op in self.ops if op[0] == "send"]

    @property
    def blocks(self) -> list[int]:
        """Blocks it computes."""
        return [op[1] for op in self.ops if op[0] == "block"]

    @property
    def takes_image(self) -> bool:
        """Whether its first operation reads the input image."""
        return bool(self.ops) and self.ops[0][0] == "input"

    @property
    def starts_from_stem(self) -> bool:
        """Whether it starts the stream from the stem's received copy."""
        return any(r.kind == "stem" for r in self.receives)

    @property
    def head(self) -> bool:
        """Whether it computes the classifier."""
        return any(op[0] == "head" for op in self.ops)

    def input_names(self) -> list[str]:
        """Names of the graph's inputs, in order."""
        names = []
        if self.takes_image:
            names.append("image")
        elif not self.starts_from_stem:
            names.append("stream_in")
        names += [f"recv_{r.src}_{_point(r.point)}" for r in self.receives]
        return names

    def output_names(self) -> list[str]:
        """Names of the graph's outputs, in order."""
        names = ["logits"] if self.head else ([] if self.last else ["stream_out"])
        return names + [f"send_{s.to}_{_point(s.point)}" for s in self.sends]


def split_segments(ops: Sequence[Op]) -> list[Segment]:
    """Cut a device's operations into ``[receives] [compute] [sends]`` segments."""
    segments: list[Segment] = []
    current = Segment(0)
    phase = "recv"
    for op in ops:
        kind = "recv" if op[0] == "recv" else "send" if op[0] == "send" else "compute"
        order = {"recv": 0, "compute": 1, "send": 2}
        if order[kind] < order[phase] and current.ops:
            segments.append(current)
            current = Segment(len(segments))
        phase = kind
        current.ops.append(op)
    if current.ops:
        segments.append(current)
    if segments:
        segments[-1].last = True
    return segments


def _have(x: Tensor | None, what: str) -> Tensor:
    """``x``, which the segment's operations must have produced by now."""
    if x is None:
        raise PlanError(f"an ONNX segment uses {what} before it exists (its operations are "
                        f"out of order)")  # fmt: skip
    return x


class SegmentModule(nn.Module):
    """A segment as a torch module: inputs and outputs as :class:`Segment` names them."""

    def __init__(self, net: DeviceNet, segment: Segment) -> None:
        super().__init__()
        self.net = net
        self.segment = segment

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        seg = self.segment
        args = list(inputs)
        x = args.pop(0) if (seg.takes_image or not seg.starts_from_stem) else None
        sent: list[Tensor] = []
        logits: Tensor | None = None
        for op in seg.ops:
            kind = op[0]
            if kind == "input":
                pass  # x is the image
            elif kind == "stem":
                x = self.net.run_stem(_have(x, "the image"))
            elif kind == "block":
                x = self.net.run_block(op[1], _have(x, "the stream"))
            elif kind == "recv":
                received = args.pop(0)
                if op[1].kind == "stem":
                    x = received.to(torch.float32)
                else:
                    x = add_payload(_have(x, "the stream"), received, op[1])
            elif kind == "send":
                sent.append(payload(_have(x, "the stream"), op[1]))
            elif kind == "head":
                logits = self.net.run_head(_have(x, "the stream"))
        outputs: list[Tensor] = []
        if seg.head:
            outputs.append(_have(logits, "the logits"))
        elif not seg.last:
            outputs.append(_have(x, "the stream"))
        return (*outputs, *sent)


def run_segments(
    modules: Sequence[Any], segments: Sequence[Segment], image: Tensor | None, record: list[Any]
) -> Generator[tuple[str, Any, Any], Tensor | None, Tensor | None]:
    """Execute a device segment by segment (``modules[k](*inputs) -> outputs``), yielding
    sends and receives like :func:`snnas.plan._program.run_device`; every segment's inputs
    and outputs are appended to ``record``."""
    stream: Tensor | None = None
    logits: Tensor | None = None
    for module, seg in zip(modules, segments, strict=True):
        inputs: list[Tensor] = []
        if seg.takes_image:
            inputs.append(_have(image, "the image"))
        elif not seg.starts_from_stem:
            inputs.append(_have(stream, "the stream"))
        for receive in seg.receives:
            received = yield ("recv", receive, None)
            inputs.append(_have(received, f"the payload from device {receive.src}"))
        outputs = list(module(*inputs))
        record.append((seg, list(inputs), list(outputs)))
        if seg.head:
            logits = outputs.pop(0)
        elif not seg.last:
            stream = outputs.pop(0)
        for send, tensor in zip(seg.sends, outputs, strict=True):
            yield ("send", send, tensor)
    return logits


def _to_onnx(module: SegmentModule, inputs: Sequence[Tensor]) -> bytes:
    seg = module.segment
    names_in, names_out = seg.input_names(), seg.output_names()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(inputs),
            buffer,  # type: ignore[arg-type]
            dynamo=False,  # the TorchScript exporter: seconds, where dynamo takes minutes here
            input_names=names_in,
            output_names=names_out,
            dynamic_axes={name: {0: "batch"} for name in (*names_in, *names_out)},
            opset_version=17,
        )
    return buffer.getvalue()


def _session(blob: bytes) -> Any:
    """An onnxruntime session on one CPU thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])


def _ort_max_diff(
    blob: bytes, seg: Segment, inputs: Sequence[Tensor], outputs: Sequence[Tensor], where: str
) -> float:
    """The largest difference between the graph's outputs and the torch segment's; refused
    beyond :data:`ONNX_RTOL`."""
    session = _session(blob)
    feed = {name: t.numpy() for name, t in zip(seg.input_names(), inputs, strict=True)}
    got = session.run(None, feed)
    worst = 0.0
    for name, ours, theirs in zip(seg.output_names(), outputs, got, strict=True):
        if tuple(theirs.shape) != tuple(ours.shape) or str(theirs.dtype) != str(ours.numpy().dtype):
            raise PlanError(
                f"{where}: output {name} is {theirs.dtype} {theirs.shape}, "
                f"torch gives {ours.dtype} {tuple(ours.shape)}"
            )
        diff = torch.from_numpy(theirs).float() - ours.float()
        gap = float(diff.abs().max()) if diff.numel() else 0.0
        scale = float(ours.float().abs().max()) if ours.numel() else 0.0
        tolerance = ONNX_RTOL * (1.0 + scale)
        if not gap <= tolerance:  # NaN too
            raise PlanError(f"{where}: output {name} differs from the torch segment by "
                            f"{gap:.3g}, beyond the tolerance {tolerance:.3g} (2^-8 x (1 + "
                            f"max |output|))")  # fmt: skip
        worst = max(worst, gap)
    return worst


@torch.no_grad()
def export_segments(
    plan: dict[str, Any],
    folder: Path,
    weights: Mapping[int, Mapping[str, Tensor]],
    reference: Mapping[str, Tensor],
    *,
    progress: Progress | None = None,
) -> None:
    """Write every device's segments as ONNX files into ``folder`` and record them (file,
    checksum, inputs, outputs, blocks, the onnxruntime check) in ``plan``'s devices."""
    arch = architecture_of(plan)
    nets = {d: DeviceNet(arch, plan["devices"][d]["blocks"], weights.get(d, {})) for d in
            range(len(plan["devices"]))}  # fmt: skip
    segments = {d: split_segments(device_ops(plan["devices"][d])) for d in nets}
    modules = {d: [SegmentModule(nets[d], s) for s in segments[d]] for d in nets}
    # Real inputs for every segment: run the plan segment by segment on validation images.
    from snnas.data import load_dataset

    net = plan["network"]
    data = load_dataset(
        plan["input"]["dataset"], input_size=net["input_size"], input_channels=net["input_channels"]
    )
    images = data.eval_tensors("val")[0][:CHECK_IMAGES]
    records: dict[int, list[Any]] = {d: [] for d in nets}
    inputs_at = set(plan["input"]["devices"])
    gens = {
        d: run_segments(modules[d], segments[d], images if d in inputs_at else None, records[d])
        for d in nets
    }
    logits = drive(gens, len(images))
    expected = reference["val.logits"][:CHECK_IMAGES]
    if float((logits - expected).abs().max()) > 1e-3:
        raise PlanError("the segments do not reproduce the frozen network's logits")
    total = sum(len(s) for s in segments.values())
    done = 0
    for d, recs in records.items():
        entries = []
        for seg, inputs, outputs in recs:
            blob = _to_onnx(modules[d][seg.index], inputs)
            name = f"device{d}_segment{seg.index}.onnx"
            atomic_write_bytes(folder / name, blob)
            entries.append(
                {
                    "index": seg.index,
                    "file": name,
                    "sha256": hashlib.sha256(blob).hexdigest(),
                    "bytes": len(blob),
                    "blocks": seg.blocks,
                    "inputs": seg.input_names(),
                    "outputs": seg.output_names(),
                    "max_abs_diff": _ort_max_diff(
                        blob, seg, inputs, outputs, f"device {d}'s ONNX segment {seg.index}"
                    ),
                }
            )
            done += 1
            if progress:
                progress("onnx", done, total, {"device": d})
        plan["devices"][d]["onnx"] = entries


def _run_session(session: Any, names: Sequence[str]) -> Any:
    """A segment as onnxruntime runs it: tensors in, tensors out."""

    def run(*inputs: Tensor) -> list[Tensor]:
        feed = {n: t.contiguous().numpy() for n, t in zip(names, inputs, strict=True)}
        return [torch.from_numpy(a) for a in session.run(None, feed)]

    return run


@torch.no_grad()
def execute_onnx(plan: LoadedPlan, images: Tensor) -> Tensor:
    """Run the whole plan through onnxruntime, one session per device segment, from the
    plan's own ``.onnx`` files (checked at load), the payloads moved by the same mailbox
    driver as ``plan verify``; device 0's logits."""
    model = plan.model
    where = plan.folder / PLAN_FILE
    if model.parity is not None:
        raise PlanError(f"{where}: --onnx: a plan with parity devices has no ONNX segments")
    gens = {}
    for entry in model.devices:
        d = entry.device
        segments = split_segments(plan.ops[d])
        files = entry.onnx
        if files is None:
            raise PlanError(f"{where}: --onnx: device {d} has no ONNX segments (export the plan "
                            f"with snnas export --onnx)")  # fmt: skip
        names = [(list(s.input_names()), list(s.output_names())) for s in segments]
        if [(list(f.inputs), list(f.outputs)) for f in files] != names:
            raise PlanError(f"{where}: device {d}: onnx: the segments' inputs and outputs are not "
                            f"those of its operations")  # fmt: skip
        runners = []
        for seg, ref in zip(segments, files, strict=True):
            session = _session((plan.folder / ref.file.file).read_bytes())
            runners.append(_run_session(session, seg.input_names()))
        image = images if entry.input else None
        gens[d] = run_segments(runners, segments, image, [])
    return drive(gens, len(images))


def verify_onnx(plan: LoadedPlan, split: str = "val") -> dict[str, Any]:
    """``plan verify --onnx``: the whole plan through onnxruntime (:func:`execute_onnx`) on
    ``split``, compared with the stored reference logits with verify's tolerance."""
    images, labels, reference = split_images(plan, split)
    logits = execute_onnx(plan, images)
    report = compare_logits(logits, reference[f"{split}.logits"], labels)
    report["segments"] = sum(len(e.onnx or ()) for e in plan.model.devices)
    report["compared_with"] = str(plan.folder / plan.model.reference.file)
    report["passed"] = passed(report)
    return report
