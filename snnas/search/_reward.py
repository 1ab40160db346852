"""Rewards from (accuracy, communication ratio), scoring policies on validation images, and
the two-objective helpers (Pareto fronts, hypervolume, the additive epsilon indicator)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from snnas.cost import communication, get_profile, latency, parity_cost
from snnas.data import DataSplits
from snnas.errors import ConfigError, SnnasError, shorten
from snnas.search._config import REWARD_MODES, SCORING, SearchConfig
from snnas.search._pareto import epsilon_gap, hypervolume, pareto_front
from snnas.search.strategies import Reward
from snnas.space import Policy, SearchSpace
from snnas.train import Accelerator, evaluate

__all__ = [
    "DEPLOY_CALIB_IMAGES",
    "Constraints",
    "Objective",
    "PolicyScorer",
    "calibration_images",
    "epsilon_gap",
    "hypervolume",
    "make_reward",
    "pareto_front",
    "parity_ratio",
    "split_tensors",
]

#: Training images (no augmentation) the deployable score recalibrates batch norm on.
DEPLOY_CALIB_IMAGES = 1024
_CALIB_SEED = 4_243  # which training images calibrate: the same for every run
_CHUNK = 256  # images per forward pass when recalibrating or scoring in eval mode


RewardFn = Callable[..., Reward]

#: Directions of a user objective.
DIRECTIONS = ("minimize", "maximize")


@dataclass(frozen=True)
class Objective:
    """A user objective: ``fn(policy)`` scores a policy (a measured on-device latency, an
    energy estimate), combined with the built-in objectives (docs/search.md):

    * ``penalized``: the reward is ``acc - lambda x ratio - weight x fn(policy)`` when
      minimised (``+ weight x fn(policy)`` when maximised);
    * ``pareto``: a third objective, ``(acc, ratio, gain)`` with ``gain = -fn(policy)`` when
      minimised (every third coordinate is maximised), so the front is three-dimensional.

    ``fn`` is called once per distinct policy (cached by the search) and must return a
    finite number. ``name``, ``direction`` and ``weight`` are recorded with the run, and a
    run resumes only with the same ones.
    """

    fn: Callable[[Policy], float] = field(compare=False)
    name: str = "objective"
    direction: str = "minimize"
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ConfigError(None, "objective", "a callable fn(policy) -> float", self.fn)
        if not isinstance(self.name, str) or not self.name.isprintable() or not self.name:
            raise ConfigError(None, "objective.name", "a printable name", self.name)
        if self.direction not in DIRECTIONS:
            raise ConfigError(None, "objective.direction", " or ".join(DIRECTIONS), self.direction)
        if (
            isinstance(self.weight, bool)
            or not isinstance(self.weight, int | float)
            or not math.isfinite(self.weight)
            or self.weight < 0
        ):
            raise ConfigError(None, "objective.weight", "a finite number >= 0", self.weight)

    def __call__(self, policy: Policy) -> float:
        """``fn(policy)``, refused unless a finite number."""
        value = self.fn(policy)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise SnnasError(
                f"objective {self.name!r}: expected a finite number for policy "
                f"{shorten(dict(policy), 200)}, found {shorten(value)}"
            )
        return float(value)

    def gain(self, value: float) -> float:
        """``value`` as a quantity to maximise."""
        return -value if self.direction == "minimize" else value

    def to_json(self) -> dict[str, Any]:
        """What a run records of it (the function itself is not recorded)."""
        return {"name": self.name, "direction": self.direction, "weight": self.weight}


@dataclass(frozen=True)
class Constraints:
    """Budgets from ``[constraints]`` (``SearchConfig.max_comm_ratio``, ``max_latency_ms``
    on ``latency_profile``), checked with the cost model. :meth:`violation` is 0 for a
    feasible policy and otherwise the sum of each budget's relative excess (``(value -
    budget) / budget``; a ratio budget of 0 counts the excess itself)."""

    space: SearchSpace
    max_comm_ratio: float | None = None
    max_latency_ms: float | None = None
    latency_profile: str | None = None
    _cache: dict[tuple[int, ...], tuple[float, float | None]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def from_config(cls, space: SearchSpace, config: SearchConfig) -> Constraints | None:
        """The constraints ``config`` sets, or ``None`` when it sets none."""
        if config.max_comm_ratio is None and config.max_latency_ms is None:
            return None
        return cls(space, config.max_comm_ratio, config.max_latency_ms, config.latency_profile)

    def measures(self, policy: Policy) -> tuple[float, float | None]:
        """The policy's live communication ratio and, with a latency budget, its simulated
        latency in milliseconds (cached per policy)."""
        key = self.space.encode(policy)
        if key not in self._cache:
            ratio = communication(self.space, policy).live_ratio
            ms = None
            if self.max_latency_ms is not None:
                profile = get_profile(self.latency_profile or "", option="constraints.profile")
                ms = 1e3 * latency(self.space, policy, profile).latency_s
            self._cache[key] = (ratio, ms)
        return self._cache[key]

    def violation(self, policy: Policy) -> float:
        """0 within every budget; otherwise the summed relative excess (> 0)."""
        ratio, ms = self.measures(policy)
        out = 0.0
        if self.max_comm_ratio is not None and ratio > self.max_comm_ratio:
            out += (ratio - self.max_comm_ratio) / (self.max_comm_ratio or 1.0)
        if self.max_latency_ms is not None and ms is not None and ms > self.max_latency_ms:
            out += (ms - self.max_latency_ms) / self.max_latency_ms
        return out

    def to_json(self) -> dict[str, Any]:
        """The budgets (``summary.json``)."""
        return {
            "max_comm_ratio": self.max_comm_ratio,
            "max_latency_ms": self.max_latency_ms,
            "latency_profile": self.latency_profile,
        }


def make_reward(config: SearchConfig, objective: Objective | None = None) -> RewardFn:
    """The reward of ``config.reward`` as a function
    ``reward(acc, ratio, degraded=None, user=None)``.

    Without a degraded accuracy: ``acc``, ``acc - lambda * ratio``, the budget's rule, or
    the pair ``(acc, ratio)`` (``pareto``). With one (a parity space scored for it), the
    single-objective modes replace ``acc`` by ParM's A_overall(f) = ``(1 - f) acc + f
    degraded`` with ``f = reward.unavailability``, and ``pareto`` returns the triple
    ``(acc, ratio, degraded)``. With a user ``objective`` (``penalized`` and ``pareto``
    only), ``user`` is its value: subtracted (or added) with its weight, or the third
    objective's gain. An unknown mode is a :class:`ConfigError`.
    """
    mode, f = config.reward, config.unavailability
    if mode not in REWARD_MODES:
        raise ConfigError(None, "reward.mode", f"one of {', '.join(REWARD_MODES)}", mode)
    if objective is not None and mode not in ("penalized", "pareto"):
        raise ConfigError(None, "reward.mode", "penalized or pareto with a user objective", mode)

    def reward(
        acc: float, ratio: float, degraded: float | None = None, user: float | None = None
    ) -> Reward:
        if objective is not None and user is None:
            raise ConfigError(None, "objective", f"a value of {objective.name!r}", None)
        if mode == "pareto":
            if objective is not None and user is not None:
                if degraded is not None:
                    raise ConfigError(
                        None, "objective", "no degraded accuracy with a user objective", degraded
                    )
                return (acc, ratio, objective.gain(user))
            return (acc, ratio) if degraded is None else (acc, ratio, degraded)
        if degraded is not None:
            acc = (1.0 - f) * acc + f * degraded
        if mode == "accuracy":
            return acc
        if mode == "penalized":
            extra = 0.0
            if objective is not None and user is not None:
                extra = objective.weight * objective.gain(user)
            return acc - config.reward_lambda * ratio + extra
        return acc if ratio <= config.budget_or_default else acc - config.budget_penalty

    return reward


def parity_ratio(space: SearchSpace, policy: Mapping[str, Any]) -> float:
    """Live communication ratio with the parity devices' normal-operation bytes (the image
    to each parity device and every encoding, ``snnas cost``'s parity lines) added to the
    policy's side, over the same all-reduce baseline."""
    comm = communication(space, policy)
    return (comm.live_policy_bytes + parity_cost(space, policy).bytes) / comm.baseline_bytes


