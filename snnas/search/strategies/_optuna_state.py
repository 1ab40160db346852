"""The random state of an Optuna sampler, as JSON-able data, so a resumed study continues
the uninterrupted one (docs/search.md, "Resuming an Optuna search").

Optuna's samplers draw from numpy ``RandomState`` objects that they keep in private
attributes (``TPESampler._rng``, a ``LazyRandomState`` holding ``.rng``; its
``_random_sampler._rng``; ``NSGAIISampler._rng``, ...). :func:`find_random_states` finds
them by walking the sampler's attributes (only objects of Optuna's own classes), so a
sampler is covered without a list of its attributes. A state is saved as plain numbers
(``keys``: the 624 words of the Mersenne Twister, ``pos``, ``has_gauss``, ``gauss``):
checkpoints are loaded without unpickling. :func:`check_random_states` refuses a damaged
one before anything is changed.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from snnas.errors import CheckpointError, shorten

__all__ = [
    "EXACT_SAMPLERS",
    "capture",
    "check_json_attrs",
    "check_random_states",
    "find_random_states",
    "inexact_reason",
    "restore",
]

#: Sampler classes whose whole state is their random state and the study (trials and
#: system attributes): restored, they continue exactly. Others keep more (``GPSampler``
#: caches its fitted kernels as a warm start) and resume deterministically, not exactly.
EXACT_SAMPLERS = frozenset(
    {"TPESampler", "RandomSampler", "NSGAIISampler", "NSGAIIISampler", "QMCSampler"}
)
_WORDS = 624  # MT19937's state: 624 32-bit words
_DEPTH = 4  # how deep the walk goes (TPESampler._random_sampler._rng._rng is 3)


def _is_optuna(obj: object) -> bool:
    return type(obj).__module__.split(".")[0] == "optuna"


def find_random_states(sampler: object) -> tuple[dict[str, Any], list[str]]:
    """The random states inside ``sampler``: ``{path: holder}`` where a holder is a numpy
    ``RandomState`` or Optuna's ``LazyRandomState`` (path such as ``_random_sampler._rng``),
    and the paths of generators this module cannot save (``numpy.random.Generator``,
    ``random.Random``, ``torch.Generator``)."""
    import random

    import numpy as np

    torch = sys.modules.get("torch")  # a sampler holding a torch generator imported it
    unsaved_kinds: tuple[type, ...] = (np.random.Generator, random.Random)
    if torch is not None:
        unsaved_kinds += (torch.Generator,)
    found: dict[str, Any] = {}
    unsaved: list[str] = []
    seen: set[int] = set()

    def walk(obj: object, path: str, depth: int) -> None:
        if id(obj) in seen or depth > _DEPTH:
            return
        seen.add(id(obj))
        for name, value in sorted(vars(obj).items()):
            where = f"{path}.{name}" if path else name
            if isinstance(value, np.random.RandomState) or type(value).__name__ == (
                "LazyRandomState"
            ):
                found[where] = value
            elif isinstance(value, unsaved_kinds):
                unsaved.append(where)
            elif _is_optuna(value) and hasattr(value, "__dict__"):
                walk(value, where, depth + 1)

    walk(sampler, "", 0)
    return found, unsaved


def inexact_reason(sampler: object) -> str | None:
    """Why ``sampler`` cannot be resumed exactly (``None``: it can)."""
    name = type(sampler).__name__
    _, unsaved = find_random_states(sampler)
    if unsaved:
        return f"{name} draws from generators snnas cannot save ({', '.join(unsaved)})"
    if name not in EXACT_SAMPLERS or not _is_optuna(sampler):
        return f"{name} may keep state beyond its random state and its trials"
    return None


def _encode(state: tuple[Any, ...]) -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = state
    if kind != "MT19937":  # numpy's RandomState is always MT19937
        raise ValueError(f"a MT19937 random state, got {kind!r}")
    return {
        "keys": [int(k) for k in keys],
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def capture(sampler: object) -> dict[str, Any]:
    """``{path: state or None}`` of every random state in ``sampler`` (``None``: a lazy one
    never drawn from, which a fresh sampler re-creates from its seed)."""
    out: dict[str, Any] = {}
    for path, holder in find_random_states(sampler)[0].items():
        if type(holder).__name__ == "LazyRandomState":
            rng = holder._rng
            out[path] = None if rng is None else _encode(rng.get_state(legacy=True))
        else:
            out[path] = _encode(holder.get_state(legacy=True))
    return out


def _problem(state: Any) -> str | None:
    """What is wrong with one saved state (``None``: nothing)."""
    if state is None:
        return None
    if not isinstance(state, dict) or set(state) != {"keys", "pos", "has_gauss", "gauss"}:
        return "expected keys, pos, has_gauss and gauss"
    keys, pos, has_gauss, gauss = (state[k] for k in ("keys", "pos", "has_gauss", "gauss"))
    if not isinstance(keys, list) or len(keys) != _WORDS:
        found = len(keys) if isinstance(keys, list) else type(keys).__name__
        return f"expected {_WORDS} key words, found {found}"
    if not all(type(k) is int and 0 <= k < 2**32 for k in keys):
        return "key words outside [0, 2^32)"
    if not any(keys):
        return "key words all zero"
    if type(pos) is not int or not 0 <= pos <= _WORDS:
        return f"position {shorten(pos, 40)} outside [0, {_WORDS}]"
    if has_gauss not in (0, 1) or type(has_gauss) is not int:
        return f"has_gauss {shorten(has_gauss, 40)} not 0 or 1"
    if type(gauss) not in (int, float) or not math.isfinite(gauss):
        return f"cached gaussian {shorten(gauss, 40)} not a finite number"
    return None


def check_random_states(saved: Any, sampler: object) -> None:
    """Refuse (one :class:`CheckpointError` line) saved states that are damaged or do not
    belong to ``sampler`` (other paths: another class or other settings)."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"the sampler's random state is not a record: {shorten(saved)}")
    expected = sorted(find_random_states(sampler)[0])
    if sorted(saved) != expected:
        raise CheckpointError(
            f"the sampler's random states are {shorten(sorted(saved), 120)}, "
            f"{type(sampler).__name__} has {shorten(expected, 120)}"
        )
    for path, state in saved.items():
        problem = _problem(state)
        if problem is not None:
            raise CheckpointError(f"the sampler's random state {path!r} is damaged: {problem}")


