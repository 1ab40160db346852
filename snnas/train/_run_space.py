"""The space a run folder was made with: rebuilt from the TOML text its ``config.json``
recorded, checked against the recorded hash (search runs, fine-tuned runs, parity runs)."""

from __future__ import annotations

from typing import Any

from snnas._run import RunDir
from snnas.errors import CheckpointError, SnnasError
from snnas.space import SearchSpace, space_from_text

__all__ = ["load_run_space"]


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