def split_tensors(data: DataSplits, split: str) -> tuple[Tensor, Tensor]:
    """All images of ``split`` as one tensor, as the model sees them (CIFAR: normalised by
    its evaluation transforms), and the labels."""
    if data.transforms is None:
        return data.tensors[split]
    xs, ys = zip(*data.loader(split, _CHUNK), strict=True)
    return torch.cat(xs), torch.cat(ys)


def calibration_images(data: DataSplits, n: int) -> Tensor:
    """The first ``n`` training images in a fixed shuffled order, without augmentation: what
    batch norm is recalibrated on (the same images for every policy, run and strategy)."""
    if n < 1:
        raise ConfigError(None, "calibration images", "an integer >= 1", n)
    out: list[Tensor] = []
    loader = data.loader("train", min(n, _CHUNK), shuffle=True, seed=_CALIB_SEED)
    for x, _ in loader:
        out.append(x)
        if sum(len(t) for t in out) >= n:
            break
    return torch.cat(out)[:n]


@contextlib.contextmanager
def _recalibrated(
    model: nn.Module, chunks: Sequence[Tensor], accel: Accelerator, policy: Mapping[str, Any]
) -> Iterator[None]:
    """Batch norm running statistics of ``policy`` on the calibration images (a cumulative
    average over ``chunks``), restored to the model's own afterwards: scoring never changes
    the supernet's state, so a resumed search stays exact."""
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [
        (m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
        for m in layers
        if m.running_mean is not None
        and m.running_var is not None
        and m.num_batches_tracked is not None
    ]
    was_training = model.training
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the chunks
        model.train()
        with torch.no_grad():
            for x in chunks:
                with accel.autocast():
                    model(x, policy)
        model.eval()
        yield
    finally:
        model.train(was_training)
        for m, (momentum, mean, var, count) in zip(layers, saved, strict=True):
            m.momentum = momentum
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            assert m.num_batches_tracked is not None
            m.num_batches_tracked.copy_(count)


class PolicyScorer:
    """Scores policies with the supernet's shared weights on fixed validation images.

    ``bn`` says which batch-norm statistics a policy is scored with (docs/search.md measures
    how each ranks policies):

    * ``"recalibrated"`` -- the deployable score: running statistics recomputed for the
      policy on ``calibration`` training images (no augmentation), then eval mode, as a
      device runs the frozen policy one image at a time. Independent of the batch size.
    * ``"batch"`` -- each minibatch's own statistics (depends on the minibatch's size).
    * ``"running"`` -- the supernet's shared running statistics (an average over every
      policy it was trained with).

    Minibatches all hold ``batch_size`` images (the whole split when it is smaller): a
    partial last minibatch is never scored on its own. The whole split (``batch=None``) is
    every image in eval modes, and every full minibatch with batch statistics. The
    communication ratio is the cost model's live ratio, cached per policy.
    """

    def __init__(
        self,
        space: SearchSpace,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        accel: Accelerator,
        *,
        batch_size: int,
        bn: str = "recalibrated",
        calibration: Tensor | None = None,
    ) -> None:
        if bn not in SCORING:
            raise ConfigError(None, "search.scoring", f"one of {', '.join(SCORING)}", bn)
        if bn == "recalibrated" and (calibration is None or not len(calibration)):
            raise ConfigError(None, "search.calib_images", "calibration images", 0)
        if len(labels) < 1 or len(images) != len(labels):
            raise ConfigError(
                None,
                "images to score policies on",
                "at least one image, as many labels as images (is the split empty?)",
                f"<{len(images)} images, {len(labels)} labels>",
            )
        if batch_size < 1:
            raise ConfigError(None, "search.eval_batch_size", "an integer >= 1", batch_size)
        self.space, self.model, self.accel, self.bn = space, model, accel, bn
        size = min(batch_size, len(labels))
        self.batch_size = size
        x, y = accel.batch(images, labels)
        full = len(labels) // size * size
        self.batches = [(x[i : i + size], y[i : i + size]) for i in range(0, full, size)]
        self._tail = [(x[full:], y[full:])] if full < len(labels) else []
        self.calibration = [] if calibration is None else [
            accel.batch(c, c.new_zeros(0))[0] for c in calibration.split(_CHUNK)
        ]  # fmt: skip
        self._ratios: dict[tuple[int, ...], float] = {}

    @property
    def images(self) -> int:
        """Images scored by a whole-split evaluation."""
        whole = self.batches + (self._tail if self.bn != "batch" else [])
        return sum(len(y) for _, y in whole)

    def ratio(self, policy: Mapping[str, Any]) -> float:
        """Live communication ratio of ``policy``: the bytes that can reach the head, which
        is what a deployed plan sends (cost model, stem excluded)."""
        key = self.space.encode(policy)
        if key not in self._ratios:
            self._ratios[key] = communication(self.space, policy).live_ratio
        return self._ratios[key]

    def accuracy(self, policy: Mapping[str, Any], batch: int | None = None) -> float:
        """Accuracy on minibatch ``batch`` (cycled), or on the whole split when ``None``."""
        if batch is not None:
            batches = [self.batches[batch % len(self.batches)]]
        else:
            batches = self.batches + (self._tail if self.bn != "batch" else [])
        if self.bn == "batch":
            return evaluate(self.model, batches, self.accel, policy, bn="batch")
        if self.bn == "running":
            return evaluate(self.model, _chunked(batches), self.accel, policy)
        with _recalibrated(self.model, self.calibration, self.accel, policy):
            return evaluate(self.model, _chunked(batches), self.accel, policy)


def _chunked(batches: list[tuple[Tensor, Tensor]]) -> list[tuple[Tensor, Tensor]]:
    """Eval-mode batches regrouped into forward passes of up to ``_CHUNK`` images (results do
    not depend on the grouping)."""
    if len(batches) == 1 or all(len(y) >= _CHUNK for _, y in batches):
        return batches
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    return list(zip(x.split(_CHUNK), y.split(_CHUNK), strict=True))
