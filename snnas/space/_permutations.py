"""Permutations of G devices: lexicographic ids (the paper's Table 3) and Lehmer codes.

A permutation ``p`` is a tuple where ``p[i]`` is the device that device ``i`` sends to;
``p[i] == i`` means device ``i`` sends nothing at that point. Ids follow lexicographic order,
which is the order of ``itertools.permutations(range(G))`` and of the paper's Table 3
(id 7 is ``(1, 0, 3, 2)``, id 12 is ``(2, 0, 1, 3)``).

The Lehmer code of a permutation is G digits, digit ``j`` in ``range(G - j)``: the rank of
``p[j]`` among the values not used by ``p[:j]``. Its mixed-radix value is the lexicographic id,
so a sampler that needs fixed categorical choices can search G small decisions instead of one
G!-way decision.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

Permutation = tuple[int, ...]

__all__ = [
    "Permutation",
    "all_permutations",
    "derangements",
    "from_lehmer",
    "is_permutation",
    "lehmer_radices",
    "perm_rank",
    "senders",
    "to_lehmer",
]


@functools.cache
def all_permutations(groups: int) -> tuple[Permutation, ...]:
    """All ``groups!`` permutations in lexicographic (Table 3) order (computed once per G;
    the DSL allows it for G <= 8, 40,320 permutations)."""
    return tuple(itertools.permutations(range(groups)))


@functools.cache
def derangements(groups: int) -> tuple[Permutation, ...]:
    """Permutations with no fixed point (the paper's "communication-intensive" decisions)."""
    return tuple(p for p in all_permutations(groups) if all(p[i] != i for i in range(groups)))


def is_permutation(value: object, groups: int) -> bool:
    """Whether ``value`` is a sequence of the integers ``0..groups-1``, each once."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        return False
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return False
    return sorted(value) == list(range(groups))


def senders(perm: Sequence[int]) -> int:
    """Number of devices that send at a point with this permutation (``s(i) != i``)."""
    return sum(1 for i, d in enumerate(perm) if d != i)


def lehmer_radices(groups: int) -> tuple[int, ...]:
    """Number of choices of each Lehmer digit: ``(G, G-1, ..., 1)``."""
    return tuple(range(groups, 0, -1))


def to_lehmer(perm: Sequence[int]) -> tuple[int, ...]:
    """Lehmer code of ``perm`` (G digits, digit j in ``range(G - j)``)."""
    remaining = sorted(perm)
    digits = []
    for value in perm:
        index = remaining.index(value)
        digits.append(index)
        remaining.pop(index)
    return tuple(digits)


def from_lehmer(digits: Sequence[int]) -> Permutation:
    """Inverse of :func:`to_lehmer`. Raises ``ValueError`` for an out-of-range digit."""
    groups = len(digits)
    remaining = list(range(groups))
    perm = []
    for j, digit in enumerate(digits):
        if not 0 <= digit < groups - j:
            raise ValueError(f"Lehmer digit {j} must be in [0, {groups - j}), got {digit}")
        perm.append(remaining.pop(digit))
    return tuple(perm)


def perm_rank(perm: Sequence[int]) -> int:
    """Lexicographic id of ``perm`` among all permutations of its length (Table 3 id)."""
    digits = to_lehmer(perm)
    groups = len(perm)
    return sum(d * math.factorial(groups - 1 - j) for j, d in enumerate(digits))
