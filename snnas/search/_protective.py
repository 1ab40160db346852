"""The space ``snnas search`` samples: a parity space's parity decisions fixed to the most
protective choice, since the search's reward does not score them (issue 15).

Sampling decisions that no reward scores multiplies the policies a strategy explores (2,187
times on ``quickstart_parity``) without any signal. The narrowed space keeps every label
and its policies stay policies of the full space, with the parity decisions that
``snnas parity train`` takes by default (:func:`snnas.train._finetuned.with_parity_choices`):
the largest ``encode`` share at every point and the first encoder listed.
"""

from __future__ import annotations

from dataclasses import replace

from snnas.space import DecisionSpec, SearchSpace
from snnas.train._finetuned import PARITY_KINDS

__all__ = ["most_protective", "searched_space"]


def most_protective(spec: DecisionSpec) -> object:
    """The most protective choice of a parity decision kind (``encode`` or ``encoder``)."""
    if spec.kind == "encode":
        return max(spec.choices)
    return spec.choices[0]


def searched_space(space: SearchSpace, scored: bool = False) -> SearchSpace:
    """``space`` with each searched parity decision narrowed to its most protective choice
    (one choice left, the label kept), unless the reward ``scored`` them; ``space`` itself
    when it has no parity decisions to narrow."""
    specs = space.config.decisions
    narrow = [s.kind in PARITY_KINDS and s.fixed is None and len(s.choices) > 1 for s in specs]
    if scored or not any(narrow):
        return space
    decisions = tuple(
        replace(s, choices=(most_protective(s),)) if n else s
        for s, n in zip(specs, narrow, strict=True)
    )
    return SearchSpace(replace(space.config, decisions=decisions))
