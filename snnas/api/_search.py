"""``snnas.search``: search a communication policy; the run folder it leaves behind."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnas._run import Progress, RunDir, resolve_run
from snnas.api._progress import reporting
from snnas.errors import CheckpointError, ConfigError, UsageError, shorten
from snnas.space import Policy, SearchSpace, load_space

__all__ = ["SearchJob", "SearchRun", "override_items", "search"]


@dataclass(frozen=True)
class SearchRun:
    """A finished search: its run folder, space, selected policy and ``summary.json``.

    Attributes:
        path: The run folder (``runs/<name>``).
        space: The space the run searched (rebuilt from the TOML text it recorded).
        best_policy: The selected policy (``best_policy.json``), ``{label: value}``.
        summary: ``summary.json``: ``best_val_acc``, ``best_comm_ratio``, ``best_test_acc``,
            ``evaluations``, ``pareto_front``, ...
    """

    path: Path
    space: SearchSpace
    best_policy: Policy
    summary: dict[str, Any]

    @property
    def best_val_acc(self) -> float:
        """The selected policy's validation accuracy (deployable: batch norm recalibrated)."""
        return float(self.summary["best_val_acc"])

    @property
    def best_comm_ratio(self) -> float:
        """The selected policy's bytes as a fraction of a ring all-reduce's."""
        return float(self.summary["best_comm_ratio"])

    @property
    def best_test_acc(self) -> float:
        """The selected policy's test accuracy (scored once, at the end)."""
        return float(self.summary["best_test_acc"])

    @classmethod
    def open(cls, path: str | Path) -> SearchRun:
        """The finished search in folder ``path`` (refused in one line when it is not one)."""
        from snnas.search._artifacts import load_run_space

        run = RunDir(path)
        if not run.exists():
            raise CheckpointError(f"{shorten(str(path))}: no such run folder")
        space, _config = load_run_space(run)
        if not (run / "best_policy.json").is_file():
            raise CheckpointError(
                f"{shorten(str(path))}: no best_policy.json (the search has not finished); "
                "finish it with snnas search --resume"
            )
        policy = space.load_policy(run / "best_policy.json")
        summary = run.read_json("summary.json")
        if not isinstance(summary, dict):
            raise CheckpointError(f"{shorten(str(run / 'summary.json'))}: expected a JSON object")
        return cls(run.path, space, policy, summary)


def override_items(overrides: Mapping[str, Any] | Sequence[str] | None) -> list[str]:
    """``overrides`` as ``--set`` items: ``{"search.iterations": 1}`` -> ``["search.iterations=1"]``
    (a list of ``KEY=VALUE`` strings passes as it is). Values are booleans, numbers,
    strings or lists of them."""
    if overrides is None:
        return []
    if isinstance(overrides, str) or not isinstance(overrides, Mapping | Sequence):
        raise UsageError("overrides", "a mapping {key: value} or a list of KEY=VALUE", overrides)
    if not isinstance(overrides, Mapping):
        for item in overrides:
            if not isinstance(item, str):
                raise UsageError("overrides", "KEY=VALUE strings", item)
        return list(overrides)
    items = []
    for key, value in overrides.items():
        if not isinstance(key, str):
            raise UsageError("overrides", "setting names such as 'search.iterations'", key)
        items.append(f"{key}={_toml_value(key, value)}")
    return items


def _toml_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"  # refused by the setting's range, in its own words
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(key, v) for v in value) + "]"
    raise UsageError(
        f"overrides[{key!r}]", "a boolean, a number, a string or a list of them", value
    )


