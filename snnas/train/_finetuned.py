"""Reading a run's fine-tuned network (``runs/<name>/finetune/best.pt``) or its supernet
(``runs/<name>/last.pt``) for parity work.

The formats are ``snnas search``'s (``config.json`` with the space file's text,
``space_toml``, and its hash; ``last.pt`` with the shared weights under ``model``) and
``snnas finetune``'s (``finetune/best.pt``, read by :mod:`snnas.train._finetune`'s loader).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snnas._run import RunDir, check_state, load_module_state
from snnas.errors import CheckpointError, PolicyError, shorten
from snnas.models import FrozenSepResNeXt, SepResNeXt
from snnas.space import Policy, SearchSpace, load_space, space_from_text

__all__ = ["FINETUNE_CHECKPOINT", "load_finetuned", "load_supernet", "with_parity_choices"]

#: Where ``snnas finetune`` leaves the network it selected on validation.
FINETUNE_CHECKPOINT = "finetune/best.pt"
#: Decision kinds that belong to the parity devices (chosen by parity work, not the search).
PARITY_KINDS = ("encode", "encoder")


def with_parity_choices(
    space: SearchSpace, policy: Mapping[str, Any], choices: Mapping[str, Any] | None = None
) -> Policy:
    """``policy`` (a policy of ``space``, or of the same space without parity) completed with
    the parity decisions: ``choices`` where given, else the most protective (the largest
    ``encode`` share, the first encoder listed)."""
    merged = dict(policy)
    for label, value in (choices or {}).items():
        decision = space.decision(label)  # PolicyError for an unknown label
        if decision.kind not in PARITY_KINDS:
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

    ``path`` is a search run that ``snnas finetune`` completed: its ``config.json`` gives the
    space, ``finetune/best.pt`` (the checkpoint selected on validation) the network, read
    by the fine-tuning's own loader. The parity decisions are ``parity_choices`` where
    given, else the most protective (:func:`with_parity_choices`): the search samples them
    but does not score them (its reward has no degraded objective), so the run's own are not
    a choice. ``space_file`` replaces the run's space by one with the same network and split
    but other parity settings (a run fine-tuned on a space without parity devices gains
    them).
    """
    from snnas.train._finetune import FINETUNE_DIR
    from snnas.train._finetune import load_finetuned as load_selected
    from snnas.train._run_space import load_run_space

    run = RunDir(path)
    if not run.path.is_dir():
        raise CheckpointError(f"{run.path}: no such run folder")
    own, _ = load_run_space(run)
    tuned = RunDir(run / FINETUNE_DIR)
    if not (tuned / "best.pt").is_file():
        raise CheckpointError(
            f"{tuned.path / 'best.pt'}: missing (fine-tune the run first: snnas finetune "
            f"{run.path.name})"
        )
    selected = load_selected(tuned, own)
    space = own
    if space_file is not None:
        space = load_space(space_file)
        if (space.network, space.split) != (own.network, own.split):
            raise CheckpointError(
                f"{space_file}: its network or split differs from run {run.path.name}'s space"
            )
    # Keep the data network's decisions; the parity ones are chosen here.
    kept = {d.label for d in own.decisions if d.kind not in PARITY_KINDS}
    policy = {k: v for k, v in selected.policy.items() if k in kept}
    full = with_parity_choices(space, policy, parity_choices)
    net = FrozenSepResNeXt(space, full)
    net.load_state_dict(selected.state_dict())
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
    path = run / "last.pt"
    state = run.load_checkpoint("last.pt")
    check_state(path, state, {"model": dict})
    identity = state.get("identity")
    saved_hash = identity.get("space_hash") if isinstance(identity, dict) else None
    if state.get("space_hash", saved_hash) != own.hash:
        raise CheckpointError(f"{shorten(str(path))}: made for another space")
    space = own
    if space_file is not None:
        space = load_space(space_file)
        if (space.network, space.split) != (own.network, own.split):
            raise CheckpointError(
                f"{space_file}: its network or split differs from run {run.path.name}'s space"
            )
    net = SepResNeXt(space)
    load_module_state(net, state["model"], path)
    return net
