"""Any Optuna sampler as a strategy: by name (``optuna:tpe``, ``optuna:nsga2``, ...) or as
an instance (any ``optuna.samplers.BaseSampler``, with its own settings).

Optuna's categorical choices must not change between trials, so the space is searched in
its factorized view: every permutation over all G! permutations becomes G Lehmer digits with
G, G-1, ..., 1 choices (docs/dsl.md). Optuna types stay inside this module: the registry
learns the sampler names from :attr:`OptunaStrategy.variants` and which objects it wraps
from :meth:`OptunaStrategy.wraps`.
"""

from __future__ import annotations

import sys
import warnings
from collections import deque
from typing import Any, ClassVar

from snnas._numbers import Range
from snnas.errors import CheckpointError, ConfigError
from snnas.search.strategies._base import Reward, Strategy, register_strategy
from snnas.space import Policy, SearchSpace

__all__ = ["CONSTRAINT", "SAMPLERS", "OptunaStrategy"]

#: Sampler name -> (class name in optuna.samplers, supports several objectives)
SAMPLERS: dict[str, tuple[str, bool]] = {
    "tpe": ("TPESampler", True),
    "random": ("RandomSampler", True),
    "nsga2": ("NSGAIISampler", True),
    "nsga3": ("NSGAIIISampler", True),
    "gp": ("GPSampler", False),
    "qmc": ("QMCSampler", False),
}
#: The name of the one constraint value every trial carries when constraints are set.
CONSTRAINT = "violation"


