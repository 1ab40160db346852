"""Every evaluation of a search, recorded in an Optuna study.

By default the study lives in a journal file in the run folder (``optuna.journal``); with
``--storage URL`` (e.g. ``postgresql://user@host/db``) in a shared database, so several
workers on several machines add to one study and ``optuna-dashboard`` browses it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from snnas.errors import ConfigError
from snnas.space import SearchSpace

__all__ = ["StudyRecorder"]


class StudyRecorder:
    """Adds search events to an Optuna study as finished trials, each exactly once."""

    def __init__(
        self,
        space: SearchSpace,
        storage: str | None,
        folder: Path,
        study: str,
        worker: str,
        multi_objective: bool,
    ) -> None:
        import optuna
        from optuna.distributions import CategoricalDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space = space
        self.worker = worker
        self.multi = multi_objective
        if storage is None:
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            backend = JournalFileBackend(str(folder / "optuna.journal"))
            resolved: Any = JournalStorage(backend)
            self.url = str(folder / "optuna.journal")
        else:
            resolved, self.url = storage, storage
        directions: list[Any] = ["maximize", "minimize"] if multi_objective else ["maximize"]
        try:
            self.study = optuna.create_study(
                study_name=study, storage=resolved, directions=directions, load_if_exists=True
            )
        except Exception as exc:  # a bad URL, an unreachable database, a missing driver
            raise ConfigError(
                None,
                "--storage",
                "a reachable Optuna storage URL",
                f"{storage} ({type(exc).__name__}: {exc})",
            ) from None
        self.distributions: dict[str, Any] = {
            label: CategoricalDistribution(list(range(n)))
            for label, n in space.factorized_decisions()
        }
        self.recorded = {t.user_attrs.get("event") for t in self.study.get_trials(deepcopy=False)}

    def sync(self, events: list[dict[str, Any]]) -> int:
        """Add the events not yet in the study; return how many were added."""
        import optuna

        trials = []
        for event in events:
            key = f"{self.worker}/{event['index']}"
            if key in self.recorded:
                continue
            policy = self.space.validate(event["policy"])
            values = [event["accuracy"], event["comm_ratio"]] if self.multi else [event["reward"]]
            attrs = {k: v for k, v in event.items() if k != "policy"}
            attrs.update(event=key, policy=json.dumps(event["policy"]))
            trials.append(
                optuna.trial.create_trial(
                    params=self.space.to_factorized(policy),
                    distributions=self.distributions,
                    values=values,
                    user_attrs=attrs,
                )
            )
            self.recorded.add(key)
        if trials:
            self.study.add_trials(trials)
        return len(trials)
