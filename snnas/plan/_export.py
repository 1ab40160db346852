"""``snnas export``: a fine-tuned policy as a plan folder a device owner can ship.

The folder holds ``plan.json`` (validated against the shipped JSON Schema), the space file,
one safetensors weights file per active device (its own parameters only, batch norm folded),
the frozen network's logits on the validation and test splits (``reference.safetensors``,
what ``plan verify`` and ``snnas run`` compare against) and, with ``onnx``, one ONNX graph per
device segment. It is written to a temporary folder and renamed into place, so a reader
sees the old plan or the new one, never a mix.
"""

from __future__ import annotations

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
from snnas.cost import DeviceProfile
from snnas.data import DataSplits
from snnas.errors import PlanError
from snnas.models import FrozenSepResNeXt
from snnas.plan._derive import derive
from snnas.plan._files import PLAN_FILE, sha256_bytes, sha256_file
from snnas.plan._model import Plan
from snnas.plan._onnx import export_segments
from snnas.plan._parity import IMPUTE_FILE, degraded_reference, impute_tensors, parity_weights
from snnas.plan._schema import SCHEMA_VERSION
from snnas.plan._weights import device_weights
from snnas.space import SearchSpace, policy_json

__all__ = ["PLAN_FILE", "build_plan", "export_plan", "sha256_file"]

SPACE_FILE = "space.toml"
REFERENCE_FILE = "reference.safetensors"


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
    ``CodedNetwork`` of a space with parity devices (``model`` is its base). Everything but
    the weights comes from :func:`snnas.plan._derive.derive`, what the loader checks."""
    policy = model.policy
    g = space.groups
    answers = None if coded is None else [bool(a) for a in coded.parity.answers.tolist()]
    derived = derive(space, policy, profile, answers)
    weights: dict[int, dict[str, Tensor]] = {}
    for entry in derived["devices"]:
        d = entry["device"]
        if entry["role"] == "parity":
            weights[d] = parity_weights(coded.parity, d - g, policy, entry["blocks"])
        elif entry["head"] or entry["blocks"]:
            weights[d] = device_weights(model, space.arch, d, entry["blocks"], entry["head"])
        params = sum(t.numel() for t in weights.get(d, {}).values())
        if params != entry["params"]:
            raise PlanError(f"device {d}: its weights hold {params} values, its blocks need "
                            f"{entry['params']}")  # fmt: skip
        entry["weights"] = None
    net = space.network
    plan: dict[str, Any] = {
        "format": "snnas-plan",
        "schema_version": SCHEMA_VERSION,
        "created": {"snnas": __version__, "torch": torch.__version__},
        "space": {"name": space.name, "hash": space.hash, "file": SPACE_FILE},
        "policy": policy_json(policy),
        "network": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(net).items()},
        "schedule": derived["schedule"],
        "input": {
            "shape": [1, net.input_channels, net.input_size, net.input_size],
            "dtype": "float32",
            "dataset": data.name,
            "normalization": dict(data.normalization or {}),
            "devices": derived["input_devices"],
        },
        "output": derived["output"],
        "devices": derived["devices"],
        "totals": derived["totals"],
        "prediction": derived["prediction"],
        "accuracy": {
            "val": float(accuracy["val_acc"]),
            "test": float(accuracy["test_acc"]),
            "selected_epoch": int(accuracy["selected_epoch"]),
        },
        "reference": {"file": REFERENCE_FILE, "sha256": "0" * 64, "splits": {}},
    }
    if coded is not None:
        plan["parity"] = {**derived["parity"], "impute": None}
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
            export_segments(plan, staging, weights, reference, progress=progress)
        if source is not None:
            plan["source"] = dict(source)
        document = Plan.from_json(plan, str(out / PLAN_FILE)).to_json()  # the schema, too
        atomic_write_json(staging / PLAN_FILE, document)
        for path in staging.iterdir():
            path.chmod(0o666 & ~umask)  # temporary files are private; the plan's are not
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return document


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system cannot."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not on this file system
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def _swap_into_place(staging: Path, out: Path) -> None:
    """Put ``staging`` at ``out``. An older plan there is exchanged with it in one step (a
    crash at any moment leaves the old plan or the new one at ``out``, never neither), then
    removed; where the system cannot exchange folders, it is moved aside first."""
    if out.is_symlink():
        raise PlanError(f"{out}: is a symbolic link; refusing to replace it (choose another --out)")
    if out.exists() and not out.is_dir():
        raise PlanError(f"{out}: exists and is not a plan folder; choose another --out")
    if not out.exists():
        os.replace(staging, out)
        return
    if not (out / PLAN_FILE).is_file() and any(out.iterdir()):
        raise PlanError(f"{out}: a non-empty folder that holds no plan; choose another --out")
    if _exchange(staging, out):
        shutil.rmtree(staging, ignore_errors=True)  # now the old plan
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
