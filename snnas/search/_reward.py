"""Rewards from (accuracy, communication ratio), and evaluation of policies on validation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from snnas.cost import communication
from snnas.search._config import SearchConfig
from snnas.search.strategies import Reward
from snnas.space import SearchSpace
from snnas.train import Accelerator, evaluate

__all__ = ["PolicyScorer", "make_reward", "pareto_front"]


def make_reward(config: SearchConfig) -> Callable[[float, float], Reward]:
    """The reward of ``config.reward`` as a function of (accuracy, communication ratio)."""
    if config.reward == "accuracy":
        return lambda acc, ratio: acc
    if config.reward == "penalized":
        return lambda acc, ratio: acc - config.reward_lambda * ratio
    if config.reward == "budget":
        return lambda acc, ratio: acc if ratio <= config.budget else acc - config.budget_penalty
    return lambda acc, ratio: (acc, ratio)  # pareto: both objectives


class PolicyScorer:
    """Scores policies on validation minibatches with the supernet's shared weights.

    Accuracy uses each batch's own normalisation statistics (docs/supernet.md); the
    communication ratio is the cost model's live ratio, cached per policy.
    """

    def __init__(
        self,
        space: SearchSpace,
        model: nn.Module,
        batches: list[tuple[Tensor, Tensor]],
        accel: Accelerator,
    ) -> None:
        self.space, self.model, self.accel = space, model, accel
        self.batches = [accel.batch(x, y) for x, y in batches]
        self._ratios: dict[tuple[int, ...], float] = {}

    def ratio(self, policy: Mapping[str, Any]) -> float:
        """Live communication ratio of ``policy``: the bytes that can reach the head, which
        is what a deployed plan sends (cost model, stem excluded)."""
        key = self.space.encode(policy)
        if key not in self._ratios:
            self._ratios[key] = communication(self.space, policy).live_ratio
        return self._ratios[key]

    def accuracy(self, policy: Mapping[str, Any], batch: int | None = None) -> float:
        """Accuracy on minibatch ``batch`` (cycled), or on all of them when ``None``."""
        batches = self.batches if batch is None else [self.batches[batch % len(self.batches)]]
        return evaluate(self.model, batches, self.accel, policy, bn="batch")


def pareto_front(points: list[tuple[float, float, Any]]) -> list[tuple[float, float, Any]]:
    """Non-dominated (accuracy up, ratio down) points, by increasing ratio."""
    front: list[tuple[float, float, Any]] = []
    for acc, ratio, item in sorted(points, key=lambda p: (p[1], -p[0])):
        if not front or acc > front[-1][0]:
            front.append((acc, ratio, item))
    return front
