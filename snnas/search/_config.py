"""Search configuration: defaults per dataset, TOML files and ``--set key=value`` overrides."""

from __future__ import annotations

import re
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from snnas._numbers import Range
from snnas.errors import SnnasError, UsageError
from snnas.space._toml import TomlSource

__all__ = [
    "COSTS",
    "DEFAULT_BUDGET",
    "RANGES",
    "REWARD_MODES",
    "SCORING",
    "SearchConfig",
    "load_search_config",
    "with_defaults",
]

REWARD_MODES = ("accuracy", "penalized", "budget", "pareto")
#: What the cost term of the cost-aware modes measures (``[reward] cost``, docs/search.md).
COSTS = ("comm", "latency")
#: ``budget`` mode's threshold when ``reward.budget`` is not set.
DEFAULT_BUDGET = 0.3
#: Batch-norm statistics a policy is scored with (snnas.search.PolicyScorer).
SCORING = ("recalibrated", "batch", "running")


@dataclass(frozen=True)
class SearchConfig:
    """The alternating search of Lin & Wang (Section 3.2, 4.2), every knob exposed."""

    iterations: int  # I: repetitions of the three phases
    train_steps: int  # phase 1: shared-weight SGD steps per iteration (0: one pass)
    strategy_steps: int  # phase 2: strategy updates per iteration, one validation batch each
    samples: int  # phase 3: policies sampled and scored per iteration
    topk: int  # policies kept and re-scored on the whole validation split at the end
    batch_size: int  # shared-weight training batch
    eval_batch_size: int  # validation minibatch of one reward
    lr: float = 0.1  # shared weights: SGD
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of all training steps; lr /= 10
    augment: bool = True
    reward: str = "accuracy"  # accuracy | penalized | budget | pareto
    reward_lambda: float = 0.1  # penalized: accuracy - lambda * communication ratio
    # budget: the largest communication ratio without penalty (unset: DEFAULT_BUDGET);
    # pareto: the selected policy's largest ratio (unset: the knee of the front).
    budget: float | None = None
    budget_penalty: float = 1.0  # budget: subtracted from the accuracy over the budget
    # The cost term ("ratio" above) of penalized, budget and pareto: "comm", the live
    # communication ratio, or "latency", the policy's simulated latency on ``cost_profile``
    # over the densest policy's (snnas.search._cost, docs/search.md).
    cost: str = "comm"
    cost_profile: str | None = None  # latency: a shipped device profile's name or a .toml file
    # Parity spaces ([parity] r >= 1) in snnas compare's fixed mode: score A_degraded, the
    # third objective (pareto), and use A_overall(f) = (1 - f) acc + f A_degraded in the
    # single-objective modes, f = ``unavailability`` (docs/search.md). None (unset): on in
    # snnas compare, off in snnas search (which cannot score it); true in snnas search is
    # refused, false turns it off in snnas compare.
    degraded: bool | None = None
    unavailability: float = 0.1
    # Search rewards: batch-norm statistics ("recalibrated", "batch" or "running") and, when
    # recalibrated, how many training images (docs/search.md: the proxy table). Final
    # figures are always deployable (recalibrated on 1,024 images, eval mode).
    scoring: str = "batch"
    calib_images: int = 256
    rescore: int = 30  # candidates (best search rewards) re-scored at the end; topk of them kept
    strategy: dict[str, Any] = field(default_factory=dict)  # {strategy name: {option: value}}
    # Constraints ([constraints], docs/search.md): budgets a selected policy must meet,
    # from the cost model. None: no budget. A policy over a budget is infeasible: never
    # selected, and steered away from by every strategy (not a penalty on the reward).
    max_comm_ratio: float | None = None  # live communication ratio (of the all-reduce's)
    max_latency_ms: float | None = None  # simulated latency of one image on latency_profile
    latency_profile: str | None = None  # a shipped device profile's name or a .toml file

    @property
    def budget_or_default(self) -> float:
        """The ``budget`` mode's threshold: ``budget``, or :data:`DEFAULT_BUDGET` unset."""
        return DEFAULT_BUDGET if self.budget is None else self.budget

    def to_json(self) -> dict[str, Any]:
        """JSON form. An unset budget is written as the default it stands for, except in
        ``pareto`` mode where unset means a different rule (runs saved when the budget was
        always 0.3 resume as they were)."""
        data = asdict(self)
        if self.budget is None and self.reward != "pareto":
            data["budget"] = DEFAULT_BUDGET
        data["milestones"] = list(self.milestones)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchConfig:
        """Inverse of :meth:`to_json`."""
        data = dict(data)  # keys an older version did not write take their defaults
        data["milestones"] = tuple(data["milestones"])
        return cls(**data)


