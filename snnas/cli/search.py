"""``snnas search``: search a communication policy with one strategy."""

from __future__ import annotations

from pathlib import Path

import click

from snnas.cli._options import SEED, data_options, run_options
from snnas.cli._terminal import Terminal, format_count

__all__ = ["search"]


@click.command()
@click.argument("space_file", metavar="SPACE", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--strategy",
    default="reinforce",
    show_default=True,
    help="reinforce, random, evolution or optuna:<sampler> (see snnas list).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Search configuration TOML ([search], [reward], [strategy]).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one setting, e.g. --set search.iterations=5 (repeatable).",
)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run from its last checkpoint.")
@click.option(
    "--storage",
    help="Optuna storage URL shared by workers (default: a journal file in the run folder).",
)
@click.option("--study", help="Optuna study name (default: the run name).")
@data_options
@run_options
@click.pass_obj
def search(
    terminal: Terminal,
    space_file: Path,
    strategy: str,
    config_file: Path | None,
    overrides: tuple[str, ...],
    dataset: str,
    data_dir: Path | None,
    download: bool,
    seed: int,
    name: str | None,
    runs_dir: Path,
    resume: bool,
    storage: str | None,
    study: str | None,
    device: str | None,
    as_json: bool,
) -> None:
    """Search SPACE for a communication policy; write runs/<name>/ (events, checkpoints,
    best_policy.json, summary.json, plots, an Optuna study)."""
    from snnas._run import RunDir, resolve_run
    from snnas.cli._progress import progress_bars
    from snnas.data import load_for_space
    from snnas.search import load_search_config, make_strategy, run_search
    from snnas.search._loop import CHECKPOINT, check_no_degraded
    from snnas.search._record import check_study
    from snnas.search.strategies._base import check_name
    from snnas.space import load_space
    from snnas.train import Accelerator

    # Option values first (usage errors, exit code 2), then files, then data.
    check_name(strategy)
    if name is not None:
        resolve_run(runs_dir, name)
    if study is not None:
        check_study(study)
    space = load_space(space_file)
    config = load_search_config(dataset, config_file, list(overrides))
    # Refuse a bad strategy option, or a space with nothing to search, before loading data.
    make_strategy(strategy, space, seed, **config.strategy.get(strategy.split(":")[0], {}))
    check_no_degraded(space, config)  # a parity space's third objective: snnas compare only
    label = strategy.replace(":", "-")
    run = RunDir(resolve_run(runs_dir, name or f"search-{space.name}-{label}-s{seed}"))
    run.check_resume(CHECKPOINT, resume, "search")
    if resume:  # a checkpoint that cannot be resumed is refused before any data is loaded
        from snnas.search._resume import preflight

        preflight(run, CHECKPOINT, space, config, strategy, seed)
    accel = Accelerator.pick(device)
    data = load_for_space(dataset, space, data_dir, download)
    if not as_json:
        terminal.info(
            f"searching {space.name} ({format_count(space.size)} policies) with {strategy}, "
            f"{config.iterations} iterations, reward {config.reward}, on {accel.device} "
            f"-> {run.path}"
        )
        unscored = [d.label for d in space.decisions if d.kind in ("encode", "encoder")]
        if unscored:
            terminal.info(
                f"note: the parity decisions ({', '.join(unscored)}) are not scored by "
                "the search's reward, so they are fixed to the most protective (the largest "
                "encode share, the first encoder); snnas parity train --choices sets others"
            )
    with progress_bars(terminal, strategy) as progress:
        result = run_search(
            space,
            data,
            config,
            strategy,
            run,
            seed=seed,
            resume=resume,
            accel=accel,
            storage=storage,
            study=study,
            progress=progress,
        )
    summary = result.summary
    if as_json:
        terminal.json(summary)
        return
    terminal.success(
        f"best policy: validation accuracy {summary['best_val_acc']:.4f}, communication "
        f"{100 * summary['best_comm_ratio']:.2f}% of all-reduce "
        f"(test {summary['best_test_acc']:.4f}; no communication "
        f"{summary['no_comm_val_acc']:.4f})"
    )
    terminal.info(
        f"{summary['evaluations']} evaluations in {summary['search_time_s']:.1f} s; "
        f"{len(summary['pareto_front'])} policies on the Pareto front"
    )
    terminal.info(f"wrote {run.path}/best_policy.json, summary.json, search_curve.png, pareto.png")
    terminal.info(f"browse: optuna-dashboard {summary['storage']}")
