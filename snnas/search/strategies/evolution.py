"""Regularized (aging) evolution (Real et al., 2019): tournament selection, one mutation."""

from __future__ import annotations

from collections import deque
from typing import Any

from snnas.search.strategies._base import Reward, Strategy, register_strategy
from snnas.space import Policy

__all__ = ["RegularizedEvolution"]


@register_strategy("evolution")
class RegularizedEvolution(Strategy):
    """Keep the ``population`` most recent evaluated policies; a child is the best of
    ``tournament`` random members with one decision changed to another of its choices; the
    oldest member dies when a child joins. Until the population is full, policies are random."""

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
            return self.space.sample(rng)
        contenders = rng.sample(list(self.population), self.tournament)
        parent = max(contenders, key=lambda member: member[1])[0]
        child = list(parent)
        mutable = [i for i, d in enumerate(self.space.decisions) if len(d) > 1]
        if mutable:
            i = rng.choice(mutable)
            choices = [c for c in range(len(self.space.decisions[i])) if c != child[i]]
            child[i] = rng.choice(choices)
        return self.space.decode(child)

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
