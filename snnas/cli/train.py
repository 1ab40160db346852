"""``snnas train``: train a plain ResNeXt, a fixed-policy Sep-ResNeXt or the supernet."""

from __future__ import annotations

from pathlib import Path

import click

from snnas.cli._options import SEED, Number, data_options, run_options
from snnas.cli._terminal import Terminal
from snnas.train._config import RANGES

__all__ = ["train"]


@click.command()
@click.argument("space_file", metavar="SPACE", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Train this fixed policy (a Sep-ResNeXt) instead of the supernet.",
)
@click.option("--plain", is_flag=True, help="Train the plain ResNeXt baseline instead.")
@click.option("--epochs", type=Number(RANGES["epochs"]), help="Passes over the training split.")
@click.option("--batch-size", type=Number(RANGES["batch_size"]))
@click.option("--lr", type=Number(RANGES["lr"]), help="Initial learning rate.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option(
    "--eval-policies",
    type=Number(RANGES["eval_policies"]),
    help="Supernet: random policies scored at the end.",
)
@click.option("--no-augment", is_flag=True, help="Train without data augmentation.")
@click.option(
    "--workers", type=Number(RANGES["workers"]), default=None, help="Data-loader processes (CIFAR)."
)
@click.option("--resume", is_flag=True, help="Continue the run's last checkpoint.")
@data_options
@run_options
@click.pass_obj
def train(
    terminal: Terminal,
    space_file: Path,
    policy_file: Path | None,
    plain: bool,
    dataset: str,
    data_dir: Path | None,
    download: bool,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    seed: int,
    eval_policies: int | None,
    no_augment: bool,
    workers: int | None,
    device: str | None,
    name: str | None,
    runs_dir: Path,
    resume: bool,
    as_json: bool,
) -> None:
    """Train on SPACE: the supernet (random policies), a fixed --policy, or the --plain
    ResNeXt. Writes runs/<name>/ (config, metrics.jsonl, last.pt, final.json)."""
    if plain and policy_file is not None:
        raise click.UsageError("--plain and --policy exclude each other")

    from snnas._run import RunDir, resolve_run
    from snnas.cli._progress import progress_bars
    from snnas.data import load_for_space
    from snnas.space import load_space, policy_json
    from snnas.train import Accelerator, default_config
    from snnas.train import train as run_training
    from snnas.train._trainer import CHECKPOINT

    if name is not None:
        resolve_run(runs_dir, name)  # a bad --name is refused before anything is read
    space = load_space(space_file)
    mode = "plain" if plain else "policy" if policy_file else "supernet"
    run = RunDir(resolve_run(runs_dir, name or f"train-{space.name}-{mode}-{dataset}-s{seed}"))
    run.check_resume(CHECKPOINT, resume)
    policy = space.load_policy(policy_file) if policy_file else None
    config = default_config(
        mode,
        dataset,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        eval_policies=eval_policies,
        workers=workers,
        augment=False if no_augment else None,
        policy=policy_json(policy) if policy else None,
    )
    accel = Accelerator.pick(device)
    data = load_for_space(dataset, space, data_dir, download)
    if not as_json:
        terminal.info(
            f"training {mode} on {space.name} ({dataset}: {data.size('train')} train, "
            f"{data.size('val')} val, {data.size('test')} test) on {accel.device} -> {run.path}"
        )
    with progress_bars(terminal, mode) as progress:
        result = run_training(
            space, data, config, run, resume=resume, accel=accel, progress=progress
        )
    metrics = result.metrics
    if as_json:
        terminal.json(metrics)
        return
    for key, value in metrics.items():
        terminal.info(
            f"{key:>28}: {value:.4f}" if isinstance(value, float) else f"{key:>28}: {value}"
        )
