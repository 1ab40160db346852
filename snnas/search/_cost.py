"""The cost term of the cost-aware rewards (``penalized``, ``budget``, ``pareto``): the live
communication ratio, or a policy's simulated latency on a device profile as a ratio to the
densest policy's (``[reward] cost``, docs/search.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from snnas.cost import communication, get_profile, latency
from snnas.errors import ConfigError, SnnasError, shorten
from snnas.search._config import COSTS, SearchConfig
from snnas.space import Policy, SearchSpace

__all__ = ["CostTerm", "densest_policy"]


def densest_policy(space: SearchSpace) -> Policy:
    """The policy of ``space`` that sends the most: at every decision the cyclic shift
    (device ``i`` sends to ``i + 1``, as ``snnas.cost.alpha_scan``'s dense policy, so that
    every stream reaches device 0's head; where the space does not offer it, the first choice
    that moves the most streams), the highest sparsity level (every channel), float32 when
    the space offers it, and the largest encode share; encoders take their first choice.
    The latency cost's reference (1.0)."""
    shift = tuple((i + 1) % space.groups for i in range(space.groups))
    policy: dict[str, Any] = {}
    for d in space.decisions:
        if d.kind == "permutation" and shift in d.choices:
            policy[d.label] = shift
        elif d.kind == "permutation":
            moved = [sum(i != j for i, j in enumerate(p)) for p in d.choices]
            policy[d.label] = d.choices[moved.index(max(moved))]
        elif d.kind in ("sparsity", "encode"):
            policy[d.label] = max(d.choices)
        elif d.kind == "dtype":
            policy[d.label] = "float32" if "float32" in d.choices else d.choices[0]
        else:
            policy[d.label] = d.choices[0]
    return space.validate(policy)


class CostTerm:
    """``ratio(policy)``: the cost term a reward uses, cached per policy (both measures are
    deterministic functions of the space and the policy).

    * ``comm``: the cost model's live communication ratio (1.0 = a ring all-reduce's bytes);
    * ``latency``: the policy's latency simulated on ``profile`` by the plan engine's
      simulated transport (``snnas.cost.latency``) over the densest policy's
      (:func:`densest_policy`), so 1.0 plays the role of the all-reduce's 1.0.

    ``key`` is the name of the cost in events, records and fronts (``comm_ratio`` or
    ``latency_ratio``); events always carry ``comm_ratio`` as well.
    """

    def __init__(self, space: SearchSpace, cost: str = "comm", profile: str | None = None) -> None:
        self.space, self.cost, self.profile_name = space, cost, profile
        self._comm: dict[tuple[int, ...], float] = {}
        self._ms: dict[tuple[int, ...], float] = {}
        self.reference_ms: float | None = None
        # The loader's checks again: a SearchConfig made in Python skips them, and an unknown
        # cost must not fall back to the communication ratio, nor a profile go unused.
        if cost not in COSTS:
            raise ConfigError(None, "reward.cost", f"one of {', '.join(COSTS)}", cost)
        if cost == "comm" and profile is not None:
            raise ConfigError(
                None, "reward.profile", 'unset unless reward.cost = "latency"', profile
            )
        if cost == "latency" and profile is None:
            raise ConfigError(
                None, "reward.profile", 'a device profile with reward.cost = "latency"', "<unset>"
            )
        if cost == "latency":
            assert profile is not None
            self.profile = get_profile(profile, option="reward.profile")
            self.reference_ms = self.latency_ms(densest_policy(space))
            if self.reference_ms <= 0:
                raise SnnasError(
                    f"reward.profile {profile!r}: the densest policy's simulated latency is "
                    f"{self.reference_ms!r} ms; a latency ratio needs a positive reference"
                )

    @classmethod
    def from_config(cls, space: SearchSpace, config: SearchConfig) -> CostTerm:
        """The cost term ``config`` sets (``reward.cost``, ``reward.profile``)."""
        return cls(space, config.cost, config.cost_profile)

    @property
    def latency(self) -> bool:
        """Whether the cost is the latency ratio."""
        return self.cost == "latency"

    @property
    def key(self) -> str:
        """The cost's name in events, records and fronts."""
        return "latency_ratio" if self.latency else "comm_ratio"

    @property
    def label(self) -> str:
        """The cost in words, for reports and plots."""
        if self.latency:
            return (
                f"latency ratio (simulated latency on {self.profile.name} / the densest "
                f"policy's {self.reference_ms:.4g} ms)"
            )
        return "communication ratio (policy bytes / ring all-reduce bytes)"

    def comm_ratio(self, policy: Mapping[str, Any]) -> float:
        """The live communication ratio of ``policy`` (cached)."""
        key = self.space.encode(policy)
        if key not in self._comm:
            self._comm[key] = communication(self.space, policy).live_ratio
        return self._comm[key]

    def latency_ms(self, policy: Mapping[str, Any]) -> float:
        """The simulated latency of one image under ``policy`` in ms (latency mode; cached);
        a value that is not a finite number is refused."""
        key = self.space.encode(policy)
        if key not in self._ms:
            ms = 1e3 * latency(self.space, policy, self.profile).latency_s
            if not math.isfinite(ms):
                raise SnnasError(
                    f"reward.profile {self.profile_name!r}: simulated latency {ms!r} ms for "
                    f"policy {shorten(dict(policy), 200)}: not a finite number"
                )
            self._ms[key] = ms
        return self._ms[key]

    def ratio(self, policy: Mapping[str, Any]) -> float:
        """The cost term of ``policy``."""
        if not self.latency:
            return self.comm_ratio(policy)
        assert self.reference_ms is not None  # set in latency mode
        return self.latency_ms(policy) / self.reference_ms

    def measures(self, policy: Mapping[str, Any]) -> dict[str, float]:
        """What an event records of the cost: ``comm_ratio``, and in latency mode
        ``latency_ms`` and ``latency_ratio``."""
        out = {"comm_ratio": self.comm_ratio(policy)}
        if self.latency:
            out.update(latency_ms=self.latency_ms(policy), latency_ratio=self.ratio(policy))
        return out

    def to_json(self) -> dict[str, Any]:
        """What a run records of the cost (``summary.json``, ``front.json``, reports)."""
        out: dict[str, Any] = {"cost": self.cost, "key": self.key}
        if self.latency:
            out.update(
                profile=self.profile_name,
                profile_name=self.profile.name,
                reference="densest policy (snnas.search._cost.densest_policy)",
                reference_ms=self.reference_ms,
            )
        return out
