"""``snnas finetune``: fine-tune a search's selected policy with its weights baked in."""

from __future__ import annotations

from pathlib import Path

import click

from snnas._numbers import Range
from snnas.cli._options import SEED, Number
from snnas.cli._terminal import Terminal

__all__ = ["finetune"]

EPOCHS = Number(Range(1, 10_000, integer=True))
LR = Number(Range(0, 10, low_open=True))
BATCH = Number(Range(1, 65_536, integer=True))


@click.command()
@click.argument("run_name", metavar="RUN")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fine-tune this policy instead of the search's selected one.",
)
@click.option("--epochs", type=EPOCHS, help="Passes over the training split (digits: 20).")
@click.option("--lr", type=LR, help="Initial learning rate, cosine decay (digits: 0.03).")
@click.option("--batch-size", type=BATCH)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted fine-tuning.")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Folder holding the CIFAR python batches (CIFAR runs).",
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
    from snnas._run import RunDir
    from snnas.cli._progress import progress_bars
    from snnas.cli._runs import existing_run
    from snnas.data import load_for_space
    from snnas.search._artifacts import load_search_run
    from snnas.train import Accelerator
    from snnas.train._finetune import FINETUNE_DIR, default_finetune_config
    from snnas.train._finetune import finetune as run_finetune

    run = existing_run(runs_dir, run_name)
    search = load_search_run(run, policy_file)
    config = default_finetune_config(
        search.dataset, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed
    )
    accel = Accelerator.pick(device)
    data = load_for_space(search.dataset, search.space, data_dir)
    out = RunDir(run / FINETUNE_DIR)
    if not as_json:
        terminal.info(
            f"fine-tuning {search.policy_source} on {search.space.name} ({search.dataset}), "
            f"{config.epochs} epochs at lr {config.lr:g}, on {accel.device} -> {out.path}"
        )
    with progress_bars(terminal, "finetune") as progress:
        result = run_finetune(
            search.space,
            data,
            search.policy,
            search.weights,
            config,
            out,
            source={"run": str(run.path), "policy": search.policy_source},
            source_path=str(run / "last.pt"),
            resume=resume,
            accel=accel,
            progress=progress,
        )
    m = result.metrics
    if as_json:
        terminal.json(m)
        return
    terminal.success(
        f"validation accuracy {m['val_acc']:.4f} (epoch {m['selected_epoch']} of "
        f"{m['epochs']}; {m['val_acc_before']:.4f} before fine-tuning), test {m['test_acc']:.4f}"
    )
    terminal.info(f"wrote {out.path}/best.pt, final.json, metrics.jsonl, curves.png")
