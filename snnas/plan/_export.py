"""``snnas export``: a fine-tuned policy as a plan folder a device owner can ship.

The folder holds ``plan.json`` (validated against the shipped JSON Schema), the space file,
one safetensors weights file per active device (its own parameters only, batch norm folded),
the frozen network's logits on the validation and test splits (``reference.safetensors``,
what ``plan verify`` and ``snnas run`` compare against) and, with ``onnx``, one ONNX graph per
device segment. It is written to a temporary folder and renamed into place, so a reader
sees the old plan or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from snnas import __version__
from snnas._io import atomic_write_bytes, atomic_write_json
from snnas._run import Progress
from snnas.cost import DeviceProfile, communication, compute, latency, liveness, stem_bytes
from snnas.data import DataSplits
from snnas.errors import PlanError
from snnas.models import FrozenSepResNeXt
from snnas.plan._program import Receive, Send
from snnas.plan._schema import SCHEMA_VERSION, validate_plan
from snnas.plan._weights import device_weights
from snnas.space import SearchSpace, policy_json

__all__ = ["PLAN_FILE", "build_plan", "export_plan", "sha256_file"]

PLAN_FILE = "plan.json"
SPACE_FILE = "space.toml"
REFERENCE_FILE = "reference.safetensors"


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _transfers(
    space: SearchSpace, policy: Mapping[str, Any], encodings: bool = False
) -> tuple[Any, ...]:
    """The live transfers as (Send, Receive) pairs, stem copies first (with ``encodings``,
    what the parity devices read is live too)."""
    flow = liveness(space, policy, encodings=encodings)
    net = space.network
    pairs: list[tuple[int, int, Send, Receive]] = []
    shape = (net.stem_width, net.input_size, net.input_size)
    for dst in flow.stem_receivers:
        nbytes = stem_bytes(space)
        send = Send("stem", None, -1, dst, (0, net.stem_width), "float32", shape, nbytes)
        recv = Receive("stem", None, 0, -1, -1, (0, net.stem_width), "float32", shape, nbytes)
        pairs.append((0, dst, send, recv))
    for t in flow.live_transfers:
        shape = (t.n_send, t.size, t.size)
        send = Send(
            "transfer", t.point, t.send_block, t.dst, (0, t.n_send), t.dtype, shape, t.bytes
        )
        recv = Receive(
            "transfer",
            t.point,
            t.src,
            t.send_block,
            t.aggregate_block,
            (0, t.n_send),
            t.dtype,
            shape,
            t.bytes,
        )
        pairs.append((t.src, t.dst, send, recv))
    return flow, pairs


def _send_json(s: Send) -> dict[str, Any]:
    return {
        "kind": s.kind,
        "point": s.point,
        "after_block": s.after_block,
        "to": s.to,
        "channels": list(s.channels),
        "wire_dtype": s.wire_dtype,
        "shape": list(s.shape),
        "bytes": s.bytes,
    }


def _receive_json(r: Receive) -> dict[str, Any]:
    return {
        "kind": r.kind,
        "point": r.point,
        "from": r.src,
        "sent_after_block": r.sent_after_block,
        "after_block": r.after_block,
        "channels": list(r.channels),
        "wire_dtype": r.wire_dtype,
        "shape": list(r.shape),
        "bytes": r.bytes,
    }


def build_plan(
    space: SearchSpace,
    model: FrozenSepResNeXt,
    data: DataSplits,
    profile: DeviceProfile,
    accuracy: Mapping[str, Any],
    coded: Any = None,
) -> tuple[dict[str, Any], dict[int, dict[str, Tensor]]]:
    """``plan.json``'s content without files (their names, checksums and sizes are filled in
    by :func:`export_plan`) and every active device's weights. ``coded``: the
    ``CodedNetwork`` of a space with parity devices (``model`` is its base)."""
    from snnas.plan._parity import encoding_pairs

    policy = model.policy
    arch = space.arch
    flow, pairs = _transfers(space, policy, encodings=coded is not None)
    enc_pairs = encoding_pairs(space, policy) if coded is not None else []
    comm = communication(space, policy)
    comp = compute(space, policy)
    lat = latency(space, policy, profile)
    net = space.network
    devices, weights = [], {}
    for d in range(space.groups):
        blocks = list(flow.live_blocks[d])
        head = d == 0
        sends = [s for src, _, s, _ in (*pairs, *enc_pairs) if src == d]
        receives = [r for _, dst, _, r in pairs if dst == d]
        if head or blocks:
            weights[d] = device_weights(model, arch, d, blocks, head)
        devices.append(
            {
                "device": d,
                "role": "data",
                "input": head,
                "stem": head,
                "head": head,
                "blocks": blocks,
                "skipped_blocks": list(flow.skipped_blocks(d)),
                "sends": [_send_json(s) for s in sends],
                "receives": [_receive_json(r) for r in receives],
                "weights": None,
                "flops": comp.live_flops_per_device[d],
                "params": sum(t.numel() for t in weights.get(d, {}).values()),
            }
        )
    links: dict[tuple[int, int], int] = {}
    for src, dst, s, _ in pairs:
        links[(src, dst)] = links.get((src, dst), 0) + s.bytes
    stem_total = sum(s.bytes for _, _, s, _ in pairs if s.kind == "stem")
    transfer_total = sum(s.bytes for _, _, s, _ in pairs if s.kind == "transfer")
    plan: dict[str, Any] = {
        "format": "snnas-plan",
        "schema_version": SCHEMA_VERSION,
        "created": {"snnas": __version__, "torch": torch.__version__},
        "space": {"name": space.name, "hash": space.hash, "file": SPACE_FILE},
        "policy": policy_json(policy),
        "network": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(net).items()},
        "schedule": {
            "groups": space.groups,
            "alpha": space.alpha,
            "overlap": space.overlap,
            "blocks": arch.num_blocks,
            "points": [
                {
                    "point": p.index,
                    "send_block": p.block,
                    "aggregate_block": p.aggregate_block,
                    "channels": p.channels,
                    "size": p.size,
                }
                for p in arch.points
            ],
        },
        "input": {
            "shape": [1, net.input_channels, net.input_size, net.input_size],
            "dtype": "float32",
            "dataset": data.name,
            "normalization": dict(data.normalization or {}),
            "devices": [0],
        },
        "output": {"device": 0, "shape": [1, net.num_classes], "dtype": "float32"},
        "devices": devices,
        "totals": {
            "bytes_per_image": stem_total + transfer_total,
            "stem_bytes": stem_total,
            "transfer_bytes": transfer_total,
            "links": [
                {"from": src, "to": dst, "bytes": n} for (src, dst), n in sorted(links.items())
            ],
            "raw_policy_bytes": comm.policy_bytes,
            "live_policy_bytes": comm.live_policy_bytes,
            "ratio": comm.ratio,
            "live_ratio": comm.live_ratio,
            "flops": comp.live_total_flops,
        },
        "prediction": {
            "profile": profile.name,
            "flops_per_s": profile.flops,
            "bandwidth_bps": profile.bandwidth_bps,
            "link_latency_s": profile.link_latency_s,
            "latency_ms": 1e3 * lat.latency_s,
            "compute_ms": 1e3 * lat.compute_only_s,
            "exposed_transfer_ms": 1e3 * lat.exposed_transfer_s,
            "single_device_ms": 1e3 * lat.single_device_s,
            "speedup": lat.speedup,
        },
        "accuracy": {
            "val": float(accuracy["val_acc"]),
            "test": float(accuracy["test_acc"]),
            "selected_epoch": int(accuracy["selected_epoch"]),
        },
        "reference": {"file": REFERENCE_FILE, "sha256": "0" * 64, "splits": {}},
    }
    if coded is None:
        assert transfer_total == comm.live_policy_bytes
    else:
        from snnas.plan._parity import parity_section

        parity, parity_weights = parity_section(space, coded, plan, flow, enc_pairs)
        plan["parity"] = parity
        weights.update(parity_weights)
    return plan, weights


@torch.no_grad()
def reference_logits(model: FrozenSepResNeXt, data: DataSplits) -> dict[str, Tensor]:
    """The frozen network's logits (eval mode) and the labels of the validation and test
    splits."""
    model = model.eval()
    out: dict[str, Tensor] = {}
    for split in ("val", "test"):
        images, labels = data.eval_tensors(split)
        logits = torch.cat([model(images[i : i + 256]) for i in range(0, len(images), 256)])
        out[f"{split}.logits"] = logits.float().contiguous()
        out[f"{split}.labels"] = labels.to(torch.int64).contiguous()
    return out


def _safetensors_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> bytes:
    from safetensors.torch import save

    return save(dict(tensors), metadata=dict(metadata))


def export_plan(
    space: SearchSpace,
    model: FrozenSepResNeXt,
    data: DataSplits,
    profile: DeviceProfile,
    accuracy: Mapping[str, Any],
    out: Path,
    *,
    source: Mapping[str, Any] | None = None,
    onnx: bool = False,
    progress: Progress | None = None,
    coded: Any = None,
) -> dict[str, Any]:
    """Write the plan folder ``out`` (replacing an older plan there) and return the plan.
    ``coded``: the ``CodedNetwork`` whose base is ``model``, for a space with parity
    devices (they become devices of the plan, docs/plan.md)."""
    model = model.cpu().eval()
    if coded is not None:
        coded = coded.cpu().eval()
    plan, weights = build_plan(space, model, data, profile, accuracy, coded)
    if source is not None:
        plan["source"] = dict(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # a plan is shipped: as readable as any folder made here
    try:
        files: dict[str, bytes] = {}
        files[SPACE_FILE] = (space.config.source or "").encode("utf-8")
        for d, tensors in weights.items():
            name = f"device{d}.safetensors"
            meta = {"format": "snnas-device-weights", "device": str(d), "space_hash": space.hash}
            files[name] = _safetensors_bytes(tensors, meta)
            entry = plan["devices"][d]
            entry["weights"] = {
                "file": name,
                "sha256": sha256_bytes(files[name]),
                "bytes": len(files[name]),
            }
        reference = reference_logits(model, data)
        if coded is not None:
            from snnas.plan._parity import IMPUTE_FILE, degraded_reference, impute_tensors

            reference.update(degraded_reference(coded, data, progress))
            files[IMPUTE_FILE] = _safetensors_bytes(
                impute_tensors(coded), {"format": "snnas-impute", "space_hash": space.hash}
            )
            plan["parity"]["impute"] = {
                "file": IMPUTE_FILE,
                "sha256": sha256_bytes(files[IMPUTE_FILE]),
                "bytes": len(files[IMPUTE_FILE]),
            }
        files[REFERENCE_FILE] = _safetensors_bytes(
            reference, {"format": "snnas-reference", "space_hash": space.hash}
        )
        plan["reference"] = {
            "file": REFERENCE_FILE,
            "sha256": sha256_bytes(files[REFERENCE_FILE]),
            "splits": {s: len(reference[f"{s}.labels"]) for s in ("val", "test")},
        }
        for name, blob in files.items():
            atomic_write_bytes(staging / name, blob)
        if onnx and coded is not None:
            raise PlanError("--onnx: ONNX segments of a plan with parity devices are not built")
        if onnx:
            from snnas.plan._onnx import export_segments

            export_segments(plan, staging, weights, reference, progress=progress)
        validate_plan(plan, str(out / PLAN_FILE))
        atomic_write_json(staging / PLAN_FILE, plan)
        for path in staging.iterdir():
            path.chmod(0o666 & ~umask)  # temporary files are private; the plan's are not
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return plan


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; an older plan there is moved aside, then removed."""
    if out.is_symlink():
        raise PlanError(f"{out}: is a symbolic link; refusing to replace it (choose another --out)")
    if out.exists() and not out.is_dir():
        raise PlanError(f"{out}: exists and is not a plan folder; choose another --out")
    old = None
    if out.exists():
        if not (out / PLAN_FILE).is_file() and any(out.iterdir()):
            raise PlanError(f"{out}: a non-empty folder that holds no plan; choose another --out")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
