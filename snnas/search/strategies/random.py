"""Uniform random search: the reference strategy and the bar every other must beat."""

from __future__ import annotations

from snnas.search.strategies._base import Reward, Strategy, register_strategy
from snnas.space import Policy

__all__ = ["RandomSearch"]


@register_strategy("random")
class RandomSearch(Strategy):
    """Every policy drawn uniformly and independently; rewards are ignored."""

    multi_objective = True  # it ignores rewards, so any kind of reward will do

    def ask(self) -> Policy:
        policy = self.space.sample(self._rng())
        self.asked += 1
        return policy

    def tell(self, policy: Policy, reward: Reward) -> None:
        self.told += 1
