"""``snnas finetune``: fine-tune a search's selected policy with its weights baked in."""

from __future__ import annotations

from pathlib import Path

import click

from snnas.api._finetune import BATCH_RANGE, EPOCHS_RANGE, LR_RANGE
from snnas.cli._options import SEED, Number
from snnas.cli._terminal import Terminal

__all__ = ["finetune"]

EPOCHS = Number(EPOCHS_RANGE)
LR = Number(LR_RANGE)
BATCH = Number(BATCH_RANGE)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@click.command()
@click.argument("run_name", metavar="RUN")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fine-tune this policy instead of the search's selected one.",
)
@click.option(
    "--epochs",
    type=EPOCHS,
    help="Passes over the training split (digits: 20; fashion-mnist: 5; CIFAR: 45).",
)
@click.option(
    "--lr",
    type=LR,
    help="Initial learning rate, cosine decay (digits: 0.03; fashion-mnist: 0.01; CIFAR: 1e-4).",
)
@click.option("--batch-size", type=BATCH)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted fine-tuning.")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Folder holding the run's dataset files: the Fashion-MNIST IDX files (default "
    "/usr/share/datasets/fashion-mnist) or the CIFAR python batches.",
)
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
)
@click.option("--device", help="cpu, cuda or cuda:N (default: a GPU when present).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def finetune(
    terminal: Terminal,
    run_name: str,
    policy_file: Path | None,
    epochs: int | None,
    lr: float | None,
    batch_size: int | None,
    seed: int,
    resume: bool,
    data_dir: Path | None,
    runs_dir: Path,
    device: str | None,
    as_json: bool,
) -> None:
    """Fine-tune RUN's selected policy (or --policy) from the search's shared weights;
    write RUN/finetune/ (metrics, curves.png, last.pt, best.pt, final.json)."""
    from snnas.api import FinetuneJob
    from snnas.cli._progress import progress_bars
    from snnas.cli._runs import existing_run

    job = FinetuneJob(
        existing_run(runs_dir, run_name).path,
        epochs=epochs,
        lr=lr,
        policy=policy_file,
        batch_size=batch_size,
        seed=seed,
        resume=resume,
        data_dir=data_dir,
        device=device,
    )
    if not as_json:
        config = job.config
        terminal.info(
            f"fine-tuning {job.search.policy_source} on {job.search.space.name} "
            f"({job.search.dataset}), {_plural(config.epochs, 'epoch')} at lr {config.lr:g}, on "
            f"{job.accel.device} -> {job.path}"
        )
    with progress_bars(terminal, "finetune") as progress:
        result = job.run(progress)
    m = result.metrics
    if as_json:
        terminal.json(m)
        return
    terminal.success(
        f"validation accuracy {m['val_acc']:.4f} (epoch {m['selected_epoch']} of "
        f"{m['epochs']}; {m['val_acc_before']:.4f} before fine-tuning), test {m['test_acc']:.4f}"
    )
    terminal.info(f"wrote {job.path}/best.pt, final.json, metrics.jsonl, curves.png")
