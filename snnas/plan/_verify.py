"""``snnas plan verify``: executing a loaded plan in one process (loading: ``_load.py``).

``verify_plan`` loads the plan (every check of :func:`~snnas.plan._load.load_plan`), then
executes the whole plan in one process, device by device, from the plan's own files (a
mailbox stands in for the network), and compares the answers with the frozen network's on
the validation split.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import Tensor

from snnas.engine import drive, run_device
from snnas.errors import PlanError, shorten
from snnas.plan._compare import RTOL, compare_logits, passed
from snnas.plan._erasure import execute_degraded, verify_degraded
from snnas.plan._files import PLAN_FILE, sha256_file
from snnas.plan._load import LoadedPlan, load_plan
from snnas.plan._program import DeviceNet

__all__ = [
    "RTOL",
    "LoadedPlan",
    "compare_logits",
    "drive",
    "execute_plan",
    "load_plan",
    "passed",
    "split_images",
    "verify_plan",
]


@torch.inference_mode()
def execute_plan(
    plan: LoadedPlan,
    images: Tensor,
    nets: Mapping[int, DeviceNet] | None = None,
    *,
    chunk: int | None = None,
) -> Tensor:
    """Run every device of ``plan`` on ``images`` in this process (the engine with a
    mailbox) and return the answer (device 0's logits); ``chunk``: at most that many images
    at a time (bounds the memory of one call; ``Plan.forward`` and ``snnas run --input``)."""
    nets = nets if nets is not None else {d: plan.net(d) for d in range(plan.world)}
    if chunk is not None and len(images) > chunk:
        parts = [
            execute_plan(plan, images[i : i + chunk], nets) for i in range(0, len(images), chunk)
        ]
        return torch.cat(parts)  # (N, num_classes)
    if plan.parity is not None:
        return execute_degraded(plan, images, None, nets)
    inputs = set(plan.data["input"]["devices"])
    programs = {
        d: run_device(nets[d], plan.ops[d], images if d in inputs else None)
        for d in range(plan.groups)
    }
    return drive(programs, len(images))


def _frozen_reference(
    plan: LoadedPlan, images: Tensor, reference_run: str | Path | None
) -> tuple[Tensor, str] | None:
    """The frozen network's logits recomputed from ``reference_run``, a run folder the user
    names, whose checkpoint must be the one the plan was exported from (``source.sha256``);
    None without one. The plan's ``source.run`` is never opened: a plan from someone else
    does not choose what ``plan verify`` reads."""
    from snnas._run import RunDir
    from snnas.space import space_from_text
    from snnas.space._toml import read_user_file
    from snnas.train._finetune import load_finetuned

    if reference_run is None:
        return None
    src = plan.model.source
    where = plan.folder / PLAN_FILE
    if src is None:
        raise PlanError(f"{where}: source: the plan records no checkpoint to compare with "
                        f"(--reference-run needs one)")  # fmt: skip
    if plan.parity is not None:
        raise PlanError(f"{where}: --reference-run: a plan with parity devices is compared "
                        f"with its stored reference (the coded network's)")  # fmt: skip
    rel = PurePosixPath(src.checkpoint)
    if rel.is_absolute() or ".." in rel.parts or "\\" in src.checkpoint:
        raise PlanError(f"{where}: source.checkpoint: expected a path inside the run, found "
                        f"{shorten(src.checkpoint, 80, quote=True)}")  # fmt: skip
    checkpoint = Path(reference_run) / rel
    if checkpoint.is_symlink() or not checkpoint.is_file():
        raise PlanError(f"{shorten(str(checkpoint))}: --reference-run: no fine-tuned "
                        f"checkpoint there")  # fmt: skip
    if sha256_file(checkpoint) != src.sha256:
        raise PlanError(f"{shorten(str(checkpoint))}: --reference-run: not the checkpoint the "
                        f"plan was exported from (sha256 differs from source.sha256)")  # fmt: skip
    space_file = plan.folder / plan.model.space.file
    space = space_from_text(read_user_file(space_file, "<space>", "space file"), str(space_file))
    model = load_finetuned(RunDir(checkpoint.parent), space)
    with torch.no_grad():
        logits = torch.cat([model(images[i : i + 256]) for i in range(0, len(images), 256)])
    return logits, str(checkpoint)


def split_images(plan: LoadedPlan, split: str) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """The images and labels of ``split`` (checked against the exported labels) and the
    plan's reference tensors."""
    from snnas.data import load_dataset

    reference = plan.reference()
    if f"{split}.logits" not in reference:
        raise PlanError(f"{plan.folder}: no reference logits for split {split!r}")
    labels = reference[f"{split}.labels"]
    net = plan.model.network
    data = load_dataset(
        plan.model.input.dataset,
        input_size=net["input_size"],
        input_channels=net["input_channels"],
    )
    images, data_labels = data.eval_tensors(split)
    if not torch.equal(data_labels, labels):
        raise PlanError(f"{plan.folder}: the {split} split differs from the one exported")
    return images, labels, reference


def verify_plan(
    folder: str | Path, split: str = "val", reference_run: str | Path | None = None
) -> dict[str, Any]:
    """Check and execute the plan (module docstring); the report has ``top1_agreement``,
    ``max_abs_diff``, ``accuracy``, ``passed`` and what it was compared with: the stored
    reference logits, or the frozen network recomputed from ``reference_run`` (a run folder
    the caller names; nothing outside the plan folder is read otherwise)."""
    plan = load_plan(folder)
    images, labels, reference = split_images(plan, split)
    nets = {d: plan.net(d) for d in range(plan.world)}
    logits = execute_plan(plan, images, nets)
    frozen = _frozen_reference(plan, images, reference_run)
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
