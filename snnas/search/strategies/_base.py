"""The one small interface every search strategy implements, and the registry.

A strategy proposes policies (``ask``), learns from their rewards (``tell``), and keeps its
whole state in ``state_dict()`` so a run can resume. Randomness is derived from the seed and
a counter, never from global state, so a resumed strategy continues exactly.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from snnas._numbers import Range, type_name
from snnas.errors import ConfigError, UsageError, shorten
from snnas.space import Policy, SearchSpace

__all__ = [
    "OPTION_RANGES",
    "STRATEGIES",
    "Reward",
    "Strategy",
    "check_name",
    "make_strategy",
    "option_names",
    "option_problem",
    "parse_names",
    "register_strategy",
    "strategy_names",
]

#: The documented range of every numeric strategy option (docs/search.md). Options are
#: checked here for every strategy a configuration names, in use or not, so a bad value
#: never waits for the run that would use it. A registered strategy's option without an
#: entry must have the type of its default.
OPTION_RANGES: dict[str, dict[str, Range]] = {
    "reinforce": {
        "hidden": Range(1, 1024, integer=True),
        "temperature": Range(0, 1000, low_open=True),
        "tanh_constant": Range(0, 1000),
        "entropy_weight": Range(0, 1000),
        "baseline_decay": Range(0, 1, high_open=True),
        "lr": Range(0, 10, low_open=True),
        "batch": Range(1, 100_000, integer=True),
        "grad_clip": Range(0, 1e6),
        "ppo_epochs": Range(1, 1000, integer=True),
        "ppo_clip": Range(0, 10, low_open=True),
    },
    "evolution": {
        "population": Range(2, 100_000, integer=True),
        "tournament": Range(1, 100_000, integer=True),
    },
    "optuna": {"objectives": Range(1, 3, integer=True)},
}

#: A reward: one number, or for multi-objective strategies (accuracy, communication ratio)
#: or, on a parity space scored for degraded accuracy, (accuracy, ratio, degraded accuracy).
Reward = float | tuple[float, ...]

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
    def check_reward(reward: Reward) -> Reward:
        """``reward`` if it is a finite number or a tuple of 2 or 3 finite numbers; a
        ``ValueError`` naming it otherwise (a NaN would poison a controller's update or a
        population's ranking without a word)."""
        values = reward if isinstance(reward, tuple) else (reward,)
        if isinstance(reward, tuple) and len(reward) not in (2, 3):
            raise ValueError(f"a reward pair or triple, got {shorten(reward)}")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"rewards must be finite numbers, got {shorten(reward)}")
        return reward

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


def check_name(name: str, option: str = "--strategy") -> None:
    """Refuse a strategy name that is not registered (a :class:`UsageError`, exit code 2)."""
    from snnas.search import strategies  # noqa: F401  (registers the built-in strategies)
    from snnas.search.strategies.optuna import SAMPLERS

    base, sep, arg = name.partition(":")
    if (
        base not in STRATEGIES
        or (sep and base != "optuna")
        or (base == "optuna" and sep and arg not in SAMPLERS)
    ):
        raise UsageError(option, f"one of {', '.join(strategy_names())}", name)


def option_names(base: str) -> list[str]:
    """The options strategy ``base`` takes (its constructor's keyword arguments)."""
    import inspect

    from snnas.search import strategies  # noqa: F401

    parameters = inspect.signature(STRATEGIES[base].__init__).parameters
    return [p for p in parameters if p not in ("self", "space", "seed", "sampler")]


def option_problem(base: str, option: str, value: Any) -> tuple[str, str] | None:
    """``(expected, found)`` when ``value`` is not a valid ``option`` of strategy ``base``
    (unknown option, wrong type, NaN, out of its range), else ``None``."""
    import inspect

    accepted = option_names(base)
    if option not in accepted:
        return (
            f"an option of {base!r}: {', '.join(accepted) or 'none'}",
            f"<unknown option {shorten(option, 100, quote=True)}>",
        )
    valid = OPTION_RANGES.get(base, {}).get(option)
    found = (
        value
        if type(value) in (int, float)
        else f"<{type_name(value)}: {shorten(value, quote=True)}>"
    )
    if valid is not None:
        problem = valid.problem(value)
        return None if problem is None else (problem, found)
    default = inspect.signature(STRATEGIES[base].__init__).parameters[option].default
    widened = isinstance(default, float) and type(value) is int  # 1 for 1.0 is fine
    if default is not inspect.Parameter.empty and type(value) is not type(default) and not widened:
        return type_name(default), found
    return None


def make_strategy(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Strategy:
    """Build a strategy by name: ``reinforce``, ``random``, ``evolution``, ``optuna:<sampler>``.

    A space whose decisions are all fixed has nothing to search and is refused.
    """
    check_name(name)
    base, _, arg = name.partition(":")
    if not space.decisions:
        raise ConfigError(
            space.config.path,
            "decisions",
            "at least one decision that is not fixed (a space with every decision fixed has "
            "one policy: use snnas train --policy or snnas cost)",
            "<every decision is fixed>",
        )
    for option, value in options.items():
        problem = option_problem(base, option, value)
        if problem is not None:
            raise ConfigError(None, f"strategy.{base}.{option}", *problem)
    cls = STRATEGIES[base]
    if base == "optuna":
        options = {"sampler": arg or "tpe", **options}
    try:
        return cls(space, seed, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(None, f"strategy.{base}", "valid options", f"<{exc}>") from None


def parse_names(text: str | Sequence[str], option: str = "--strategies") -> list[str]:
    """Split a comma-separated list of strategy names; each must be registered, none given
    twice, at least one (a :class:`UsageError` otherwise)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [s.strip() for s in items if s.strip()]
    if not names:
        raise UsageError(option, "one or more strategy names, comma-separated", text)
    for name in names:
        check_name(name, option)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(option, "each strategy once", f"<{', '.join(twice)} given twice>")
    return names
