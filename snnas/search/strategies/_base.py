"""The one small interface every search strategy implements, and the registry.

A strategy proposes policies (``ask``), learns from their rewards (``tell``), and keeps its
whole state in ``state_dict()`` so a run can resume. Randomness is derived from the seed and
a counter, never from global state, so a resumed strategy continues exactly.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from snnas.errors import ConfigError
from snnas.space import Policy, SearchSpace

__all__ = [
    "STRATEGIES",
    "Reward",
    "Strategy",
    "make_strategy",
    "register_strategy",
    "strategy_names",
]

#: A reward: one number, or (accuracy, communication ratio) for multi-objective strategies.
Reward = float | tuple[float, float]

STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator: make a strategy available under ``name``."""

    def wrap(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return wrap


class Strategy(ABC):
    """Base class of search strategies."""

    name: ClassVar[str] = "strategy"
    #: Whether ``tell`` accepts (accuracy, communication ratio) pairs.
    multi_objective: bool = False
    #: Policies asked, scored on one minibatch and told together (one controller update).
    batch_size: int = 1

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.label = self.name  # what events and reports call it
        self.seed = seed
        self.asked = 0  # counter behind every random draw
        self.told = 0

    def _rng(self, stream: int = 0) -> random.Random:
        """A fresh generator for the next draw, from the seed and the ask counter."""
        return random.Random((self.seed * 1_000_003 + self.asked) * 8 + stream)

    @abstractmethod
    def ask(self) -> Policy:
        """Propose the next policy to evaluate."""

    def ask_batch(self, n: int) -> list[Policy]:
        """Propose ``n`` policies (evaluated before any of them is told)."""
        return [self.ask() for _ in range(n)]

    @abstractmethod
    def tell(self, policy: Policy, reward: Reward) -> None:
        """Report the reward of a policy (normally one this strategy asked for)."""

    def observe(self, policy: Policy, reward: Reward) -> None:
        """Report the reward of a policy sampled to be kept, not to learn from (the search's
        phase 3). Strategies learn from it as from :meth:`tell`, except those that model a
        distribution the paper samples frozen (the REINFORCE controller)."""
        self.tell(policy, reward)

    def sample_for_training(self) -> Policy:
        """A policy to train the shared weights with: uniform unless the strategy has a
        distribution worth training under (the REINFORCE controller)."""
        rng = self._rng(stream=7)
        self.asked += 1
        return self.space.sample(rng)

    def stats(self) -> dict[str, Any]:
        """Statistics of the last update, for ``strategy.jsonl`` ({} when nothing to say)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (tensors, numbers, strings, lists, dicts)."""
        return {"name": self.name, "seed": self.seed, "asked": self.asked, "told": self.told}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        if state.get("name") != self.name:
            raise ConfigError(None, "strategy", f"a {self.name!r} state", state.get("name"))
        self.seed, self.asked, self.told = state["seed"], state["asked"], state["told"]

    @staticmethod
    def scalar(reward: Reward) -> float:
        """The number a single-objective strategy optimises."""
        return reward[0] if isinstance(reward, tuple) else float(reward)


def strategy_names() -> list[str]:
    """Registered strategy names, with the Optuna samplers spelled out."""
    from snnas.search.strategies.optuna import SAMPLERS

    first = ["reinforce", "random", "evolution"]
    names = first + sorted(n for n in STRATEGIES if n not in first and n != "optuna")
    return names + [f"optuna:{s}" for s in SAMPLERS]


def make_strategy(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Strategy:
    """Build a strategy by name: ``reinforce``, ``random``, ``evolution``, ``optuna:<sampler>``."""
    import inspect

    from snnas.search import strategies  # noqa: F401  (registers the built-in strategies)

    base, sep, arg = name.partition(":")
    if base not in STRATEGIES or (sep and base != "optuna"):
        raise ConfigError(None, "--strategy", f"one of {', '.join(strategy_names())}", name)
    cls = STRATEGIES[base]
    accepted = [
        p
        for p in inspect.signature(cls.__init__).parameters
        if p not in ("self", "space", "seed", "sampler")
    ]
    for option in options:
        if option not in accepted:
            raise ConfigError(
                None,
                f"strategy.{base}.{option}",
                f"an option of {base!r}: {', '.join(accepted) or 'none'}",
                f"<unknown option {option!r}>",
            )
    if base == "optuna":
        options = {"sampler": arg or "tpe", **options}
    try:
        return cls(space, seed, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(None, f"strategy.{base}", "valid options", f"<{exc}>") from None


def parse_names(text: str | Sequence[str]) -> list[str]:
    """Split a comma-separated list of strategy names."""
    items = text.split(",") if isinstance(text, str) else list(text)
    return [s.strip() for s in items if s.strip()]
