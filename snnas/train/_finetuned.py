"""Reading a run's fine-tuned network (``runs/<name>/finetune/best.pt``) for parity work.

The format is ``snnas finetune``'s: the run's ``config.json`` holds the space file's text
(``space_toml``) and ``finetune/best.pt`` a checkpoint with ``model`` (a
:class:`FrozenSepResNeXt` state dict), ``policy`` and ``space_hash``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snnas._run import RunDir
from snnas.errors import CheckpointError, PolicyError
from snnas.models import FrozenSepResNeXt, SepResNeXt
from snnas.space import Policy, SearchSpace, load_space, space_from_text

__all__ = ["FINETUNE_CHECKPOINT", "load_finetuned", "load_supernet", "with_parity_choices"]

#: Where ``snnas finetune`` leaves the network it selected on validation.
FINETUNE_CHECKPOINT = "finetune/best.pt"


def with_parity_choices(
    space: SearchSpace, policy: Mapping[str, Any], choices: Mapping[str, Any] | None = None
) -> Policy:
    """``policy`` (a policy of ``space``, or of the same space without parity) completed with
    the parity decisions: ``choices`` where given, else the most protective (the largest
    ``encode`` share, the first encoder listed)."""
    merged = dict(policy)
    for label, value in (choices or {}).items():
        decision = space.decision(label)  # PolicyError for an unknown label
        if decision.kind not in ("encode", "encoder"):
            raise PolicyError(f"{label}: not a parity decision (encode, encoder)")
        merged[label] = value
    for d in space.decisions:
        if d.label not in merged and d.kind == "encode":
            merged[d.label] = max(d.choices)
        elif d.label not in merged and d.kind == "encoder":
            merged[d.label] = d.choices[0]
    return space.validate(merged)


def load_finetuned(
    path: str | Path,
    space_file: str | Path | None = None,
    parity_choices: Mapping[str, Any] | None = None,
) -> FrozenSepResNeXt:
    """The fine-tuned network of run folder ``path``, in eval mode.

    ``space_file`` replaces the run's space by one with the same network and split but other
    parity settings (a run fine-tuned on a space without parity devices gains them); the
    run's policy is then completed with the parity decisions (:func:`with_parity_choices`).
    """
    run = RunDir(path)
    config = run.read_json("config.json")
    text = config.get("space_toml") if isinstance(config, dict) else None
    if not isinstance(text, str):
        raise CheckpointError(f"{run.path / 'config.json'}: no space_toml (not a search run?)")
    own = space_from_text(text, str(run.path / "config.json"))
    state = run.load_checkpoint(FINETUNE_CHECKPOINT)
    # ``snnas finetune`` keeps the space hash and policy under ``identity``.
    nested = state.get("identity")
    identity: dict[str, Any] = nested if isinstance(nested, dict) else state
    if identity.get("space_hash") != own.hash:
        raise CheckpointError(
            f"{run.path / FINETUNE_CHECKPOINT}: made for space hash "
            f"{identity.get('space_hash')!r}, but the run's space is {own.hash!r}"
        )
    space = own
    if space_file is not None:
        space = load_space(space_file)
        if (space.network, space.split) != (own.network, own.split):
            raise CheckpointError(
                f"{space_file}: its network or split differs from run {run.path.name}'s space"
            )
    policy = dict(identity["policy"])
    if space is not own:  # keep the data network's decisions, take the new parity ones
        kept = {d.label for d in own.decisions if d.kind not in ("encode", "encoder")}
        policy = {k: v for k, v in policy.items() if k in kept}
    full = with_parity_choices(space, policy, parity_choices)
    net = FrozenSepResNeXt(space, full)
    net.load_state_dict(state["model"])
    return net.eval()


def load_supernet(path: str | Path, space_file: str | Path | None = None) -> SepResNeXt:
    """The shared weights of a search or supernet training run (``last.pt``), to train and
    score parity decisions on (``space_file``: as in :func:`load_finetuned`)."""
    run = RunDir(path)
    config = run.read_json("config.json")
    text = config.get("space_toml") if isinstance(config, dict) else None
    if not isinstance(text, str):
        raise CheckpointError(f"{run.path / 'config.json'}: no space_toml")
    own = space_from_text(text, str(run.path / "config.json"))
    state = run.load_checkpoint("last.pt")
    if state.get("space_hash", state.get("identity", {}).get("space_hash")) != own.hash:
        raise CheckpointError(f"{run.path / 'last.pt'}: made for another space")
    space = own
    if space_file is not None:
        space = load_space(space_file)
        if (space.network, space.split) != (own.network, own.split):
            raise CheckpointError(
                f"{space_file}: its network or split differs from run {run.path.name}'s space"
            )
    net = SepResNeXt(space)
    net.load_state_dict(state["model"])
    return net
