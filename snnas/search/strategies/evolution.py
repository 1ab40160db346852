"""Regularized (aging) evolution (Real et al., 2019): tournament selection, one mutation."""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

from snnas._numbers import Range
from snnas.search.strategies._base import FEASIBLE_TRIES, Reward, Strategy, register_strategy
from snnas.space import Policy

__all__ = ["RegularizedEvolution"]


@register_strategy("evolution")
class RegularizedEvolution(Strategy):
    """Keep the ``population`` most recent evaluated policies; a child is the best of
    ``tournament`` random members with one decision changed to another of its choices; the
    oldest member dies when a child joins. Until the population is full, policies are random.

    Within constraints (Deb's feasibility rules, 2000): a feasible member wins every
    tournament against an infeasible one, and of two infeasible members the one with the
    smaller violation; random policies and children are redrawn (up to ``FEASIBLE_TRIES``)
    until one is feasible."""

    option_ranges: ClassVar[dict[str, Range]] = {
        "population": Range(2, 100_000, integer=True),
        "tournament": Range(1, 100_000, integer=True),
    }

    def __init__(self, space: Any, seed: int = 0, population: int = 20, tournament: int = 5):
        super().__init__(space, seed)
        if population < 2 or not 1 <= tournament <= population:
            raise ValueError(
                f"need population >= 2 and 1 <= tournament <= population, got "
                f"{population}, {tournament}"
            )
        self.population_size = population
        self.tournament = tournament
        self.population: deque[tuple[tuple[int, ...], float]] = deque(maxlen=population)

    def ask(self) -> Policy:
        rng = self._rng()
        self.asked += 1
        if len(self.population) < self.population_size:
            policy = self.space.sample(rng)
            for _ in range(FEASIBLE_TRIES - 1):
                if self.violation(policy) <= 0:
                    break
                policy = self.space.sample(rng)
            return policy
        contenders = rng.sample(list(self.population), self.tournament)
        parent = max(contenders, key=self._rank)[0]
        mutable = [i for i, d in enumerate(self.space.decisions) if len(d) > 1]
        child = self.space.decode(list(parent))
        for _ in range(FEASIBLE_TRIES if mutable else 0):
            code = list(parent)
            i = rng.choice(mutable)
            choices = [c for c in range(len(self.space.decisions[i])) if c != code[i]]
            code[i] = rng.choice(choices)
            child = self.space.decode(code)
            if self.violation(child) <= 0:
                break
        return child

    def _rank(self, member: tuple[tuple[int, ...], float]) -> tuple[bool, float, float]:
        """Tournament order: feasible first, then the smaller violation, then the reward."""
        violation = self.violation(self.space.decode(list(member[0])))
        return violation <= 0, -violation, member[1]

    def tell(self, policy: Policy, reward: Reward) -> None:
        self.check_reward(reward)
        self.population.append((self.space.encode(policy), self.scalar(reward)))
        self.told += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "population": [[list(code), reward] for code, reward in self.population],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population.clear()
        self.population.extend((tuple(code), float(r)) for code, r in state["population"])
