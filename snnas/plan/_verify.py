"""``snnas plan verify``: executing a loaded plan in one process (loading: ``_load.py``).

``verify_plan`` loads the plan (every check of :func:`~snnas.plan._load.load_plan`), then
executes the whole plan in one process, device by device, from the plan's own files (a
mailbox stands in for the network), and compares the answers with the frozen network's on
the validation split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import Tensor

from snnas.errors import PlanError, shorten
from snnas.plan._files import PLAN_FILE, sha256_file
from snnas.plan._load import LoadedPlan, load_plan
from snnas.plan._program import WIRE_DTYPES, DeviceNet, Receive, Send, run_device

__all__ = ["LoadedPlan", "compare_logits", "drive", "execute_plan", "load_plan", "verify_plan"]

#: Numerical tolerance of verification, relative to the logits' scale: a plan passes when no
#: logit differs from the frozen network's by more than ``RTOL * (1 + max |logit|)`` and every
#: answer agrees, except where the frozen network's top two logits are closer than that.
#: (Float16 payloads round a last-bit difference of the convolutions either way; one such
#: step is 2**-11 of the value, and it travels through the blocks after it.)
RTOL = 1e-3


@torch.no_grad()
def execute_plan(
    plan: LoadedPlan, images: Tensor, nets: Mapping[int, DeviceNet] | None = None
) -> Tensor:
    """Run every device of ``plan`` on ``images`` in this process and return device 0's
    logits (see :func:`drive`)."""
    nets = nets if nets is not None else {d: plan.net(d) for d in range(plan.world)}
    if plan.parity is not None:
        from snnas.plan._erasure import execute_degraded

        return execute_degraded(plan, images, None, nets)
    inputs = set(plan.data["input"]["devices"])
    gens = {
        d: run_device(nets[d], plan.ops[d], images if d in inputs else None)
        for d in range(plan.groups)
    }
    return drive(gens, len(images))


def drive(gens: Mapping[int, Generator[tuple[str, Any, Any], Any, Any]], batch: int) -> Tensor:
    """Run device generators (``run_device`` and the like) to the end in one process. A
    mailbox carries the payloads; a device whose payload has not been sent yet waits (is
    skipped) until it has. A plan that can never finish is refused."""
    mailbox: dict[tuple[int, int, int], Tensor] = {}
    answers = run_mailbox(gens, batch, mailbox)
    if mailbox:
        raise PlanError(f"payloads sent but never received: {sorted(mailbox)}")
    if not answers:
        raise PlanError("no device produced logits (the plan has no head)")
    return next(iter(answers.values()))


def run_mailbox(
    gens: Mapping[int, Generator[tuple[str, Any, Any], Any, Any]],
    batch: int,
    mailbox: dict[tuple[int, int, int], Tensor],
    *,
    post: Callable[[int, Send], bool] | None = None,
    resolve: Callable[[int, Receive], tuple[int, int, int] | Tensor] | None = None,
    on_state: Callable[[int, Any, Tensor], None] | None = None,
) -> dict[int, Tensor]:
    """The one-process executor behind :func:`drive` and the degraded execution of parity
    plans: every generator's requests are served until all have returned; returns what each
    device returned (its answer), by device.

    A ``("send", Send, tensor)`` is posted to ``mailbox`` under ``(device, to, tag)`` unless
    ``post`` says not to; a ``("receive", Receive, None)`` is answered from ``mailbox`` under
    the key ``resolve`` gives (default ``(src, device, tag)``), or with the tensor it makes;
    a ``("state", point, tensor)`` goes to ``on_state``. Every payload is checked against the
    receive's shape and wire dtype; a plan that can never finish is refused."""
    active = dict(gens)
    requests: dict[int, Any] = {}
    answers: dict[int, Tensor] = {}

    def advance(d: int, value: Tensor | None) -> None:
        try:
            requests[d] = active[d].send(value) if d in requests else next(active[d])
        except StopIteration as stop:
            requests.pop(d, None)
            del active[d]
            if stop.value is not None:
                answers[d] = stop.value

    for d in list(active):
        advance(d, None)
    while active:
        moved = False
        for d in list(active):
            kind, op, tensor = requests[d]
            if kind == "state":
                if on_state is not None:
                    on_state(d, op, tensor)
                advance(d, None)
            elif kind == "send":
                send: Send = op
                if post is None or post(d, send):
                    mailbox[(d, send.to, send.tag)] = tensor
                advance(d, None)
            else:
                receive: Receive = op
                where = resolve(d, receive) if resolve is not None else None
                if isinstance(where, Tensor):
                    advance(d, where.expand(batch, *where.shape[1:]))
                    moved = True
                    continue
                key = where if where is not None else (receive.src, d, receive.tag)
                if key not in mailbox:
                    continue
                payload = mailbox.pop(key)
                expected = (batch, *receive.shape)
                dtype = WIRE_DTYPES[receive.wire_dtype]
                if tuple(payload.shape) != expected or payload.dtype != dtype:
                    raise PlanError(
                        f"device {d} expected {expected} {receive.wire_dtype} from device "
                        f"{receive.src}, got {tuple(payload.shape)} {payload.dtype}"
                    )
                advance(d, payload)
            moved = True
        if not moved:
            waiting = {d: (requests[d][1].src, requests[d][1].point) for d in active}
            raise PlanError(f"the plan cannot finish: devices wait on (sender, point) {waiting}")
    return answers


def compare_logits(logits: Tensor, reference: Tensor, labels: Tensor) -> dict[str, Any]:
    """Agreement of ``logits`` with ``reference``, and accuracy against ``labels``.

    ``tolerance`` is ``RTOL * (1 + max |reference|)``; ``disagreements_beyond_tolerance``
    counts the images whose answers differ although the reference's top two logits are
    further apart than the tolerance (a real disagreement, not a numerical tie).
    """
    n = len(labels)
    ours, theirs = logits.argmax(1), reference.argmax(1)
    tolerance = RTOL * (1.0 + float(reference.abs().max())) if n else RTOL
    top2 = reference.topk(min(2, reference.shape[1]), dim=1).values
    margin = top2[:, 0] - top2[:, -1]
    decided = margin > tolerance
    return {
        "images": n,
        "top1_agreement": int((ours == theirs).sum()) / max(n, 1),
        "max_abs_diff": float((logits - reference).abs().max()) if n else 0.0,
        "tolerance": tolerance,
        "disagreements_beyond_tolerance": int(((ours != theirs) & decided).sum()),
        "accuracy": int((ours == labels).sum()) / max(n, 1),
        "reference_accuracy": int((theirs == labels).sum()) / max(n, 1),
    }


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
        from snnas.plan._erasure import verify_degraded

        report["degraded"] = verify_degraded(plan, images, labels, reference, split, nets)
        report["passed"] = report["passed"] and report["degraded"]["passed"]
    return report


def passed(report: Mapping[str, Any]) -> bool:
    """Whether a comparison (:func:`compare_logits`) is within the tolerance."""
    return bool(
        report["disagreements_beyond_tolerance"] == 0
        and math.isfinite(report["max_abs_diff"])
        and report["max_abs_diff"] <= report["tolerance"]
    )
