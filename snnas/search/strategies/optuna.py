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
from snnas.errors import ConfigError
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

    A sampler *instance* (:meth:`from_object`) is used as it is, with its own seed and
    settings; it sees the constraint values like a named sampler.
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
        self._study = self._new_study()

    def _distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        return {label: CategoricalDistribution(list(range(n))) for label, n in self._labels}

    def _sampler(self) -> Any:
        if self._instance is not None:
            return self._instance
        import optuna

        name = SAMPLERS[self.sampler_name][0]
        options: dict[str, Any] = {}
        if self.sampler_name == "tpe":  # explicit: Optuna's own default changed over versions
            options = {"multivariate": self.multivariate, "group": self.multivariate}
        # A resumed study is rebuilt from the told trials. Its sampler is seeded from the seed
        # and the number of trials: deterministic, though not the uninterrupted run's stream
        # (Optuna keeps its samplers' random state private).
        seed = self.seed * 1_000_003 + len(self._history)
        return getattr(optuna.samplers, name)(seed=seed, **options)

    def _new_study(self) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        directions: list[Any] = ["maximize", "minimize", "maximize"]
        directions = directions[:1] if self.objectives == 1 else directions[: self.objectives]
        study = optuna.create_study(directions=directions, sampler=self._sampler())
        for params, values, violation in self._history:
            self._add(study, params, values, violation)
        return study

    def _add(
        self, study: Any, params: dict[str, int], values: list[float], violation: float
    ) -> None:
        """A finished trial that was not asked (history, foreign policies)."""
        import optuna

        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=self._distributions(),
                values=values,
                constraints={CONSTRAINT: violation} if self.constraint is not None else None,
            )
        )

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
        return {
            **super().state_dict(),
            "sampler": self.sampler_name,
            "objectives": self.objectives,
            "history": [[params, values, v] for params, values, v in self._history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._history = [
            (dict(item[0]), list(item[1]), float(item[2]) if len(item) > 2 else 0.0)
            for item in state["history"]
        ]
        self._pending.clear()
        self._study = self._new_study()
