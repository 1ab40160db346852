"""Search strategies behind one interface; importing this package registers them all."""

from snnas.search.strategies import evolution, optuna, random, reinforce
from snnas.search.strategies._base import (
    STRATEGIES,
    Reward,
    Strategy,
    make_strategy,
    register_strategy,
    strategy_names,
)

__all__ = [
    "STRATEGIES",
    "Reward",
    "Strategy",
    "evolution",
    "make_strategy",
    "optuna",
    "random",
    "register_strategy",
    "reinforce",
    "strategy_names",
]
