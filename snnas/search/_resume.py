"""Checks of a search checkpoint before a search resumes from it.

A checkpoint with the right format tag can still hold anything (a hand-edited file, one cut
by a disk, one made by another version). :func:`check_search_state` checks its structure
against what the search loop reads (entries, types, an iteration in range, one event per
evaluation with the fields the loop and the study use); :func:`load_search_state` then loads
the supernet, optimizer and strategy states into fresh objects with every failure turned
into a :class:`~snnas.errors.CheckpointError` naming the file.

``snnas search --resume`` runs both before the search starts (:func:`preflight`); the loop
itself (``_loop.py``) is meant to call them where it loads ``last.pt``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snnas._run import RunDir, check_state, load_module_state, load_optimizer_state
from snnas.errors import CheckpointError, shorten

__all__ = [
    "EVENT_SCHEMA",
    "SEARCH_CHECKPOINT_SCHEMA",
    "check_search_state",
    "load_search_state",
    "preflight",
]

#: What a search checkpoint holds (``_loop.py`` writes it every iteration).
SEARCH_CHECKPOINT_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "identity": dict,
    "model": dict,
    "optimizer": dict,
    "strategy": dict,
    "iteration": int,
    "events": list,
    "strategy_log": list,
    "train_log": list,
    "elapsed_s": (int, float),
}
_IDENTITY_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "space_hash": str,
    "strategy": str,
    "seed": int,
    "dataset": str,
    "config": dict,
}
#: One evaluation in ``events`` (and in ``events.jsonl``).
EVENT_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "index": int,
    "iteration": int,
    "phase": str,
    "strategy": str,
    "policy": dict,
    "reward": (int, float),
    "accuracy": (int, float),
    "comm_ratio": (int, float),
    "time_s": (int, float),
}
_STRATEGY_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "seed": int,
    "asked": int,
    "told": int,
}


def _corrupt(path: str | Path, why: str) -> CheckpointError:
    return CheckpointError(f"{shorten(str(path))}: corrupt checkpoint ({why})")


def check_search_state(state: Mapping[str, Any], path: str | Path) -> None:
    """Refuse a search checkpoint whose structure is not what the loop reads."""
    check_state(path, state, SEARCH_CHECKPOINT_SCHEMA)
    identity = state["identity"]
    check_state(path, identity, _IDENTITY_SCHEMA)
    config = identity["config"]
    iterations, steps, samples = (
        config.get(k) for k in ("iterations", "strategy_steps", "samples")
    )
    if not all(type(v) is int and v >= 0 for v in (iterations, steps, samples)):
        raise _corrupt(path, "its configuration has no iteration counts")
    iteration, events = state["iteration"], state["events"]
    if not 0 <= iteration <= iterations:
        raise _corrupt(path, f"iteration {iteration} of {iterations}")
    expected = iteration * (steps + samples)
    if len(events) != expected:
        raise _corrupt(
            path, f"{len(events)} evaluations after {iteration} iterations, expected {expected}"
        )
    for number, event in enumerate(events):
        if not isinstance(event, dict):
            raise _corrupt(path, f"evaluation {number} is not a record")
        check_state(f"{path} (evaluation {number})", event, EVENT_SCHEMA)
        if event["index"] != number:
            raise _corrupt(path, f"evaluation {number} has index {event['index']}")
    for name in ("strategy_log", "train_log"):
        if not all(isinstance(record, dict) for record in state[name]):
            raise _corrupt(path, f"{name} holds something other than records")
    check_state(path, state["strategy"], _STRATEGY_SCHEMA)
    if state["strategy"]["asked"] < 0 or state["strategy"]["told"] < 0:
        raise _corrupt(path, "negative strategy counters")


def load_search_state(
    state: Mapping[str, Any],
    path: str | Path,
    model: Any,
    optimizer: Any,
    strategy: Any,
) -> None:
    """Load a checked search checkpoint's supernet, optimizer and strategy states; a state
    that does not fit them is a :class:`CheckpointError` naming ``path``."""
    load_module_state(model, state["model"], path, "supernet")
    load_optimizer_state(optimizer, state["optimizer"], path)
    try:
        strategy.load_state_dict(state["strategy"])
    except CheckpointError as exc:  # the strategy's own check (REINFORCE), with the file
        raise _corrupt(path, f"its strategy state does not fit {strategy.label!r}: {exc}") from None
    except Exception as exc:  # a strategy's state of the wrong shape: KeyError, TypeError, ...
        detail = (
            f"no {shorten(exc.args[0], 100, quote=True)} entry"
            if isinstance(exc, KeyError) and exc.args
            else "malformed entries"
        )
        raise _corrupt(
            path, f"its strategy state does not fit {strategy.label!r}: {detail}"
        ) from None


def preflight(
    run: RunDir,
    checkpoint: str,
    space: Any,
    config: Any,
    strategy_name: str,
    seed: int,
    objective: Any = None,
) -> str | None:
    """Everything a resumed search will read from its checkpoint, checked now: its
    structure, and the supernet, optimizer and strategy states loaded into fresh objects
    (no data is touched). Returns the strategy's one line when it will not continue as the
    uninterrupted search would have (``resume_note``: an Optuna sampler whose whole state
    cannot be saved, a checkpoint of an earlier version), else ``None``."""
    import torch

    from snnas.models import SepResNeXt
    from snnas.search._loop import build_strategy
    from snnas.search._protective import searched_space

    path = run / checkpoint
    state = run.load_checkpoint(checkpoint)
    check_search_state(state, path)
    model = SepResNeXt(space)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    # The strategy exactly as the search builds it (options, objectives, constraints).
    strategy = build_strategy(searched_space(space), config, strategy_name, seed, objective)
    if state["identity"]["strategy"] != strategy.label:
        raise CheckpointError(
            f"{shorten(str(run.path))}: cannot resume a different search (strategy: "
            f"{shorten(state['identity']['strategy'], 100, quote=True)} != {strategy.label!r})"
        )
    load_search_state(state, path, model, optimizer, strategy)
    earlier = state.get("resume_note")  # an earlier resume's, kept by the checkpoint
    note: str | None = (
        earlier if isinstance(earlier, str) else getattr(strategy, "resume_note", None)
    )
    return note
