"""``snnas compare``: strategies against each other (and random) under equal budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from snnas._numbers import Range
from snnas.cli._options import PROFILE_HELP, Number, data_options, profile_overrides, run_options
from snnas.cli._terminal import Terminal

__all__ = ["compare"]


@click.command()
@click.argument("space_file", metavar="SPACE", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--strategies",
    default="reinforce,random,evolution,optuna:tpe",
    show_default=True,
    help="Comma-separated strategy names (see snnas list).",
)
@click.option("--seeds", type=Number(Range(1, 1000, integer=True)), default=10, show_default=True)
@click.option(
    "--rewards",
    default="penalized,pareto,accuracy",
    show_default=True,
    help="Comma-separated reward modes (fixed mode; the first is the headline; full mode "
    "searches under the first).",
)
@click.option(
    "--reference",
    type=Number(Range(10, 1_000_000, integer=True)),
    default=2000,
    show_default=True,
    help="Uniform random policies scored once as the reference sample (fixed mode).",
)
@click.option(
    "--budget",
    type=Number(Range(1, 1_000_000, integer=True)),
    help="Evaluations per strategy and seed (fixed mode, "
    "default 200) or search iterations (full mode, default: the config's).",
)
@click.option(
    "--mode",
    type=click.Choice(["fixed", "full"]),
    default="fixed",
    show_default=True,
    help="fixed: one supernet, frozen weights; full: a whole search per seed.",
)
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@click.option(
    "--supernet-epochs",
    type=Number(Range(1, 100_000, integer=True)),
    help="fixed mode: supernet training epochs.",
)
@click.option(
    "--parity-epochs",
    type=Number(Range(1, 100_000, integer=True)),
    help="fixed mode on a parity space: epochs of parity training on the frozen supernet "
    "(default 4).",
)
@click.option("--profile", metavar="PROFILE", help=PROFILE_HELP)
@data_options
@run_options
@click.pass_obj
def compare(
    terminal: Terminal,
    space_file: Path,
    strategies: str,
    seeds: int,
    rewards: str,
    reference: int,
    budget: int | None,
    mode: str,
    config_file: Path | None,
    overrides: tuple[str, ...],
    supernet_epochs: int | None,
    parity_epochs: int | None,
    profile: str | None,
    dataset: str,
    data_dir: Path | None,
    download: bool,
    name: str | None,
    runs_dir: Path,
    device: str | None,
    as_json: bool,
) -> None:
    """Compare search strategies on SPACE; write report.md, report.json and curves.png."""
    from snnas._run import RunDir, resolve_run
    from snnas.cli._progress import progress_bars
    from snnas.data import load_for_space
    from snnas.errors import CheckpointError
    from snnas.search import load_search_config, make_strategy
    from snnas.search._compare import check_cost_and_constraints
    from snnas.search._compare import compare as run_compare
    from snnas.search.strategies._base import parse_names
    from snnas.space import load_space
    from snnas.train import Accelerator

    # Option values first (usage errors, exit code 2), then files, then data.
    names = parse_names(strategies)
    modes = _reward_modes(rewards)
    if name is not None:
        resolve_run(runs_dir, name)
    space = load_space(space_file)
    config = load_search_config(dataset, config_file, profile_overrides(profile, overrides))
    check_cost_and_constraints(config, modes, mode)
    for strategy in names:  # bad options, or a space with nothing to search
        make_strategy(strategy, space, 0, **config.strategy.get(strategy.split(":")[0], {}))
    run = RunDir(resolve_run(runs_dir, name or f"compare-{space.name}-{mode}"))
    _check_previous(run, names, seeds, mode)
    report_md = run / "report.md"
    if report_md.is_symlink() or (report_md.exists() and not report_md.is_file()):
        # The comparison writes report.md in place; never through a link it did not make.
        raise CheckpointError(f"{report_md}: is a link or not a file; refusing to write through it")
    accel = Accelerator.pick(device)
    data = load_for_space(dataset, space, data_dir, download)
    if not as_json:
        terminal.info(
            f"comparing {', '.join(names)} on {space.name}: {seeds} seeds, {mode} "
            f"mode, rewards {rewards}"
            + (f", latency cost on {config.cost_profile}" if config.cost == "latency" else "")
            + f" -> {run.path}"
        )
    with progress_bars(terminal, "compare") as progress:
        report = run_compare(
            space,
            data,
            config,
            names,
            seeds,
            budget,
            run,
            mode=mode,
            rewards=modes,
            reference=reference,
            accel=accel,
            progress=progress,
            supernet_epochs=supernet_epochs,
            parity_epochs=parity_epochs,
        )
    if as_json:
        terminal.json(report)
        return
    terminal.info((run / "report.md").read_text())
    terminal.info(f"wrote {run.path}/report.md, report.json, curves.png")


def _reward_modes(text: str) -> list[str]:
    """``--rewards``: distinct known reward modes, comma-separated (usage errors exit 2)."""
    from snnas.errors import UsageError
    from snnas.search import REWARD_MODES

    modes = [m.strip() for m in text.split(",")]
    for mode in modes:
        if mode not in REWARD_MODES:
            raise UsageError("--rewards", f"one of {', '.join(REWARD_MODES)}", mode)
    if len(set(modes)) != len(modes):
        raise UsageError("--rewards", "each mode at most once", text)
    return modes


def _check_previous(run: Any, names: list[str], seeds: int, mode: str) -> None:
    """What a resumed comparison will read, checked before it trains anything: the
    evaluations of fixed mode (a torn last line is dropped, any other bad line refused with
    its number) and the checkpoints of full mode's searches."""
    from snnas.search._resume import check_search_state

    if not run.exists():
        return
    if mode == "fixed":
        from snnas.search._ledger import EVALUATION_KEYS, REFERENCE_KEYS, read_records

        read_records(run / "evaluations.jsonl", EVALUATION_KEYS)
        read_records(run / "reference.jsonl", REFERENCE_KEYS)
        return
    for name in names:
        for seed in range(seeds):
            sub = type(run)(run / f"{name.replace(':', '-')}-s{seed}")
            if sub.has_checkpoint("last.pt"):
                check_search_state(sub.load_checkpoint("last.pt"), sub / "last.pt")