def restore(sampler: object, saved: dict[str, Any]) -> None:
    """Put checked states (:func:`check_random_states`) back into ``sampler``."""
    import numpy as np

    holders = find_random_states(sampler)[0]
    for path, state in saved.items():
        holder = holders[path]
        lazy = type(holder).__name__ == "LazyRandomState"
        if state is None:  # never drawn from: created from the seed at the first draw
            if lazy:
                holder._rng = None
            continue
        rng = holder.rng if lazy else holder
        keys = np.array(state["keys"], dtype=np.uint32)
        rng.set_state(("MT19937", keys, state["pos"], state["has_gauss"], state["gauss"]))


def _json_problem(value: Any, depth: int = 0) -> bool:
    if depth > 8:
        return True
    if value is None or type(value) in (bool, int, str):
        return False
    if type(value) is float:
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_json_problem(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(not isinstance(k, str) or _json_problem(v, depth + 1) for k, v in value.items())
    return True


def check_json_attrs(attrs: Any, what: str) -> dict[str, Any]:
    """``attrs`` if it is a record of JSON values (Optuna's system attributes); a
    :class:`CheckpointError` naming ``what`` otherwise."""
    if not isinstance(attrs, dict) or _json_problem(attrs):
        raise CheckpointError(f"{what} is not a record of JSON values: {shorten(attrs)}")
    return attrs