def with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A configuration's JSON as saved by an older version, with the keys it predates set
    to their defaults (so that resuming compares like with like)."""
    defaults = {f.name: f.default for f in fields(SearchConfig) if f.default is not MISSING}
    return {**{k: defaults[k] for k in _ADDED if k not in saved}, **saved}


#: Keys added after the first released configuration, with the default older runs had.
_ADDED = (
    "degraded",
    "unavailability",
    "max_comm_ratio",
    "max_latency_ms",
    "latency_profile",
    "cost",
    "cost_profile",
)

#: Digits quickstart: 1,200 training steps (30 epochs) and 600 evaluations in all. A reward
#: is the accuracy on the whole validation split (180 images): smaller minibatches made the
#: rewards too noisy to rank policies that differ by a point (docs/search.md).
DIGITS = SearchConfig(
    iterations=10,
    train_steps=120,
    strategy_steps=30,
    samples=30,
    topk=10,
    batch_size=32,
    eval_batch_size=180,
)
#: Fashion-MNIST (search_spaces/fashion.toml, configs/search_fashion.toml): 10 iterations of
#: 200 steps of 64 images (about 2.3 passes over the 55,000 training images in all), 600
#: evaluations, each reward on 1,000 of the 5,000 validation images (batch statistics).
FASHION = SearchConfig(
    iterations=10,
    train_steps=200,
    strategy_steps=30,
    samples=30,
    topk=10,
    batch_size=64,
    eval_batch_size=1000,
    augment=False,  # random shifts slowed short training down (snnas.train.default_config)
)
#: CIFAR: the paper's procedure (60 iterations of one pass, 500 controller steps, 100 samples).
CIFAR = SearchConfig(
    iterations=60,
    train_steps=0,
    strategy_steps=500,
    samples=100,
    topk=10,
    batch_size=128,
    eval_batch_size=128,
    milestones=(0.5, 0.75),
    # Batch statistics of a 128-image minibatch rank policies poorly (docs/search.md: the
    # digits table at 64 and 32 images); recalibration does not depend on the minibatch.
    scoring="recalibrated",
    calib_images=512,
)

# TOML layout: [search] for the loop, [reward] for the reward, [strategy] for its options.
_SECTIONS = {
    "search": (
        "iterations",
        "train_steps",
        "strategy_steps",
        "samples",
        "topk",
        "batch_size",
        "eval_batch_size",
        "lr",
        "momentum",
        "weight_decay",
        "milestones",
        "augment",
        "scoring",
        "calib_images",
        "rescore",
    ),
    "reward": (
        "mode",
        "lambda",
        "budget",
        "penalty",
        "degraded",
        "unavailability",
        "cost",
        "profile",
    ),
    "constraints": ("comm_ratio", "latency_ms", "profile"),
}
_CONSTRAINT_FIELDS = {
    "comm_ratio": "max_comm_ratio",
    "latency_ms": "max_latency_ms",
    "profile": "latency_profile",
}
_STRATEGY_TABLES = ("reinforce", "random", "evolution", "optuna")
_REWARD_FIELDS = {
    "mode": "reward",
    "lambda": "reward_lambda",
    "budget": "budget",
    "penalty": "budget_penalty",
    "degraded": "degraded",
    "unavailability": "unavailability",
    "cost": "cost",
    "profile": "cost_profile",
}


#: The documented range of every numeric setting (docs/search.md), by field name.
RANGES: dict[str, Range] = {
    "iterations": Range(1, 100_000, integer=True),
    "train_steps": Range(0, 10_000_000, integer=True),
    "strategy_steps": Range(0, 10_000_000, integer=True),
    "samples": Range(1, 100_000, integer=True),
    "topk": Range(1, 10_000, integer=True),
    "batch_size": Range(1, 65_536, integer=True),
    "eval_batch_size": Range(1, 65_536, integer=True),
    "lr": Range(0, 10, low_open=True),
    "momentum": Range(0, 1, high_open=True),
    "weight_decay": Range(0, 1),
    "reward_lambda": Range(0, 1000),
    "budget": Range(0, 100, low_open=True),
    "budget_penalty": Range(0, 1000),
    "unavailability": Range(0, 1),
    "calib_images": Range(1, 1_000_000, integer=True),
    "rescore": Range(1, 10_000, integer=True),
    "max_comm_ratio": Range(0, 100),
    "max_latency_ms": Range(0, 1e9, low_open=True),
}
_MILESTONE = Range(0, 1)
_MAX_MILESTONES = 16
#: Numeric settings whose default is None (unset): a number given is a float.
_OPTIONAL = ("budget", "max_comm_ratio", "max_latency_ms")
#: One part of a --set key: a TOML bare key.
_KEY_PART = re.compile(r"[A-Za-z0-9_-]+")


def _typed(src: TomlSource, key: str, name: str, value: Any, current: Any) -> Any:
    """Check ``value`` for field ``name`` against its documented range, or the type of its
    default ``current``."""
    if name == "degraded":  # a boolean whose default (None) is "unset"
        if not isinstance(value, bool):
            raise src.error(key, "a boolean (true or false)", src.found(value))
        return value
    if name in RANGES:
        problem = RANGES[name].problem(value)
        if problem is not None:
            found = value if type(value) in (int, float) else src.found(value)
            raise src.error(key, problem, found)
        return float(value) if isinstance(current, float) or name in _OPTIONAL else value
    if name in ("latency_profile", "cost_profile"):
        if not isinstance(value, str) or not value or len(value) > 4096:
            raise src.error(key, "a device profile's name or a .toml file", src.found(value))
        return value
    if isinstance(current, tuple):  # milestones
        if (
            not isinstance(value, list)
            or len(value) > _MAX_MILESTONES
            or any(_MILESTONE.problem(v) for v in value)
        ):
            raise src.error(
                key,
                f"an array of at most {_MAX_MILESTONES} fractions in [0, 1]",
                src.found(value),
            )
        return tuple(float(v) for v in value)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise src.error(key, "a boolean (true or false)", src.found(value))
        return value
    if not isinstance(value, str):
        raise src.error(key, "a string", src.found(value))
    return value


def _apply(src: TomlSource, config: SearchConfig, data: dict[str, Any]) -> SearchConfig:
    from snnas.search.strategies._base import option_problem

    src.check_keys(data, "", ("search", "reward", "constraints", "strategy"))
    changes: dict[str, Any] = {}
    for section, allowed in _SECTIONS.items():
        table = src.table(data, section)
        src.check_keys(table, section, allowed)
        for key, value in table.items():
            fields_of = {"reward": _REWARD_FIELDS, "constraints": _CONSTRAINT_FIELDS}
            name = fields_of.get(section, {}).get(key, key)
            changes[name] = _typed(src, f"{section}.{key}", name, value, getattr(config, name))
    strategy = {name: dict(options) for name, options in config.strategy.items()}
    table = src.table(data, "strategy")
    src.check_keys(table, "strategy", _STRATEGY_TABLES)
    for name in table:
        options = src.table(table, name, "strategy")
        # Every strategy's options are checked, whether or not this run uses it.
        for option, value in options.items():
            problem = option_problem(name, option, value)
            if problem is not None:
                raise src.error(f"strategy.{name}.{option}", *problem)
        strategy.setdefault(name, {}).update(options)
    config = replace(config, **changes, strategy=strategy)
    _validate(src, config)
    return config


def _validate(src: TomlSource, config: SearchConfig) -> None:
    if config.scoring not in SCORING:
        raise src.error("search.scoring", f"one of {', '.join(SCORING)}", config.scoring)
    if config.reward not in REWARD_MODES:
        raise src.error("reward.mode", f"one of {', '.join(REWARD_MODES)}", config.reward)
    if config.cost not in COSTS:
        raise src.error("reward.cost", f"one of {', '.join(COSTS)}", config.cost)
    if config.cost == "latency" and config.cost_profile is None:
        raise src.error(
            "reward.profile",
            'a device profile with reward.cost = "latency" (the latency is simulated on it)',
            "<unset>",
        )
    if config.cost == "comm" and config.cost_profile is not None:
        raise src.error(
            "reward.profile",
            'unset unless reward.cost = "latency" (the communication ratio needs no profile)',
            config.cost_profile,
        )
    if config.max_latency_ms is not None and config.latency_profile is None:
        raise src.error(
            "constraints.profile",
            "a device profile with constraints.latency_ms (the latency is simulated on it)",
            "<unset>",
        )
    for key, profile in (
        ("constraints.profile", config.latency_profile),
        ("reward.profile", config.cost_profile),
    ):
        if profile is None:
            continue
        from snnas.cost import PROFILES, get_profile  # networkx: only when a profile is set

        try:
            get_profile(profile, option=key)
        except SnnasError as exc:
            raise src.error(
                key, f"one of {', '.join(PROFILES)} or a readable .toml profile ({exc})", profile
            ) from None
    evolution = config.strategy.get("evolution", {})
    population, tournament = evolution.get("population", 20), evolution.get("tournament", 5)
    if tournament > population:
        raise src.error(
            "strategy.evolution.tournament",
            f"at most strategy.evolution.population = {population}",
            tournament,
        )


def _parse_set(item: str) -> tuple[list[str], Any]:
    """``SECTION.KEY=VALUE`` -> (key parts, value); the value is read as TOML, a bare word
    as a string. A malformed item is a :class:`UsageError`."""
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < 2 or not all(_KEY_PART.fullmatch(p) for p in parts):
        raise UsageError(
            "--set",
            "SECTION.KEY=VALUE with a section and a key of letters, digits, _ and - "
            "(search.iterations=5, strategy.reinforce.lr=0.003)",
            item,
        )
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError, ValueError):
        value = raw  # a bare word (or too long a number): a string
    return parts, value


def load_search_config(
    dataset: str, path: str | Path | None = None, overrides: list[str] | None = None
) -> SearchConfig:
    """Defaults for ``dataset``, then the TOML file ``path``, then ``--set`` overrides.

    A bad file is a :class:`~snnas.errors.ConfigError` naming the file and line; a bad
    override a :class:`~snnas.errors.UsageError` naming ``--set`` and the key.
    """
    config = {"digits": DIGITS, "fashion-mnist": FASHION}.get(dataset, CIFAR)
    if path is not None:
        source = TomlSource.from_path(path)
        config = _apply(source, config, source.data)
    if overrides:
        data: dict[str, Any] = {}
        for item in overrides:
            parts, value = _parse_set(item)
            table = data
            for part in parts[:-1]:
                table = table.setdefault(part, {})
                if not isinstance(table, dict):
                    raise UsageError("--set", "no key set both as a value and a table", item)
            if isinstance(table.get(parts[-1]), dict):
                raise UsageError("--set", "no key set both as a value and a table", item)
            table[parts[-1]] = value
        config = _apply(TomlSource("", "--set", usage=True), config, data)
    return config