class SearchJob:
    """A search checked and ready to run: every option, file and checkpoint was checked and
    the data loaded when it was made, so :meth:`run` starts work that is not refused.

    Args: see :func:`search`.
    """

    def __init__(
        self,
        space: SearchSpace | str | Path,
        *,
        name: str | None = None,
        runs_dir: str | Path = "runs",
        overrides: Mapping[str, Any] | Sequence[str] | None = None,
        strategy: str | object | None = None,
        resume: bool = False,
        dataset: str = "digits",
        data_dir: str | Path | None = None,
        download: bool = False,
        config_file: str | Path | None = None,
        seed: int = 0,
        device: str | None = None,
        storage: str | None = None,
        study: str | None = None,
        objective: Any = None,
    ) -> None:
        from snnas.data import load_for_space
        from snnas.search import load_search_config
        from snnas.search._loop import (
            CHECKPOINT,
            build_strategy,
            check_cost_mode,
            check_no_degraded,
        )
        from snnas.search._protective import searched_space
        from snnas.search._record import check_study
        from snnas.search._reward import Objective
        from snnas.search.strategies._base import check_name
        from snnas.train import Accelerator

        strategy = strategy if strategy is not None else "reinforce"
        # Option values first (usage errors), then files, then data.
        if isinstance(strategy, str):
            check_name(strategy)
        if name is not None:
            resolve_run(runs_dir, name)
        if study is not None:
            check_study(study)
        if not isinstance(space, SearchSpace):
            space = load_space(space)
        config = load_search_config(dataset, config_file, override_items(overrides))
        if objective is not None and not isinstance(objective, Objective):
            objective = Objective(objective)
        if objective is not None and config.reward not in ("penalized", "pareto"):
            raise ConfigError(
                None, "reward.mode", "penalized or pareto with a user objective", config.reward
            )
        # A bad strategy (or option), or a space with nothing to search, before loading data;
        # and the refusals run_search makes once it starts, before anything is said. A
        # strategy instance (a Strategy, or any Optuna sampler) goes through the same checks.
        built = build_strategy(searched_space(space), config, strategy, seed, objective)
        if config.strategy_steps % built.batch_size:
            raise ConfigError(
                None,
                "search.strategy_steps",
                f"a multiple of {built.label}'s batch ({built.batch_size}): every update's "
                "policies are scored on one minibatch",
                config.strategy_steps,
            )
        check_no_degraded(space, config)  # a parity space's third objective: compare only
        check_cost_mode(config)  # the latency cost needs a mode with a cost term
        label = (strategy if isinstance(strategy, str) else built.label).replace(":", "-")
        self.run_dir = RunDir(resolve_run(runs_dir, name or f"search-{space.name}-{label}-s{seed}"))
        self.run_dir.check_resume(CHECKPOINT, resume, "search")
        #: One line when the resumed strategy will not continue as the uninterrupted search
        #: would have (known before the run for a strategy named; ``summary.json`` has it).
        self.resume_note: str | None = None
        if resume and isinstance(strategy, str):  # refused before data is loaded (an
            from snnas.search._resume import preflight  # instance: when run_search resumes)

            self.resume_note = preflight(
                self.run_dir, CHECKPOINT, space, config, strategy, seed, objective
            )
        self.accel = Accelerator.pick(device)
        self.data = load_for_space(dataset, space, data_dir, download)
        self.space, self.config, self.strategy = space, config, strategy
        self.seed, self.resume, self.storage, self.study = seed, resume, storage, study
        self.objective = objective

    @property
    def path(self) -> Path:
        """The run folder the search writes."""
        return self.run_dir.path

    @property
    def unscored(self) -> list[str]:
        """The parity decisions, sampled but not scored by the search."""
        return [d.label for d in self.space.decisions if d.kind in ("encode", "encoder")]

    def run(self, progress: Progress | None = None) -> SearchRun:
        """Run (or resume) the search; write the run folder; return it."""
        from snnas.search import run_search

        result = run_search(
            self.space,
            self.data,
            self.config,
            self.strategy,
            self.run_dir,
            seed=self.seed,
            resume=self.resume,
            accel=self.accel,
            storage=self.storage,
            study=self.study,
            progress=progress,
            objective=self.objective,
        )
        return SearchRun(self.run_dir.path, self.space, result.best_policy, result.summary)


def search(
    space: SearchSpace | str | Path,
    *,
    name: str,
    runs_dir: str | Path = "runs",
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    strategy: str | object | None = None,
    resume: bool = False,
    dataset: str = "digits",
    data_dir: str | Path | None = None,
    download: bool = False,
    config_file: str | Path | None = None,
    seed: int = 0,
    device: str | None = None,
    storage: str | None = None,
    study: str | None = None,
    objective: Any = None,
    progress: Progress | None = None,
    verbose: bool = False,
) -> SearchRun:
    """Search ``space`` for a communication policy (``snnas search``).

    Args:
        space: A :class:`~snnas.SearchSpace` or the path of its TOML file.
        name: The run's folder name under ``runs_dir`` (a name, not a path).
        runs_dir: The runs folder.
        overrides: Settings as ``snnas search --set`` takes them, e.g.
            ``{"search.iterations": 1}`` (or a list of ``"KEY=VALUE"`` strings);
            ``{"reward.mode": "penalized", "reward.cost": "latency", "reward.profile":
            "rpi3b+"}`` optimises the simulated latency on a device profile
            (``snnas search --profile``).
        strategy: A registered strategy name (``reinforce`` when ``None``, ``random``,
            ``evolution``, ``optuna:tpe``, ...; see ``snnas list``), any Optuna sampler
            instance (e.g. ``optuna.samplers.TPESampler(seed=1)``), or a ready
            :class:`~snnas.search.strategies.Strategy` of the space.
        resume: Continue the run from its last checkpoint (a run is never started over
            silently: without ``resume`` an existing run is refused).
        dataset: ``digits`` (bundled), ``fashion-mnist``, ``cifar10`` or ``cifar100``.
        data_dir: Folder of the Fashion-MNIST IDX files or the CIFAR python batches.
        download: Fetch Fashion-MNIST into ``data_dir`` first (needs internet).
        config_file: A search configuration TOML (``[search]``, ``[reward]``, ``[strategy]``).
        seed: Seeds the supernet, the strategy and the data order.
        device: ``cpu``, ``cuda`` or ``cuda:N`` (default: a GPU when present).
        storage: An Optuna storage URL shared by workers (default: a journal file in the run).
        study: The Optuna study's name (default: the run name).
        objective: A user objective scored per policy (a callable ``policy -> float``,
            minimised, or a :class:`snnas.search._reward.Objective`), combined with the
            built-in objectives in the ``penalized`` and ``pareto`` modes (docs/search.md).
        progress: Called as ``progress(phase, done, total, info)`` while it works.
        verbose: Draw rich progress bars on stderr (when no ``progress`` is given).

    Returns:
        The finished run (:class:`SearchRun`).

    Raises:
        snnas.SnnasError: a bad option (:class:`~snnas.errors.UsageError`), file,
            checkpoint or dataset, in one line saying what was expected and found.
    """
    job = SearchJob(
        space,
        name=name,
        runs_dir=runs_dir,
        overrides=overrides,
        strategy=strategy,
        resume=resume,
        dataset=dataset,
        data_dir=data_dir,
        download=download,
        config_file=config_file,
        seed=seed,
        device=device,
        storage=storage,
        study=study,
        objective=objective,
    )
    with reporting(progress, verbose, "search") as report:
        return job.run(report)
