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
from snnas.errors import CheckpointError, SnnasError
from snnas.space import Policy, SearchSpace, space_from_text

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


def load_run_space(run: RunDir) -> tuple[SearchSpace, dict[str, Any]]:
    """The space a run was made with (rebuilt from the TOML text in ``config.json``, checked
    against the recorded hash) and the whole ``config.json``."""
    config = run.read_json("config.json")
    if not isinstance(config, dict) or not isinstance(config.get("space_toml"), str):
        raise CheckpointError(
            f"{run / 'config.json'}: not a search run's configuration (no space_toml)"
        )
    try:
        space = space_from_text(config["space_toml"], str(run / "config.json"))
    except SnnasError as exc:
        raise CheckpointError(f"{run / 'config.json'}: its space_toml is invalid ({exc})") from None
    if space.hash != config.get("space_hash"):
        raise CheckpointError(
            f"{run / 'config.json'}: space_toml hashes to {space.hash!r}, "
            f"not the recorded {config.get('space_hash')!r}"
        )
    return space, config


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