@register_strategy("optuna")
class OptunaStrategy(Strategy):
    """Ask/tell over an in-memory Optuna study. With ``objectives=2`` the study maximises
    accuracy and minimises the communication ratio (a Pareto front); with 3 it also
    maximises a third gain (the degraded accuracy of a parity space, or a user objective,
    docs/search.md).

    ``optuna:tpe`` is a multivariate TPE with grouped decomposition (``multivariate=True,
    group=True``): the Lehmer digits of one permutation are modelled jointly, not as
    independent choices (``multivariate=false`` gives the univariate TPE of earlier
    versions). Within constraints, every trial carries its violation as Optuna's
    constraint value (``Trial.set_constraint("violation", v)``, which replaced the
    samplers' ``constraints_func`` in Optuna 5): the samplers that model constraints (tpe,
    nsga2, nsga3, gp) rank an infeasible trial below every feasible one; ``random`` and
    ``qmc`` ignore them (the search still never selects an infeasible policy). A study
    rebuilt on resume keeps the values.

    A resumed study continues the uninterrupted one: :meth:`state_dict` carries the
    sampler's random states and the system attributes of the study and its trials (all
    samplers but ``gp``, whose kernel cache is not saved; :attr:`resume_note` says so).

    A sampler *instance* (:meth:`from_object`) is used as it is, with its own seed and
    settings; it sees the constraint values like a named sampler, and on resume the
    instance passed then gets the saved random states (docs/search.md, "Resuming an Optuna
    search").
    """

    option_ranges: ClassVar[dict[str, Range]] = {"objectives": Range(1, 3, integer=True)}
    variants: ClassVar[tuple[str, ...]] = tuple(SAMPLERS)
    variant_option: ClassVar[str | None] = "sampler"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        sampler: str = "tpe",
        objectives: int = 1,
        multivariate: bool = True,
    ) -> None:
        super().__init__(space, seed)
        if sampler not in SAMPLERS:
            raise ConfigError(
                None, "--strategy", f"optuna:<{'|'.join(SAMPLERS)}>", f"optuna:{sampler}"
            )
        if objectives not in (1, 2, 3) or (objectives > 1 and not SAMPLERS[sampler][1]):
            raise ConfigError(
                None,
                "objectives",
                "1, 2 or 3 (2 and 3 only for samplers that support several objectives)",
                objectives,
            )
        if not multivariate and sampler != "tpe":
            raise ConfigError(
                None, "strategy.optuna.multivariate", "true (false is for tpe only)", False
            )
        self.sampler_name = sampler
        self.multivariate = multivariate
        self._instance: Any = None  # a user's sampler, used as it is
        self._setup(objectives)
        self.label = f"optuna:{sampler}"

    @classmethod
    def wraps(cls, obj: object) -> bool:
        """Any ``optuna.samplers.BaseSampler`` instance (optuna is not imported for this:
        an instance means it already is)."""
        optuna = sys.modules.get("optuna")
        return optuna is not None and isinstance(obj, optuna.samplers.BaseSampler)

    @classmethod
    def from_object(
        cls, obj: object, space: SearchSpace, seed: int, **options: Any
    ) -> OptunaStrategy:
        """The strategy around the sampler instance ``obj`` (``objectives`` the only option;
        the sampler keeps its own seed, ``seed`` only names the run)."""
        if set(options) - {"objectives"}:
            raise ValueError(f"a sampler instance takes no options but objectives: {options}")
        objectives = int(options.get("objectives", 1))
        if objectives not in (1, 2, 3):
            raise ValueError(f"objectives must be 1, 2 or 3, got {objectives}")
        strategy = cls.__new__(cls)
        Strategy.__init__(strategy, space, seed)
        strategy.sampler_name = type(obj).__name__
        strategy.multivariate = False
        strategy._instance = obj
        strategy._setup(objectives)
        strategy.label = f"optuna:{type(obj).__name__}"
        return strategy

    def _setup(self, objectives: int) -> None:
        self.objectives = objectives
        self.multi_objective = objectives > 1
        self._labels = self.space.factorized_decisions()
        self._history: list[tuple[dict[str, int], list[float], float]] = []
        self._pending: deque[tuple[tuple[int, ...], Any]] = deque()
        self._numbers: list[int] = []  # the study's trial number of each history item
        #: Set by :meth:`load_state_dict` when the resumed study will not propose what the
        #: uninterrupted one would have (one line saying why); ``None`` otherwise.
        self.resume_note: str | None = None
        self._study = self._new_study()

    def _distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        return {label: CategoricalDistribution(list(range(n))) for label, n in self._labels}

    def _sampler(self, reseed: bool = False) -> Any:
        """The sampler: the user's instance, or a named one seeded from the seed. ``reseed``:
        seeded also from the number of trials (the resume of checkpoints that predate the
        saved random state: deterministic, not the uninterrupted run's stream)."""
        if self._instance is not None:
            return self._instance
        import optuna

        name = SAMPLERS[self.sampler_name][0]
        options: dict[str, Any] = {}
        if self.sampler_name == "tpe":  # explicit: Optuna's own default changed over versions
            options = {"multivariate": self.multivariate, "group": self.multivariate}
        seed = self.seed * 1_000_003 + (len(self._history) if reseed else 0)
        return getattr(optuna.samplers, name)(seed=seed, **options)

    def _new_study(
        self,
        sampler: Any = None,
        trial_attrs: list[dict[str, Any]] | None = None,
        study_attrs: dict[str, Any] | None = None,
    ) -> Any:
        """A study with ``sampler`` (default: :meth:`_sampler`) and the told trials of the
        history, each with its system attributes (``trial_attrs``: what samplers such as
        NSGA-II record on a trial), and the study's (``study_attrs``: QMC's sample counter)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        directions: list[Any] = ["maximize", "minimize", "maximize"]
        directions = directions[:1] if self.objectives == 1 else directions[: self.objectives]
        sampler = self._sampler() if sampler is None else sampler
        study = optuna.create_study(directions=directions, sampler=sampler)
        self._numbers = []
        for i, (params, values, violation) in enumerate(self._history):
            attrs = trial_attrs[i] if trial_attrs is not None else None
            self._add(study, params, values, violation, attrs)
        for key, value in (study_attrs or {}).items():
            study._storage.set_study_system_attr(study._study_id, key, value)
        return study

    def _add(
        self,
        study: Any,
        params: dict[str, int],
        values: list[float],
        violation: float,
        system_attrs: dict[str, Any] | None = None,
    ) -> None:
        """A finished trial that was not asked (history, foreign policies); its number is
        recorded beside the history."""
        import optuna

        attrs = {k: v for k, v in (system_attrs or {}).items() if not k.startswith("constraints")}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=self._distributions(),
                values=values,
                system_attrs=attrs or None,
                constraints={CONSTRAINT: violation} if self.constraint is not None else None,
            )
        )
        self._numbers.append(len(study.get_trials(deepcopy=False)) - 1)

    def ask(self) -> Policy:
        trial = self._study.ask(self._distributions())
        self.asked += 1
        values = {label: int(trial.params[label]) for label, _ in self._labels}
        policy = self.space.from_factorized(values)
        self._pending.append((self.space.encode(policy), trial))
        return policy

    def tell(self, policy: Policy, reward: Reward) -> None:
        code = self.space.encode(policy)
        values = self._values(reward)
        violation = self.violation(policy)
        for i, (pending_code, trial) in enumerate(self._pending):
            if pending_code == code:
                del self._pending[i]
                if self.constraint is not None:
                    trial.set_constraint(CONSTRAINT, violation)
                self._study.tell(trial, values)
                self._numbers.append(trial.number)
                break
        else:  # a policy this study did not ask for: record it as a finished trial
            self._add(self._study, self.space.to_factorized(policy), values, violation)
        self._history.append((self.space.to_factorized(policy), values, violation))
        self.told += 1

    def _values(self, reward: Reward) -> list[float]:
        self.check_reward(reward)
        if self.objectives > 1:
            if not isinstance(reward, tuple) or len(reward) != self.objectives:
                expected = "(accuracy, communication ratio" + (
                    ", degraded accuracy or a user objective's gain)"
                    if self.objectives == 3
                    else ")"
                )
                raise ConfigError(None, "reward", expected, reward)
            return [float(v) for v in reward]
        return [self.scalar(reward)]

    def state_dict(self) -> dict[str, Any]:
        """The history, and what makes the rebuilt study the same: the sampler's random
        states (:mod:`._optuna_state`) and the system attributes of the study and of each
        told trial. Asked policies not yet told are not kept (a search saves between
        iterations, when there are none)."""
        from snnas.search.strategies._optuna_state import capture

        trials = self._study.get_trials(deepcopy=False)
        storage, study_id = self._study._storage, self._study._study_id
        return {
            **super().state_dict(),
            "sampler": self.sampler_name,
            "objectives": self.objectives,
            "history": [[params, values, v] for params, values, v in self._history],
            "random_state": capture(self._study.sampler),
            "trial_attrs": [dict(trials[n].system_attrs) for n in self._numbers],
            "study_attrs": dict(storage.get_study_system_attrs(study_id)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; a damaged state is refused (one
        :class:`~snnas.errors.CheckpointError` line) with the strategy left as it was. A
        state without the random state (saved before snnas kept it) resumes reseeded from
        the seed and the number of trials, and :attr:`resume_note` says so."""
        from snnas.search.strategies import _optuna_state as saved

        history = [
            (dict(item[0]), list(item[1]), float(item[2]) if len(item) > 2 else 0.0)
            for item in state["history"]
        ]
        keep = self._history
        self._history = history  # what the reseeded sampler counts
        try:
            if "random_state" in state:
                sampler = self._sampler()
                saved.check_random_states(state["random_state"], sampler)
                trial_attrs = state["trial_attrs"]
                if not isinstance(trial_attrs, list) or len(trial_attrs) != len(history):
                    found = len(trial_attrs) if isinstance(trial_attrs, list) else "no"
                    raise CheckpointError(f"{len(history)} told trials but {found} trial records")
                for i, attrs in enumerate(trial_attrs):
                    saved.check_json_attrs(attrs, f"trial {i}'s system attributes")
                study_attrs = saved.check_json_attrs(
                    state["study_attrs"], "the study's system attributes"
                )
                reason = saved.inexact_reason(sampler)
                note = (
                    None
                    if reason is None
                    else f"{self.label} resumes deterministically but not as the "
                    f"uninterrupted search would have gone on: {reason}"
                )
            else:
                sampler, trial_attrs, study_attrs = self._sampler(reseed=True), None, None
                note = (
                    f"{self.label} resumes from a checkpoint without its sampler's random "
                    "state (saved by an earlier snnas): reseeded, so not as the uninterrupted "
                    "search would have gone on"
                )
        except BaseException:
            self._history = keep
            raise
        super().load_state_dict(state)
        self._pending.clear()
        if "random_state" in state:
            saved.restore(sampler, state["random_state"])
        self._study = self._new_study(sampler, trial_attrs, study_attrs)
        self.resume_note = note
