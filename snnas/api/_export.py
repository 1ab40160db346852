"""``snnas.export``: a fine-tuned run as a deployment plan folder.

Which checkpoint a plan is cut from (the fine-tuning's ``best.pt``, selected on validation;
with parity devices, the parity run's coded network), its provenance (the run, the
checkpoint and its SHA-256) and the accuracies it records (``finetune/final.json``, checked)
are decided here, for ``snnas export`` and the Python API alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snnas._run import Progress, RunDir, check_state, explicit_folder, resolve_run
from snnas.api._finetune import FinetuneResult, run_folder
from snnas.api._progress import reporting
from snnas.api._search import SearchRun
from snnas.errors import CheckpointError, PlanError, UsageError, shorten

if TYPE_CHECKING:
    from snnas.api._plan import Plan
    from snnas.cost import DeviceProfile

__all__ = ["ExportJob", "check_target", "export"]


def check_target(out: Path) -> None:
    """Refuse a plan folder ``out`` that export would not replace (a link, a file, a
    non-empty folder that holds no plan), before any work: export replaces only a plan."""
    from snnas.plan import PLAN_FILE

    where = shorten(str(out))
    if out.is_symlink():
        raise PlanError(
            f"{where}: is a symbolic link; refusing to replace it (choose another --out)"
        )
    if out.exists() and not out.is_dir():
        raise PlanError(f"{where}: exists and is not a plan folder; choose another --out")
    if out.is_dir() and not (out / PLAN_FILE).is_file() and any(out.iterdir()):
        raise PlanError(f"{where}: a non-empty folder that holds no plan; choose another --out")


def _final(tuned: RunDir) -> dict[str, Any]:
    """``finetune/final.json``: the accuracies the plan records, checked (finite, in [0, 1])."""
    path = tuned / "final.json"
    final = tuned.read_json("final.json")
    if not isinstance(final, dict):
        raise CheckpointError(f"{shorten(str(path))}: expected a JSON object")
    check_state(path, final, {"val_acc": (float, int), "test_acc": (float, int),
                              "selected_epoch": int})  # fmt: skip
    for key in ("val_acc", "test_acc"):
        if not 0 <= final[key] <= 1:
            raise CheckpointError(
                f"{shorten(str(path))}: {key} should be an accuracy in [0, 1], found {final[key]!r}"
            )
    if final["selected_epoch"] < 0:
        raise CheckpointError(f"{shorten(str(path))}: selected_epoch should be >= 0")
    return final


def _parity_run(run: RunDir, name: str) -> Any:
    """The coded network of the run's parity folder ``name``, refused in one line when
    missing or not made from the run's fine-tuned network."""
    from snnas.models import FrozenSepResNeXt
    from snnas.train._parity import load_parity_run

    label = run.path.name
    folder = RunDir(resolve_run(run.path, name, "--parity"))
    if not (folder.path / "config.json").is_file() or not (folder.path / "best.pt").is_file():
        raise CheckpointError(
            f"{folder.path}: no parity run (config.json and best.pt) for the parity devices; "
            f"run snnas parity train {label} first (or pass --parity NAME)"
        )
    coded = load_parity_run(folder)
    if not isinstance(coded.base, FrozenSepResNeXt):
        raise CheckpointError(
            f"{folder.path}: a parity run of the supernet, expected one of the fine-tuned "
            f"network (snnas parity train {label} without --supernet)"
        )
    return coded


class ExportJob:
    """An export checked and ready to run: the run, its fine-tuning, the parity run, the
    profile and the target folder were checked and the data loaded when it was made.

    Args: see :func:`export`; ``out`` is the plan folder (``None``: ``RUN/plan``).
    """

    def __init__(
        self,
        run: SearchRun | FinetuneResult | str | Path,
        *,
        out: str | Path | None = None,
        onnx: bool = False,
        profile: DeviceProfile | str = "rpi3b+",
        data_dir: str | Path | None = None,
        parity: str | None = None,
    ) -> None:
        from snnas.cost import DeviceProfile, get_profile
        from snnas.data import load_for_space
        from snnas.plan import sha256_file
        from snnas.search._artifacts import load_run_space
        from snnas.train._finetune import BEST, FINETUNE_DIR, load_finetuned

        self.run_dir = folder = run_folder(run)
        self.target = explicit_folder(out, "out") if out is not None else folder.path / "plan"
        check_target(self.target)  # before anything is loaded
        if isinstance(profile, DeviceProfile):
            self.profile = profile
        else:
            self.profile = get_profile(profile, "--profile")
        space, config = load_run_space(folder)
        tuned = RunDir(folder / FINETUNE_DIR)
        if not (tuned / "final.json").is_file():
            raise CheckpointError(
                f"{folder.path}: not fine-tuned yet (no {FINETUNE_DIR}/final.json); "
                f"run snnas finetune {folder.path.name} first"
            )
        self.coded = None
        if parity is not None or space.parity.r >= 1:
            self.coded = _parity_run(folder, parity or "parity")
            space, self.model = self.coded.space, self.coded.base
            if onnx:
                raise UsageError("--onnx", "a plan without parity devices", "--parity")
        else:
            self.model = load_finetuned(tuned, space)
        self.final = _final(tuned)
        self.data = load_for_space(config["dataset"], space, data_dir)
        self.space, self.onnx = space, onnx
        self.source = {
            "run": str(folder.path),
            "checkpoint": f"{FINETUNE_DIR}/{BEST}",
            "sha256": sha256_file(tuned / BEST),
        }

    def run(self, progress: Progress | None = None) -> dict[str, Any]:
        """Write the plan folder (atomically: the old plan or the new one, never a mix) and
        return its ``plan.json``."""
        from snnas.plan import export_plan

        # Its parent is made here, as the user named it; the plan is staged beside it.
        os.makedirs(self.target.parent, exist_ok=True)
        return export_plan(
            self.space, self.model, self.data, self.profile, self.final, self.target,
            source=self.source, onnx=self.onnx, progress=progress, coded=self.coded,
        )  # fmt: skip


def export(
    run: SearchRun | FinetuneResult | str | Path,
    *,
    out: str | Path,
    onnx: bool = False,
    profile: DeviceProfile | str = "rpi3b+",
    data_dir: str | Path | None = None,
    parity: str | None = None,
    progress: Progress | None = None,
    verbose: bool = False,
) -> Plan:
    """Export a fine-tuned run as a deployment plan folder (``snnas export``).

    Args:
        run: The fine-tuned run: the :class:`FinetuneResult` ``finetune`` returned, its
            :class:`SearchRun`, or the run folder's path.
        out: The plan folder, wherever it is; written atomically (a reader sees the old plan
            or the new one), never through a link; an older plan there is replaced, anything
            else refused.
        onnx: Also write one ONNX graph per device segment (checked with onnxruntime).
        profile: The device profile of the latency prediction (``rpi3b+``, ``a57x4``, a
            TOML file, or a :class:`~snnas.cost.DeviceProfile`).
        data_dir: Folder of the Fashion-MNIST IDX files or the CIFAR python batches.
        parity: The parity run folder under the run whose parity devices join the plan
            (default: ``parity`` when the space has parity devices).
        progress: Called as ``progress(phase, done, total, info)`` while it works.
        verbose: Draw rich progress bars on stderr (when no ``progress`` is given).

    Returns:
        The plan, loaded and checked (:class:`~snnas.Plan`).
    """
    from snnas.api._plan import Plan

    job = ExportJob(run, out=out, onnx=onnx, profile=profile, data_dir=data_dir, parity=parity)
    with reporting(progress, verbose, "export") as report:
        job.run(report)
    return Plan.load(job.target)
