"""Uniform random search: the reference strategy and the bar every other must beat."""

from __future__ import annotations

from snnas.search.strategies._base import FEASIBLE_TRIES, Reward, Strategy, register_strategy
from snnas.space import Policy

__all__ = ["RandomSearch"]


@register_strategy("random")
class RandomSearch(Strategy):
    """Every policy drawn uniformly and independently; rewards are ignored. Within
    constraints, draws are repeated (up to ``FEASIBLE_TRIES``) until one is feasible:
    uniform over the feasible policies."""

    multi_objective = True  # it ignores rewards, so any kind of reward will do

    def ask(self) -> Policy:
        rng = self._rng()
        self.asked += 1
        policy = self.space.sample(rng)
        for _ in range(FEASIBLE_TRIES - 1):
            if self.violation(policy) <= 0:
                break
            policy = self.space.sample(rng)
        return policy

    def tell(self, policy: Policy, reward: Reward) -> None:
        self.told += 1
