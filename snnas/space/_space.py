"""The immutable :class:`SearchSpace`: labelled decisions, policies and their encodings."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from snnas._numbers import type_name
from snnas.errors import ConfigError, PolicyError, shorten
from snnas.space._arch import Architecture
from snnas.space._config import (
    DTYPES,
    DecisionSpec,
    NetworkConfig,
    ParityConfig,
    SpaceConfig,
    SplitConfig,
    parse_space,
)
from snnas.space._permutations import (
    Permutation,
    all_permutations,
    from_lehmer,
    lehmer_radices,
    to_lehmer,
)
from snnas.space._toml import TomlSource, read_user_file

__all__ = [
    "MAX_PARAMS",
    "MAX_TOTAL_CHOICES",
    "Decision",
    "ParityPoint",
    "PointPolicy",
    "Policy",
    "SearchSpace",
    "load_json",
    "load_space",
    "policy_json",
]

#: A policy: one value per decision label (permutation tuple, sparsity percent, dtype name).
Policy = dict[str, Any]

_SHORT = {
    "permutation": "perm",
    "sparsity": "sparsity",
    "dtype": "dtype",
    "encode": "encode",
    "encoder": "encoder",
}

#: Most choices summed over a space's decisions (one output each in the REINFORCE
#: controller, one entry each in the space's JSON and hash). Tie decisions or raise alpha
#: to stay under it.
MAX_TOTAL_CHOICES = 250_000
#: Most parameters of the separable network (4 GB of float32 weights).
MAX_PARAMS = 1_000_000_000


@dataclass(frozen=True)
class Decision:
    """One labelled decision: its choices and the transmission points it governs."""

    label: str  # e.g. "t3.perm", or "perm" when tied across points
    kind: str  # "permutation", "sparsity" or "dtype"
    choices: tuple[Any, ...]
    points: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.choices)

    def normalize(self, value: Any) -> Any:
        """Bring a JSON value to the form of the choices (lists -> tuples, ints -> floats)."""
        if self.kind == "permutation" and isinstance(value, list):
            return tuple(value)
        if (
            self.kind in ("sparsity", "encode")
            and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            return float(value)
        return value

    def index(self, value: Any) -> int:
        """Index of ``value`` among the choices; ``PolicyError`` if it is not one.

        Types must match exactly: ``[true, false, 2, 3]`` or ``[1.0, 0.0, 2.0, 3.0]`` is not
        the permutation ``[1, 0, 2, 3]``, nor ``true`` a sparsity.
        """
        value = self.normalize(value)
        if not (
            self.kind == "permutation"
            and isinstance(value, tuple)
            and not all(type(v) is int for v in value)
        ):
            for i, choice in enumerate(self.choices):
                if type(choice) is type(value) and choice == value:
                    return i
        shown = ", ".join(_show(c) for c in self.choices[:6])
        more = ", ..." if len(self.choices) > 6 else ""
        expected = {"permutation": "a permutation (integers)", "sparsity": "a percent"}
        found = f"{_show(value)} ({type_name(value, 'json')})"
        kind = expected.get(self.kind, "a dtype name")
        raise PolicyError(
            f"{shorten(self.label)}: {found} is not a choice of this decision ({kind}; "
            f"{len(self.choices):,} choices: {shown}{more})"
        )

    def to_json(self) -> dict[str, Any]:
        """JSON form: label, kind, number of choices, the choices and the points."""
        return {
            "label": self.label,
            "kind": self.kind,
            "num_choices": len(self.choices),
            "choices": [list(c) if isinstance(c, tuple) else c for c in self.choices],
            "points": list(self.points),
        }


@dataclass(frozen=True)
class PointPolicy:
    """What every device does at one transmission point."""

    perm: Permutation  # perm[i]: destination of device i (i itself: no send)
    sparsity: float  # percent of the stream's channels sent (the first ones)
    dtype: str  # wire dtype

    def n_send(self, channels: int) -> int:
        """Channels sent out of ``channels``: ``floor(channels * sparsity / 100)``."""
        # Exact for the paper's levels (multiples of 1/16); the epsilon guards other floats.
        return min(channels, math.floor(channels * self.sparsity / 100.0 + 1e-9))

    @property
    def bytes_per_element(self) -> int:
        """Wire size of one element."""
        return DTYPES[self.dtype]


@dataclass(frozen=True)
class ParityPoint:
    """What the data devices send the parity devices at one transmission point
    (docs/parity.md): the first ``m`` channels of every data device's stream, in the point's
    wire dtype, to every parity device."""

    encode: float  # percent of the stream's channels sent (0: nothing, the point is unprotected)
    encoder: str  # "sum" or "concat": what the parity streams read from the encodings
    dtype: str  # wire dtype (the point's dtype decision)

    def m_send(self, channels: int) -> int:
        """Channels sent out of ``channels``: ``floor(channels * encode / 100)``."""
        return min(channels, math.floor(channels * self.encode / 100.0 + 1e-9))

    @property
    def bytes_per_element(self) -> int:
        """Wire size of one element."""
        return DTYPES[self.dtype]


def policy_json(policy: Mapping[str, Any]) -> dict[str, Any]:
    """A policy with JSON values (permutation tuples as lists); no validation."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in policy.items()}


