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
from snnas.errors import PlanError
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

__all__ = ["Segment", "export_segments", "split_segments"]

_COMPUTE = ("input", "stem", "block", "head")
#: Validation images the graphs are checked on.
CHECK_IMAGES = 16


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
                assert x is not None
                x = self.net.run_stem(x)
            elif kind == "block":
                assert x is not None
                x = self.net.run_block(op[1], x)
            elif kind == "recv":
                received = args.pop(0)
                if op[1].kind == "stem":
                    x = received.to(torch.float32)
                else:
                    assert x is not None
                    x = add_payload(x, received, op[1])
            elif kind == "send":
                assert x is not None
                sent.append(payload(x, op[1]))
            elif kind == "head":
                assert x is not None
                logits = self.net.run_head(x)
        outputs: list[Tensor] = []
        if seg.head:
            assert logits is not None
            outputs.append(logits)
        elif not seg.last:
            assert x is not None
            outputs.append(x)
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
            assert image is not None
            inputs.append(image)
        elif not seg.starts_from_stem:
            assert stream is not None
            inputs.append(stream)
        for receive in seg.receives:
            received = yield ("recv", receive, None)
            assert received is not None
            inputs.append(received)
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


def _ort_max_diff(
    blob: bytes, seg: Segment, inputs: Sequence[Tensor], outputs: Sequence[Tensor]
) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    feed = {name: t.numpy() for name, t in zip(seg.input_names(), inputs, strict=True)}
    got = session.run(None, feed)
    worst = 0.0
    for name, ours, theirs in zip(seg.output_names(), outputs, got, strict=True):
        if tuple(theirs.shape) != tuple(ours.shape) or str(theirs.dtype) != str(ours.numpy().dtype):
            raise PlanError(
                f"ONNX segment {seg.index}: output {name} is {theirs.dtype} {theirs.shape}, "
                f"torch gives {ours.dtype} {tuple(ours.shape)}"
            )
        diff = torch.from_numpy(theirs).float() - ours.float()
        worst = max(worst, float(diff.abs().max()) if diff.numel() else 0.0)
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
    from snnas.engine import drive

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
                    "max_abs_diff": _ort_max_diff(blob, seg, inputs, outputs),
                }
            )
            done += 1
            if progress:
                progress("onnx", done, total, {"device": d})
        plan["devices"][d]["onnx"] = entries
