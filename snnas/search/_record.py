"""Every evaluation of a search, recorded in an Optuna study.

By default the study lives in a journal file in the run folder (``optuna.journal``); with
``--storage URL`` (e.g. ``postgresql://user@host/db``) in a shared database, so several
workers on several machines add to one study and ``optuna-dashboard`` browses it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from snnas.errors import CheckpointError, ConfigError, UsageError, shorten
from snnas.space import SearchSpace

__all__ = ["MAX_STUDY_NAME", "StudyRecorder", "check_study", "mask_url"]

#: The cost a study without a recorded one was written under (the versions before the
#: latency cost): the communication ratio (:meth:`snnas.search._cost.CostTerm.to_json`).
COMM_COST = {"cost": "comm", "key": "comm_ratio"}
#: Longest Optuna study name (a database column).
MAX_STUDY_NAME = 256
#: ``scheme://user:password@host``: the password part of a URL's authority.
_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/@:\s]*):(?P<secret>[^@/\s]*)@")


def mask_url(url: str, text: str | None = None) -> str:
    """``text`` (default: ``url`` itself) with the password of ``url`` replaced by ``***``,
    wherever it appears: in the URL, and in a driver's error message that quotes it.

    >>> mask_url("postgresql://me:hunter2@db/x")
    'postgresql://me:***@db/x'
    """
    out = url if text is None else text
    secrets = {m.group("secret") for m in _PASSWORD.finditer(url) if m.group("secret")}
    out = _PASSWORD.sub(lambda m: f"{m.group('head')}:***@", out)
    for secret in sorted(secrets, key=len, reverse=True):
        out = out.replace(secret, "***")
        for form in {unquote(secret), quote(unquote(secret), safe="")}:
            if form:
                out = out.replace(form, "***")
    return out


def check_study(name: str) -> None:
    """Refuse a study name that is empty, too long or holds control characters."""
    if not name or len(name) > MAX_STUDY_NAME or not name.isprintable():
        raise UsageError(
            "--study",
            f"a name of 1 to {MAX_STUDY_NAME} characters without control characters",
            name,
        )


def _check_cost(study: Any, cost: dict[str, Any]) -> None:
    """Record ``cost`` in a new study; refuse a study whose trials were recorded under
    another cost (workers sharing ``--study`` under ``comm`` and ``latency``, or under two
    profiles, would put different measures in one objective column)."""
    recorded = study.user_attrs.get("cost")
    if recorded is None and study.get_trials(deepcopy=False):
        recorded = COMM_COST  # older versions recorded no cost: the communication ratio
    if recorded is None:
        study.set_user_attr("cost", cost)
    elif recorded != cost:
        raise ConfigError(
            None,
            "--study",
            f"a study of searches under this run's cost ({shorten(json.dumps(cost), 200)}), "
            "or another --study",
            f"<a study recorded under {shorten(json.dumps(recorded), 200)}>",
        )


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
        cost: dict[str, Any] | None = None,
    ) -> None:
        import optuna
        from optuna.distributions import CategoricalDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space = space
        self.worker = worker
        self.multi = multi_objective
        # What the cost is (CostTerm.to_json(); None: the communication ratio): the second
        # objective is comm_ratio or latency_ratio.
        # The profile's path is left out: workers on other machines name their copies of it
        # differently; its name and the reference latency say which it is.
        cost = {k: v for k, v in (COMM_COST if cost is None else cost).items() if k != "profile"}
        self.cost_key = cost["key"]
        check_study(study)
        if storage is None:
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            journal = folder / "optuna.journal"
            # Optuna appends through whatever is there: never through a link the run did not
            # make (its lock, optuna.journal.lock, is a link Optuna makes itself).
            if journal.is_symlink() or (journal.exists() and not journal.is_file()):
                raise CheckpointError(
                    f"{shorten(str(journal))}: is a link or not a file; refusing to write "
                    "the study through it"
                )
            backend = JournalFileBackend(str(journal))
            resolved: Any = JournalStorage(backend)
            self.url = str(journal)
        else:
            # Every message and file shows the URL with its password masked.
            resolved, self.url = storage, mask_url(storage)
        directions: list[Any] = ["maximize", "minimize"] if multi_objective else ["maximize"]
        try:
            self.study = optuna.create_study(
                study_name=study, storage=resolved, directions=directions, load_if_exists=True
            )
        except Exception as exc:  # a bad URL, an unreachable database, a missing driver
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise ConfigError(
                None,
                "--storage",
                "a reachable Optuna storage URL",
                f"<{shorten(self.url)} ({shorten(mask_url(storage or '', reason), 200)})>",
            ) from None
        _check_cost(self.study, cost)
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
            values = [event["accuracy"], event[self.cost_key]] if self.multi else [event["reward"]]
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