def _show(value: Any) -> str:
    try:
        text = json.dumps(list(value) if isinstance(value, tuple) else value)
    except (TypeError, ValueError):
        text = repr(value)
    return shorten(text, 100)


class SearchSpace:
    """An immutable search space: an ordered list of labelled decisions over one network.

    A policy is a flat ``{label: value}`` mapping. The space encodes a policy to choice
    indices and back, validates it, gives its exact size and hashes itself stably.
    """

    def __init__(self, config: SpaceConfig) -> None:
        self.config = config
        split = config.split
        self.arch = Architecture(config.network, split.groups, split.alpha, split.overlap)
        decisions: list[Decision] = []
        points = tuple(range(len(self.arch.points)))
        # A fixed decision is a constant, not a decision: it has no label and no policy entry.
        searched = [spec for spec in config.decisions if spec.fixed is None]
        for spec in searched:
            if spec.tie:
                decisions.append(Decision(_SHORT[spec.kind], spec.kind, spec.choices, points))
        for p in points:
            for spec in searched:
                if not spec.tie:
                    label = f"t{p}.{_SHORT[spec.kind]}"
                    decisions.append(Decision(label, spec.kind, spec.choices, (p,)))
        self.decisions: tuple[Decision, ...] = tuple(decisions)
        self._by_label = {d.label: d for d in self.decisions}
        total = sum(len(d) for d in self.decisions)
        if total > MAX_TOTAL_CHOICES:
            raise ConfigError(
                config.path,
                "decisions",
                f"at most {MAX_TOTAL_CHOICES:,} choices over all decisions (tie a decision, "
                "fix one, or raise split.alpha)",
                f"<{total:,} choices in {len(self.decisions):,} decisions>",
            )
        params = self.arch.params(separable=True)
        if params > MAX_PARAMS:
            raise ConfigError(
                config.path,
                "network",
                f"a network of at most {MAX_PARAMS:,} parameters (narrower stage_widths, "
                "bottleneck_width or cardinality)",
                f"<{params:,} parameters>",
            )

    # ----------------------------------------------------------------- properties
    @property
    def name(self) -> str:
        """The space's name."""
        return self.config.name

    @property
    def network(self) -> NetworkConfig:
        """The network configuration."""
        return self.config.network

    @property
    def split(self) -> SplitConfig:
        """The split configuration."""
        return self.config.split

    @property
    def parity(self) -> ParityConfig:
        """The parity configuration."""
        return self.config.parity

    @property
    def groups(self) -> int:
        """G, the number of data devices."""
        return self.config.split.groups

    @property
    def alpha(self) -> int:
        """The staleness factor."""
        return self.config.split.alpha

    @property
    def overlap(self) -> int:
        """Blocks computed between a send and its addition (``alpha - 1`` by default)."""
        return self.config.split.overlap

    @property
    def num_points(self) -> int:
        """Number of transmission points."""
        return len(self.arch.points)

    @property
    def labels(self) -> tuple[str, ...]:
        """Decision labels, in order."""
        return tuple(d.label for d in self.decisions)

    @property
    def size(self) -> int:
        """Exact number of policies: the product of the decisions' numbers of choices."""
        return math.prod(len(d) for d in self.decisions)

    def decision(self, label: str) -> Decision:
        """The decision with this label; ``PolicyError`` if there is none."""
        try:
            return self._by_label[label]
        except (KeyError, TypeError):
            raise PolicyError(
                f"{shorten(label, 100, quote=True)} is not a decision of space {self.name!r}"
            ) from None

    def spec(self, kind: str) -> DecisionSpec:
        """The DSL specification of one kind of decision."""
        return next(s for s in self.config.decisions if s.kind == kind)

    # ----------------------------------------------------------------- identity
    def to_json(self) -> dict[str, Any]:
        """The resolved space as JSON (what the hash is computed from, plus name and size)."""
        cfg = self.config
        return {
            "name": cfg.name,
            "description": cfg.description,
            "network": {
                k: list(v) if isinstance(v, tuple) else v for k, v in vars(cfg.network).items()
            },
            "split": vars(cfg.split).copy(),
            "parity": cfg.parity.to_json(),
            "points": [
                {
                    "index": p.index,
                    "block": p.block,
                    "aggregate_block": p.aggregate_block,
                    "channels": p.channels,
                    "size": p.size,
                }
                for p in self.arch.points
            ],
            "decisions": [d.to_json() for d in self.decisions],
            "fixed": {
                s.kind: list(s.fixed) if isinstance(s.fixed, tuple) else s.fixed
                for s in cfg.decisions
                if s.fixed is not None
            },
            "size": self.size,
        }

    @cached_property
    def hash(self) -> str:
        """Stable hash of everything that defines the space (not its name or description)."""
        data = self.to_json()
        del data["name"], data["description"]
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.hash == other.hash

    def __hash__(self) -> int:
        return hash(self.hash)

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, decisions={len(self.decisions)}, size={self.size})"

    # ----------------------------------------------------------------- policies
    def check(self, policy: Mapping[str, Any]) -> str | None:
        """The first problem with ``policy`` as a message, or ``None`` if it is valid."""
        missing = [label for label in self.labels if label not in policy]
        if missing:
            more = f" and {len(missing) - 1:,} more" if len(missing) > 1 else ""
            return f"missing decision {missing[0]!r}{more} (space {self.name!r})"
        for label, value in policy.items():
            if not isinstance(label, str) or label not in self._by_label:
                return f"{shorten(label, 100, quote=True)} is not a decision of space {self.name!r}"
            try:
                self._by_label[label].index(value)
            except PolicyError as exc:
                return str(exc)
        return None

    def validate(self, policy: Mapping[str, Any]) -> Policy:
        """Return ``policy`` normalized (tuples, floats); ``PolicyError`` if it is invalid."""
        problem = self.check(policy)
        if problem is not None:
            raise PolicyError(problem)
        return {d.label: d.choices[d.index(policy[d.label])] for d in self.decisions}

    def encode(self, policy: Mapping[str, Any]) -> tuple[int, ...]:
        """Choice indices of ``policy``, in decision order."""
        policy = self.validate(policy)
        return tuple(d.index(policy[d.label]) for d in self.decisions)

    def decode(self, indices: Sequence[int]) -> Policy:
        """The policy with these choice indices (inverse of :meth:`encode`)."""
        if len(indices) != len(self.decisions):
            raise PolicyError(f"expected {len(self.decisions)} indices, got {len(indices)}")
        policy = {}
        for d, i in zip(self.decisions, indices, strict=True):
            if not isinstance(i, int) or not 0 <= i < len(d):
                raise PolicyError(f"{d.label}: index {i!r} is not in [0, {len(d)})")
            policy[d.label] = d.choices[i]
        return policy

    def policy_from_index(self, number: int) -> Policy:
        """The policy with mixed-radix number ``number`` in ``[0, size)``."""
        if not 0 <= number < self.size:
            raise PolicyError(f"policy number must be in [0, {self.size}), got {number}")
        indices = []
        for d in reversed(self.decisions):
            number, i = divmod(number, len(d))
            indices.append(i)
        return self.decode(indices[::-1])

    def sample(self, rng: random.Random) -> Policy:
        """A policy drawn uniformly from the space (each decision independently)."""
        return {d.label: d.choices[rng.randrange(len(d))] for d in self.decisions}

    def resolve(self, policy: Mapping[str, Any]) -> tuple[PointPolicy, ...]:
        """What happens at every transmission point under ``policy``."""
        policy = self.validate(policy)
        fixed = {s.kind: s.fixed for s in self.config.decisions if s.fixed is not None}
        per_point: list[dict[str, Any]] = [dict(fixed) for _ in range(self.num_points)]
        for d in self.decisions:
            for p in d.points:
                per_point[p][d.kind] = policy[d.label]
        return tuple(PointPolicy(v["permutation"], v["sparsity"], v["dtype"]) for v in per_point)

    def resolve_parity(self, policy: Mapping[str, Any]) -> tuple[ParityPoint, ...]:
        """What the data devices send the parity devices at every point (``()`` when the
        space has no parity devices)."""
        if self.parity.r == 0:
            return ()
        policy = self.validate(policy)
        fixed = {s.kind: s.fixed for s in self.config.decisions if s.fixed is not None}
        per_point: list[dict[str, Any]] = [dict(fixed) for _ in range(self.num_points)]
        for d in self.decisions:
            for p in d.points:
                per_point[p][d.kind] = policy[d.label]
        return tuple(ParityPoint(v["encode"], v["encoder"], v["dtype"]) for v in per_point)

    def no_communication_policy(self) -> Policy:
        """Every device keeps its data where the space allows it (identity permutation)."""
        identity = tuple(range(self.groups))
        policy = {}
        for d in self.decisions:
            if d.kind == "permutation" and identity in d.choices:
                policy[d.label] = identity
            elif d.kind == "encode":
                policy[d.label] = d.choices[0]  # the fewest channels to the parity devices
            else:
                policy[d.label] = d.choices[-1] if d.kind == "sparsity" else d.choices[0]
        return policy

    # ----------------------------------------------------------------- Lehmer view
    def _lehmer_coded(self, d: Decision) -> bool:
        # The length test first: it keeps G! permutations from being listed for a large G.
        return (
            d.kind == "permutation"
            and len(d.choices) == math.factorial(self.groups)
            and d.choices == all_permutations(self.groups)
        )

    def factorized_decisions(self) -> tuple[tuple[str, int], ...]:
        """(label, number of choices) of a view where each full permutation decision is
        replaced by G positional Lehmer digits ``<label>.l0 .. <label>.l{G-1}``.

        Decisions whose choices are a restricted list of permutations stay one categorical.
        Every choice count is fixed, as Optuna's categorical distributions require.
        """
        out: list[tuple[str, int]] = []
        for d in self.decisions:
            if self._lehmer_coded(d):
                radices = lehmer_radices(self.groups)
                out.extend((f"{d.label}.l{j}", r) for j, r in enumerate(radices))
            else:
                out.append((d.label, len(d)))
        return tuple(out)

    def to_factorized(self, policy: Mapping[str, Any]) -> dict[str, int]:
        """Policy -> factorized indices (see :meth:`factorized_decisions`)."""
        policy = self.validate(policy)
        out: dict[str, int] = {}
        for d in self.decisions:
            if self._lehmer_coded(d):
                for j, digit in enumerate(to_lehmer(policy[d.label])):
                    out[f"{d.label}.l{j}"] = digit
            else:
                out[d.label] = d.index(policy[d.label])
        return out

    def from_factorized(self, values: Mapping[str, int]) -> Policy:
        """Factorized indices -> policy (inverse of :meth:`to_factorized`)."""
        policy: Policy = {}
        for d in self.decisions:
            try:
                if self._lehmer_coded(d):
                    digits = [values[f"{d.label}.l{j}"] for j in range(self.groups)]
                    policy[d.label] = from_lehmer(digits)
                else:
                    policy[d.label] = d.choices[values[d.label]]
            except KeyError as exc:
                raise PolicyError(f"missing factorized value {exc.args[0]!r}") from None
            except (IndexError, ValueError, TypeError) as exc:
                raise PolicyError(f"{d.label}: bad factorized value ({exc})") from None
        return policy

    # ----------------------------------------------------------------- JSON
    def policy_to_json(self, policy: Mapping[str, Any]) -> dict[str, Any]:
        """A policy file's JSON: space name and hash, and the policy with JSON values."""
        policy = self.validate(policy)
        return {
            "space": self.name,
            "space_hash": self.hash,
            "policy": policy_json(policy),
        }

    def policy_from_json(self, data: Any, source: str = "<policy>") -> Policy:
        """Read a policy from :meth:`policy_to_json`'s form, or a bare ``{label: value}``.

        The policy must belong to this space; a ``space_hash`` that differs is refused.
        """
        where = shorten(source)
        if not isinstance(data, dict):
            raise PolicyError(f"{where}: expected a JSON object, found {type_name(data, 'json')}")
        if "policy" in data:
            if "space_hash" in data and data["space_hash"] != self.hash:
                theirs = shorten(data["space_hash"], 100, quote=True)
                name = shorten(data.get("space", "?"), 100, quote=True)
                raise PolicyError(
                    f"{where}: policy is for space hash {theirs} ({name}), not {self.hash!r} "
                    f"({self.name!r})"
                )
            data = data["policy"]
            if not isinstance(data, dict):
                raise PolicyError(
                    f"{where}: 'policy' must be a JSON object, found {type_name(data, 'json')}"
                )
        problem = self.check(data)
        if problem is not None:
            raise PolicyError(f"{where}: {problem}")
        return self.validate(data)

    def load_policy(self, path: str | Path) -> Policy:
        """Read a policy JSON file (see :meth:`policy_from_json` and :func:`load_json`)."""
        return self.policy_from_json(
            load_json(path, "<policy file>", "JSON policy file"), str(path)
        )


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that refuses a key given twice (json keeps the last one silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


class _Duplicate(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(path: str | Path, key: str = "<file>", what: str = "JSON file") -> Any:
    """A JSON file a user names, strictly: one object key given twice, ``NaN`` or
    ``Infinity`` are refused, as are the files :func:`read_user_file` refuses. A
    :class:`PolicyError` names the file and the line."""
    p = Path(path)
    try:
        text = read_user_file(p, key, what)
    except ConfigError as exc:
        raise PolicyError(str(exc)) from None
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise PolicyError(
            f"{shorten(str(p))}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    except _Duplicate as exc:
        raise PolicyError(
            f"{shorten(str(p))}: key {shorten(exc.args[0], 100, quote=True)} is given twice"
        ) from None
    except ValueError as exc:  # NaN or Infinity
        raise PolicyError(f"{shorten(str(p))}: {exc}") from None
    except RecursionError:
        raise PolicyError(f"{shorten(str(p))}: arrays or objects nested too deeply") from None


def load_space(path: str | Path) -> SearchSpace:
    """Load and validate a search-space TOML file."""
    return SearchSpace(parse_space(TomlSource.from_path(path)))


def space_from_text(text: str, path: str | None = None) -> SearchSpace:
    """Build a space from TOML text (tests and generated configs)."""
    return SearchSpace(parse_space(TomlSource(text, path)))
