"""``snnas.finetune``: fine-tune a search's selected policy from the supernet's weights."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from snnas._numbers import Range
from snnas._run import Progress, RunDir
from snnas.api._progress import reporting
from snnas.api._search import SearchRun
from snnas.errors import CheckpointError, PolicyError, UsageError, shorten

__all__ = [
    "BATCH_RANGE",
    "EPOCHS_RANGE",
    "LR_RANGE",
    "FinetuneJob",
    "FinetuneResult",
    "finetune",
    "run_folder",
]

#: The documented ranges of fine-tuning's numbers (``snnas finetune``'s options).
EPOCHS_RANGE = Range(1, 10_000, integer=True)
LR_RANGE = Range(0, 10, low_open=True)
BATCH_RANGE = Range(1, 65_536, integer=True)
SEED_RANGE = Range(0, 2**31 - 1, integer=True)
#: What re-running a finished fine-tuning can do instead (it has no --name).
ELSEWHERE = "remove that folder to fine-tune again from the search's weights"


@dataclass(frozen=True)
class FinetuneResult:
    """A finished fine-tuning (``RUN/finetune/``).

    Attributes:
        path: The fine-tuning's folder (``RUN/finetune``).
        run: The search run it fine-tuned.
        val_acc: Validation accuracy of the checkpoint selected on validation.
        test_acc: Its test accuracy (scored once, for the selected checkpoint).
        selected_epoch: The selected epoch (0: the supernet's weights, batch norm
            recalibrated).
        metrics: ``final.json``: the above and ``epochs``, ``val_acc_before``, ``policy``, ...
    """

    path: Path
    run: Path
    val_acc: float
    test_acc: float
    selected_epoch: int
    metrics: dict[str, Any]


def run_folder(run: SearchRun | FinetuneResult | str | Path) -> RunDir:
    """The search run folder ``run`` names: a :class:`SearchRun`, a :class:`FinetuneResult`
    (its search run) or the path of a run folder; refused when there is no such folder."""
    if isinstance(run, SearchRun):
        path = run.path
    elif isinstance(run, FinetuneResult):
        path = run.run
    elif isinstance(run, str | Path):
        path = Path(run)
    else:
        raise UsageError("run", "a SearchRun, a FinetuneResult or a run folder", type(run).__name__)
    folder = RunDir(path)
    if not folder.exists():
        raise CheckpointError(f"{shorten(str(path))}: no such run folder")
    return folder


def _check(option: str, valid: Range, value: Any) -> None:
    problem = valid.problem(value)
    if problem is not None:
        raise UsageError(option, problem, value)


class FinetuneJob:
    """A fine-tuning checked and ready to run: the run, the policy, the settings and any
    checkpoint were checked and the data loaded when it was made, so :meth:`run` starts
    work that is not refused.

    Args: see :func:`finetune`.
    """

    def __init__(
        self,
        run: SearchRun | str | Path,
        *,
        epochs: int | None = None,
        lr: float | None = None,
        policy: Mapping[str, Any] | str | Path | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        resume: bool = False,
        data_dir: str | Path | None = None,
        device: str | None = None,
    ) -> None:
        from snnas.data import load_for_space
        from snnas.search._artifacts import load_search_run
        from snnas.train import Accelerator
        from snnas.train._finetune import FINETUNE_DIR, LAST, default_finetune_config

        for option, valid, value in (("--epochs", EPOCHS_RANGE, epochs), ("--lr", LR_RANGE, lr),
                                     ("--batch-size", BATCH_RANGE, batch_size),
                                     ("--seed", SEED_RANGE, seed)):  # fmt: skip
            if value is not None:
                _check(option, valid, value)
        self.accel = Accelerator.pick(device)  # an option value: before any file
        self.run_dir = run_folder(run)
        search = load_search_run(self.run_dir, None if isinstance(policy, Mapping) else policy)
        if isinstance(policy, Mapping):
            try:
                chosen = search.space.validate(policy)
            except PolicyError as exc:
                raise PolicyError(f"policy: {exc}") from None
            search = replace(search, policy=chosen, policy_source="the policy given")
        self.search = search
        self.config = default_finetune_config(
            search.dataset, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed
        )
        self.out = RunDir(self.run_dir / FINETUNE_DIR)
        # Refused here, with advice true of this step, before anything is loaded or said.
        where = self.out.path
        if where.is_symlink() or (where.exists() and not where.is_dir()):
            raise CheckpointError(
                f"{shorten(str(where))}: is not a run folder (a file or a link is there)"
            )
        self.out.check_resume(LAST, resume, "fine-tuning", ELSEWHERE)
        self.resume = resume
        self.data = load_for_space(search.dataset, search.space, data_dir)

    @property
    def path(self) -> Path:
        """The folder the fine-tuning writes (``RUN/finetune``)."""
        return self.out.path

    def run(self, progress: Progress | None = None) -> FinetuneResult:
        """Fine-tune (or resume); write ``RUN/finetune``; return the result."""
        from snnas.train._finetune import finetune as run_finetune

        search = self.search
        result = run_finetune(
            search.space,
            self.data,
            search.policy,
            search.weights,
            self.config,
            self.out,
            source={"run": str(self.run_dir.path), "policy": search.policy_source},
            source_path=str(self.run_dir / "last.pt"),
            resume=self.resume,
            accel=self.accel,
            progress=progress,
        )
        m = result.metrics
        return FinetuneResult(
            self.out.path,
            self.run_dir.path,
            float(m["val_acc"]),
            float(m["test_acc"]),
            int(m["selected_epoch"]),
            dict(m),
        )


def finetune(
    run: SearchRun | str | Path,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    policy: Mapping[str, Any] | str | Path | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    resume: bool = False,
    data_dir: str | Path | None = None,
    device: str | None = None,
    progress: Progress | None = None,
    verbose: bool = False,
) -> FinetuneResult:
    """Fine-tune a search's selected policy from its shared weights (``snnas finetune``).

    Args:
        run: The search run (:class:`SearchRun`, or its folder's path).
        epochs: Passes over the training split (digits: 20; CIFAR: 45).
        lr: Initial learning rate, cosine decay (digits: 0.03; CIFAR: 1e-4).
        policy: Fine-tune this policy (``{label: value}`` or a policy file) instead of the
            search's selected one.
        batch_size: Minibatch size (digits: 32; CIFAR: 128).
        seed: Seeds the data order and augmentation.
        resume: Continue an interrupted fine-tuning (or re-report a finished one); without
            it an existing fine-tuning is refused.
        data_dir: Folder of the Fashion-MNIST IDX files or the CIFAR python batches.
        device: ``cpu``, ``cuda`` or ``cuda:N`` (default: a GPU when present).
        progress: Called as ``progress(phase, done, total, info)`` while it works.
        verbose: Draw rich progress bars on stderr (when no ``progress`` is given).

    Returns:
        The result (:class:`FinetuneResult`), written to ``RUN/finetune``.

    Raises:
        snnas.SnnasError: a bad setting, run, policy or checkpoint, in one line.
    """
    job = FinetuneJob(
        run,
        epochs=epochs,
        lr=lr,
        policy=policy,
        batch_size=batch_size,
        seed=seed,
        resume=resume,
        data_dir=data_dir,
        device=device,
    )
    with reporting(progress, verbose, "finetune") as report:
        return job.run(report)
