"""``snnas compare``: strategies against each other (and random) under equal budgets."""

from __future__ import annotations

from pathlib import Path

import click

from snnas.cli._options import data_options, run_options
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
@click.option("--seeds", type=int, default=10, show_default=True)
@click.option(
    "--rewards",
    default="penalized,pareto,accuracy",
    show_default=True,
    help="Comma-separated reward modes (fixed mode; the first is the headline; full mode "
    "searches under the first).",
)
@click.option(
    "--reference",
    type=int,
    default=2000,
    show_default=True,
    help="Uniform random policies scored once as the reference sample (fixed mode).",
)
@click.option(
    "--budget",
    type=int,
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
@click.option("--supernet-epochs", type=int, help="fixed mode: supernet training epochs.")
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
    dataset: str,
    data_dir: Path | None,
    name: str | None,
    runs_dir: Path,
    device: str | None,
    as_json: bool,
) -> None:
    """Compare search strategies on SPACE; write report.md, report.json and curves.png."""
    from snnas._run import RunDir
    from snnas.cli._progress import progress_bars
    from snnas.data import load_for_space
    from snnas.search import load_search_config
    from snnas.search._compare import compare as run_compare
    from snnas.search.strategies._base import parse_names
    from snnas.space import load_space
    from snnas.train import Accelerator

    space = load_space(space_file)
    config = load_search_config(dataset, config_file, list(overrides))
    names = parse_names(strategies)
    accel = Accelerator.pick(device)
    data = load_for_space(dataset, space, data_dir)
    run = RunDir(runs_dir / (name or f"compare-{space.name}-{mode}"))
    if not as_json:
        terminal.info(
            f"comparing {', '.join(names)} on {space.name}: {seeds} seeds, {mode} "
            f"mode, rewards {rewards} -> {run.path}"
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
            rewards=parse_names(rewards),
            reference=reference,
            accel=accel,
            progress=progress,
            supernet_epochs=supernet_epochs,
        )
    if as_json:
        terminal.json(report)
        return
    terminal.info((run / "report.md").read_text())
    terminal.info(f"wrote {run.path}/report.md, report.json, curves.png")
