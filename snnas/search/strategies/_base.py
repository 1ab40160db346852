"""The one small interface every search strategy implements, and the registry.

A strategy proposes policies (``ask``), learns from their rewards (``tell``), and keeps its
whole state in ``state_dict()`` so a run can resume. Randomness is derived from the seed and
a counter, never from global state, so a resumed strategy continues exactly.

The registry knows nothing of any one strategy: a class says what it is through class
attributes (``option_ranges``, ``variants`` and ``variant_option`` for names such as
``optuna:tpe``) and :meth:`Strategy.wraps` (objects it turns into a strategy, such as an
Optuna sampler instance). Importing this module imports the package first (Python imports a
module's parents), and the package registers every built-in strategy.
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
    "FEASIBLE_TRIES",
    "STRATEGIES",
    "Reward",
    "Strategy",
    "check_name",
    "make_strategy",
    "option_names",
    "option_problem",
    "parse_names",
    "register_strategy",
    "strategy_base",
    "strategy_names",
]

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


#: Tries a strategy makes to propose a policy within the constraints before it proposes
#: an infeasible one anyway (which the search scores but never selects).
FEASIBLE_TRIES = 100


class Strategy(ABC):
    """Base class of search strategies."""

    name: ClassVar[str] = "strategy"
    #: The documented range of each numeric option (docs/search.md); an option without an
    #: entry must have the type of its default.
    option_ranges: ClassVar[dict[str, Range]] = {}
    #: Names after the colon (``optuna:tpe``); empty: the strategy has no variants.
    variants: ClassVar[tuple[str, ...]] = ()
    #: The constructor argument a variant is passed as (``sampler`` for ``optuna:tpe``).
    variant_option: ClassVar[str | None] = None
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
        #: ``violation(policy)``: 0 for a policy within the search's constraints, > 0 by
        #: how much it exceeds them (None: no constraints). See :meth:`set_constraint`.
        self.constraint: Callable[[Policy], float] | None = None

    @classmethod
    def wraps(cls, obj: object) -> bool:
        """Whether :meth:`from_object` turns ``obj`` into this strategy (an Optuna sampler
        instance for the Optuna strategy); no strategy wraps anything by default."""
        return False

    @classmethod
    def from_object(cls, obj: object, space: SearchSpace, seed: int, **options: Any) -> Strategy:
        """The strategy around ``obj`` (one :meth:`wraps` accepts)."""
        raise TypeError(f"{cls.name} wraps no objects")

    def set_constraint(self, violation: Callable[[Policy], float] | None) -> None:
        """Search within constraints: ``violation(policy)`` is 0 for a feasible policy and
        the amount by which it exceeds a budget otherwise. The search never selects an
        infeasible policy; each strategy also steers away from them (docs/search.md). Set
        before the first ask."""
        self.constraint = violation

    def violation(self, policy: Policy) -> float:
        """How far ``policy`` exceeds the constraints (0: feasible, or no constraints)."""
        return 0.0 if self.constraint is None else self.constraint(policy)

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
    """Registered strategy names, with every variant spelled out (``optuna:tpe``)."""
    first = ["reinforce", "random", "evolution"]
    order = [n for n in first if n in STRATEGIES] + sorted(n for n in STRATEGIES if n not in first)
    names: list[str] = []
    for base in order:
        cls = STRATEGIES[base]
        names += [f"{base}:{v}" for v in cls.variants] if cls.variants else [base]
    return names


def check_name(name: str, option: str = "--strategy") -> None:
    """Refuse a strategy name that is not registered (a :class:`UsageError`, exit code 2)."""
    base, sep, arg = name.partition(":") if isinstance(name, str) else ("", "", "")
    cls = STRATEGIES.get(base)
    if cls is None or (sep and arg not in cls.variants):
        raise UsageError(option, f"one of {', '.join(strategy_names())}", name)


def option_names(base: str) -> list[str]:
    """The options strategy ``base`` takes (its constructor's keyword arguments)."""
    import inspect

    cls = STRATEGIES[base]
    parameters = inspect.signature(cls.__init__).parameters
    return [p for p in parameters if p not in ("self", "space", "seed", cls.variant_option)]


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
    valid = STRATEGIES[base].option_ranges.get(option)
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


def strategy_base(strategy: str | Strategy | object) -> str | None:
    """The registered name whose ``[strategy.<name>]`` options apply to ``strategy`` (a name,
    or an object a registered strategy wraps); ``None`` for a ready :class:`Strategy`."""
    if isinstance(strategy, str):
        return strategy.partition(":")[0]
    if isinstance(strategy, Strategy):
        return None
    return next((name for name, cls in STRATEGIES.items() if cls.wraps(strategy)), None)


def make_strategy(
    name: str | Strategy | object, space: SearchSpace, seed: int = 0, **options: Any
) -> Strategy:
    """Build a strategy: by name (``reinforce``, ``random``, ``evolution``,
    ``optuna:<sampler>``), around an object a registered strategy wraps (any
    ``optuna.samplers.BaseSampler`` instance), or take a ready :class:`Strategy` of this
    space as it is (``options`` must then be empty).

    A space whose decisions are all fixed has nothing to search and is refused.
    """
    base = strategy_base(name)
    if not isinstance(name, Strategy) and base is None:
        raise UsageError(
            "strategy",
            f"a strategy name ({', '.join(strategy_names())}), a Strategy or an object a "
            "strategy wraps (an optuna.samplers.BaseSampler instance)",
            f"<{type(name).__name__}>",
        )
    if isinstance(name, str):
        check_name(name)
    if not space.decisions:
        raise ConfigError(
            space.config.path,
            "decisions",
            "at least one decision that is not fixed (a space with every decision fixed has "
            "one policy: use snnas train --policy or snnas cost)",
            "<every decision is fixed>",
        )
    if isinstance(name, Strategy):
        if name.space.hash != space.hash:
            same_name = name.space.name == space.name
            hint = (
                " (snnas search samples a parity space with its parity decisions fixed to the "
                "most protective choice: build the strategy on "
                "snnas.search._protective.searched_space(space))"
                if same_name
                else ""
            )
            found = (
                f"a strategy of another space named {name.space.name!r}"
                if same_name
                else (name.space.name)
            )
            raise ConfigError(None, "strategy", f"a strategy of space {space.name!r}{hint}", found)
        if options:
            raise ConfigError(
                None, "strategy", "no options with a ready strategy", ", ".join(options)
            )
        return name
    if base is None:  # a Strategy was returned above; this keeps mypy's narrowing
        raise TypeError(f"no registered strategy wraps {type(name).__name__}")
    for option, value in options.items():
        problem = option_problem(base, option, value)
        if problem is not None:
            raise ConfigError(None, f"strategy.{base}.{option}", *problem)
    cls = STRATEGIES[base]
    try:
        if not isinstance(name, str):
            return cls.from_object(name, space, seed, **options)
        arg = name.partition(":")[2]
        if arg and cls.variant_option:
            options = {cls.variant_option: arg, **options}
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
