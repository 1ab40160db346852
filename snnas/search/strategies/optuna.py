"""Any Optuna sampler as a strategy (``optuna:tpe``, ``optuna:nsga2``, ...).

Optuna's categorical choices must not change between trials, so the space is searched in
its factorized view: every permutation over all G! permutations becomes G Lehmer digits with
G, G-1, ..., 1 choices (docs/dsl.md). Optuna types stay inside this module.
"""

from __future__ import annotations

import warnings
from collections import deque
from typing import Any

from snnas.errors import ConfigError
from snnas.search.strategies._base import Reward, Strategy, register_strategy
from snnas.space import Policy, SearchSpace

__all__ = ["SAMPLERS", "OptunaStrategy"]

#: Sampler name -> (class name in optuna.samplers, supports several objectives)
SAMPLERS: dict[str, tuple[str, bool]] = {
    "tpe": ("TPESampler", True),
    "random": ("RandomSampler", True),
    "nsga2": ("NSGAIISampler", True),
    "nsga3": ("NSGAIIISampler", True),
    "gp": ("GPSampler", False),
    "qmc": ("QMCSampler", False),
}


@register_strategy("optuna")
class OptunaStrategy(Strategy):
    """Ask/tell over an in-memory Optuna study. With ``objectives=2`` the study maximises
    accuracy and minimises the communication ratio (a Pareto front); with 3 it also
    maximises the degraded accuracy (parity spaces, docs/search.md)."""

    def __init__(
        self, space: SearchSpace, seed: int = 0, sampler: str = "tpe", objectives: int = 1
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
        self.sampler_name = sampler
        self.objectives = objectives
        self.multi_objective = objectives > 1
        self.label = f"optuna:{sampler}"
        self._labels = space.factorized_decisions()
        self._history: list[tuple[dict[str, int], list[float]]] = []
        self._pending: deque[tuple[tuple[int, ...], Any]] = deque()
        self._study = self._new_study()

    def _distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        return {label: CategoricalDistribution(list(range(n))) for label, n in self._labels}

    def _new_study(self) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        cls = getattr(optuna.samplers, SAMPLERS[self.sampler_name][0])
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # A resumed study is rebuilt from the told trials. Its sampler is seeded from the seed
        # and the number of trials: deterministic, though not the uninterrupted run's stream
        # (Optuna keeps its samplers' random state private).
        sampler = cls(seed=self.seed * 1_000_003 + len(self._history))
        directions: list[Any] = ["maximize", "minimize", "maximize"]
        directions = directions[:1] if self.objectives == 1 else directions[: self.objectives]
        study = optuna.create_study(directions=directions, sampler=sampler)
        for params, values in self._history:
            study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions=self._distributions(), values=values
                )
            )
        return study

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
        for i, (pending_code, trial) in enumerate(self._pending):
            if pending_code == code:
                del self._pending[i]
                self._study.tell(trial, values)
                break
        else:  # a policy this study did not ask for: record it as a finished trial
            import optuna

            self._study.add_trial(
                optuna.trial.create_trial(
                    params=self.space.to_factorized(policy),
                    distributions=self._distributions(),
                    values=values,
                )
            )
        self._history.append((self.space.to_factorized(policy), values))
        self.told += 1

    def _values(self, reward: Reward) -> list[float]:
        self.check_reward(reward)
        if self.objectives > 1:
            if not isinstance(reward, tuple) or len(reward) != self.objectives:
                expected = "(accuracy, communication ratio" + (
                    ", degraded accuracy)" if self.objectives == 3 else ")"
                )
                raise ConfigError(None, "reward", expected, reward)
            return [float(v) for v in reward]
        return [self.scalar(reward)]

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "sampler": self.sampler_name,
            "objectives": self.objectives,
            "history": [[params, values] for params, values in self._history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._history = [(dict(p), list(v)) for p, v in state["history"]]
        self._pending.clear()
        self._study = self._new_study()
