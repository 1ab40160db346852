"""``snnas search``: search a communication policy with one strategy."""

from __future__ import annotations

from pathlib import Path

import click

from snnas.cli._options import PROFILE_HELP, SEED, data_options, profile_overrides, run_options
from snnas.cli._terminal import Terminal, format_count

__all__ = ["search"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


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
@click.option("--profile", metavar="PROFILE", help=PROFILE_HELP)
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
    profile: str | None,
    device: str | None,
    as_json: bool,
) -> None:
    """Search SPACE for a communication policy; write runs/<name>/ (events, checkpoints,
    best_policy.json, summary.json, plots, an Optuna study)."""
    from snnas._run import resolve_run
    from snnas.api import SearchJob
    from snnas.cli._progress import progress_bars
    from snnas.errors import UsageError
    from snnas.search import load_search_config
    from snnas.search._record import check_study
    from snnas.search.strategies._base import check_name
    from snnas.space import load_space

    # Option values first (usage errors, exit code 2), then files, then data.
    check_name(strategy)
    if name is not None:
        resolve_run(runs_dir, name)
    if study is not None:
        check_study(study)
    items = profile_overrides(profile, overrides)
    if profile is not None:
        mode = load_search_config(dataset, config_file, items).reward
        if mode == "accuracy":
            raise UsageError(
                "--profile",
                "a cost-aware reward mode with it (--set reward.mode=penalized, budget or "
                "pareto: the accuracy mode has no cost term)",
                f"<reward.mode {mode}>",
            )
    job = SearchJob(
        load_space(space_file),
        name=name,
        runs_dir=runs_dir,
        overrides=items,
        strategy=strategy,
        resume=resume,
        dataset=dataset,
        data_dir=data_dir,
        download=download,
        config_file=config_file,
        seed=seed,
        device=device,
        storage=storage,
        study=study,
    )
    if not as_json:
        config = job.config
        terminal.info(
            f"searching {job.space.name} ({format_count(job.space.size)} policies) with "
            f"{strategy}, {_plural(config.iterations, 'iteration')}, reward {config.reward}"
            + (f", latency cost on {config.cost_profile}" if config.cost == "latency" else "")
            + f", on {job.accel.device} -> {job.path}"
        )
        if job.unscored:
            terminal.info(
                f"note: the parity decisions ({', '.join(job.unscored)}) are not scored by "
                "the search's reward, so they are fixed to the most protective (the largest "
                "encode share, the first encoder); snnas parity train --choices sets others"
            )
    if job.resume_note:
        terminal.warn(job.resume_note)
    with progress_bars(terminal, strategy) as progress:
        result = job.run(progress)
    run = job.run_dir
    summary = result.summary
    if as_json:
        terminal.json(summary)
        return
    latency = ""
    if "best_latency_ms" in summary:
        latency = (
            f", latency {summary['best_latency_ms']:.3f} ms on {summary['cost']['profile']} "
            f"({summary['best_latency_ratio']:.3f} of the densest policy's)"
        )
    terminal.success(
        f"best policy: validation accuracy {summary['best_val_acc']:.4f}, communication "
        f"{100 * summary['best_comm_ratio']:.2f}% of all-reduce{latency} "
        f"(test {summary['best_test_acc']:.4f}; no communication "
        f"{summary['no_comm_val_acc']:.4f})"
    )
    terminal.info(
        f"{summary['evaluations']} evaluations in {summary['search_time_s']:.1f} s; "
        f"{len(summary['pareto_front'])} policies on the Pareto front"
    )
    terminal.info(f"wrote {run.path}/best_policy.json, summary.json, search_curve.png, pareto.png")
    terminal.info(f"browse: optuna-dashboard {summary['storage']}")
