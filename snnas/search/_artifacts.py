"""Reading a finished search's run folder: its space, dataset, selected policy and weights.

What fine-tuning and export need from a search (``snnas/search/_loop.py`` writes it):
``config.json`` (the space file's text and hash, the dataset), ``best_policy.json`` and the
shared weights in ``last.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnas._run import RunDir
from snnas.errors import CheckpointError
from snnas.space import Policy, SearchSpace
from snnas.train._run_space import load_run_space

__all__ = ["SearchArtifacts", "load_run_space", "load_search_run"]


@dataclass
class SearchArtifacts:
    """A finished search, ready to be fine-tuned."""

    run: RunDir
    space: SearchSpace
    dataset: str
    policy: Policy  # the selected policy, or the one given instead
    policy_source: str  # the file it came from
    weights: dict[str, Any]  # the supernet's state dict


def load_search_run(run: RunDir, policy_file: str | Path | None = None) -> SearchArtifacts:
    """Read a search run; ``policy_file`` replaces its selected policy."""
    if not run.path.is_dir():
        raise CheckpointError(f"{run.path}: no such run folder")
    space, config = load_run_space(run)
    if policy_file is None:
        if not (run / "best_policy.json").is_file():
            raise CheckpointError(
                f"{run.path}: no best_policy.json (the search has not finished); "
                "finish it with snnas search --resume, or give --policy"
            )
        policy = space.load_policy(run / "best_policy.json")
        source = str(run / "best_policy.json")
    else:
        policy = space.load_policy(policy_file)
        source = str(policy_file)
    state = run.load_checkpoint("last.pt")
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{run / 'last.pt'}: holds no supernet weights")
    dataset = config.get("dataset")
    if not isinstance(dataset, str):
        raise CheckpointError(f"{run / 'config.json'}: no dataset recorded")
    return SearchArtifacts(run, space, dataset, policy, source, weights)
