"""``snnas parity``: train a run's parity devices and measure them (docs/parity.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from snnas._numbers import Range
from snnas.cli._options import SEED, Number, data_options
from snnas.cli._terminal import Terminal

__all__ = ["parity"]

#: Everything a parity run folder holds (train, then eval).
PARITY_FILES = (
    "config.json", "metrics.jsonl", "last.pt", "best.pt", "final.json", "eval.json",
    "by_device.png", "overall.png",
)  # fmt: skip
EPOCHS = Number(Range(1, 10_000, integer=True))
JOINT_EPOCHS = Number(Range(0, 10_000, integer=True))
BATCH = Number(Range(1, 65_536, integer=True))
LR = Number(Range(0, 10, low_open=True))

_RUN = click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False, path_type=Path))


def _choices(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from snnas.errors import PolicyError, shorten
    from snnas.space._space import load_json

    data = load_json(path, "--choices", "JSON file")  # no NaN, no key twice, bounded
    if isinstance(data, dict) and isinstance(data.get("policy"), dict):
        data = data["policy"]
    if not isinstance(data, dict):
        raise PolicyError(f"{shorten(str(path))}: expected a JSON object of parity decisions")
    return data


def _folder(run_dir: Path, name: str) -> Path:
    """``RUN/NAME``, where ``NAME`` is one folder name (never ``..``, a path or a link out)."""
    from snnas._run import resolve_run

    return resolve_run(run_dir, name, "--name")


@click.group()
def parity() -> None:
    """Parity devices: learned stand-ins that keep a split network answering."""


@parity.command("train")
@_RUN
@click.option(
    "--space",
    "space_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A space with the run's network and split and [parity] r >= 1 (default: the run's).",
)
@click.option(
    "--choices",
    "choices_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON {label: value} of parity decisions (default: the most protective; the search "
    "does not score them).",
)
@click.option("--supernet", is_flag=True, help="Train on the run's shared weights (last.pt).")
@click.option("--epochs", type=EPOCHS, help="Epochs with the base frozen (default 4).")
@click.option(
    "--joint-epochs", type=JOINT_EPOCHS, help="Then epochs training base and parity together."
)
@click.option("--batch-size", type=BATCH)
@click.option("--lr", type=LR, help="Adam learning rate of the frozen phase.")
@click.option(
    "--label-weight",
    type=Number(Range(0, 1000)),
    help="Add parity device 0's cross-entropy on the labels, this weighted (default 0).",
)
@click.option(
    "--init",
    type=click.Choice(["shadow", "scratch"]),
    help="Parity devices start as copies of their data devices (shadow, default) or random.",
)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--name", default=None, help="Output folder under RUN (default: parity).")
@click.option("--resume", is_flag=True, help="Continue the parity run's last checkpoint.")
@click.option("--device", help="cpu, cuda or cuda:N (default: a GPU when present).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@data_options
@click.pass_obj
def train(
    terminal: Terminal,
    run_dir: Path,
    space_file: Path | None,
    choices_file: Path | None,
    supernet: bool,
    epochs: int | None,
    joint_epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    label_weight: float | None,
    init: str | None,
    seed: int,
    name: str | None,
    resume: bool,
    device: str | None,
    as_json: bool,
    dataset: str,
    data_dir: Path | None,
    download: bool,
) -> None:
    """Train the parity devices of RUN's fine-tuned network (runs/<name>/finetune/best.pt),
    or of its supernet with --supernet, by distillation over every erasure position. Writes
    RUN/parity/ (config, metrics.jsonl, last.pt, best.pt chosen on validation, final.json)."""
    from dataclasses import replace

    from snnas._run import RunDir
    from snnas.cli._progress import progress_bars
    from snnas.data import load_for_space
    from snnas.models.parity import CodedNetwork, ParityStreams
    from snnas.train import Accelerator
    from snnas.train._finetuned import load_finetuned, load_supernet
    from snnas.train._parity import ParityTrainConfig, train_parity

    out = RunDir(_folder(run_dir, name or ("parity-supernet" if supernet else "parity")))
    out.check_own(PARITY_FILES, "parity run")
    out.check_resume("last.pt", resume, "parity run")
    choices = _choices(choices_file)
    if supernet:
        if choices is not None:
            raise click.UsageError("--choices fixes one policy; the supernet trains them all")
        base: Any = load_supernet(run_dir, space_file)
    else:
        base = load_finetuned(run_dir, space_file, choices)
    if base.space.parity.r < 1:
        from snnas.errors import ConfigError

        raise ConfigError(
            base.space.config.path, "parity.r", "r >= 1 (pass --space with parity devices)", 0
        )
    overrides: dict[str, Any] = {
        "epochs": epochs,
        "joint_epochs": joint_epochs,
        "batch_size": batch_size,
        "lr": lr,
        "label_weight": label_weight,
        "init": init,
    }
    config = replace(
        ParityTrainConfig(seed=seed), **{k: v for k, v in overrides.items() if v is not None}
    )
    config.check()
    accel = Accelerator.pick(device)
    data = load_for_space(dataset, base.space, data_dir, download)
    net = CodedNetwork(base, ParityStreams(base.space))
    if not as_json:
        terminal.info(
            f"training {base.space.parity.r} parity device(s) of {base.space.name} "
            f"({'supernet' if supernet else 'fine-tuned'}) on {accel.device} -> {out.path}"
        )
    with progress_bars(terminal, "parity") as progress:
        final = train_parity(net, data, config, out, resume=resume, accel=accel, progress=progress)
    if as_json:
        terminal.json(final)
        return
    for key, value in final.items():
        terminal.info(
            f"{key:>20}: {value:.4f}" if isinstance(value, float) else f"{key:>20}: {value}"
        )


@parity.command("eval")
@_RUN
@click.option("--name", default="parity", show_default=True, help="The parity folder under RUN.")
@click.option("--backup-epochs", type=EPOCHS, help="Epochs of the backup-model baseline.")
@click.option("--device", help="cpu, cuda or cuda:N (default: a GPU when present).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@data_options
@click.pass_obj
def evaluate(
    terminal: Terminal,
    run_dir: Path,
    name: str,
    backup_epochs: int | None,
    device: str | None,
    as_json: bool,
    dataset: str,
    data_dir: Path | None,
    download: bool,
) -> None:
    """A_available, A_degraded (every erasure position, full test split) and A_overall(f) of
    RUN's parity devices, against no protection, replication and a backup model at equal
    extra resources. Writes eval.json, by_device.png and overall.png next to the weights."""
    from snnas._run import RunDir
    from snnas.cli._progress import progress_bars
    from snnas.data import load_for_space
    from snnas.errors import CheckpointError, ConfigError, shorten
    from snnas.models import FrozenSepResNeXt
    from snnas.train import Accelerator
    from snnas.train._parity import load_parity_run
    from snnas.train._parity_report import parity_eval

    folder = RunDir(_folder(run_dir, name))
    if not folder.exists():
        raise CheckpointError(f"{shorten(str(folder.path))}: no parity run (no such folder)")
    net = load_parity_run(folder)
    if not isinstance(net.base, FrozenSepResNeXt):
        raise ConfigError(
            str(folder.path), "RUN", "a parity run of a fine-tuned network", "a supernet run"
        )
    accel = Accelerator.pick(device)
    data = load_for_space(dataset, net.space, data_dir, download)
    with progress_bars(terminal, "parity eval") as progress:
        result = parity_eval(
            net.base, folder, data, accel, backup_epochs=backup_epochs, progress=progress
        )
    if as_json:
        terminal.json(result)
        return
    _table(terminal, result)
    terminal.info(f"wrote {folder.path}/eval.json, by_device.png, overall.png")


def _table(terminal: Terminal, result: dict[str, Any]) -> None:
    from rich.table import Table

    g = len(result["degraded_by_device"])
    rates = list(result["overall"])
    table = Table(
        "method",
        "A_degraded",
        *(f"dev {d}" for d in range(g)),
        *(f"A_overall {100 * float(f):g}%" for f in rates),
        "extra kB/img",
        "extra MFLOPs",
        title=f"{result['space']}: A_available {result['available_acc']:.4f} "
        f"({result['images']} test images, every erasure position)",
    )
    rows = {"parity": result, **result["baselines"]}
    for method, figures in rows.items():
        table.add_row(
            method,
            f"{figures['degraded_acc']:.4f}",
            *(f"{v:.3f}" for v in figures["degraded_by_device"]),
            *(f"{figures['overall'][f]:.4f}" for f in rates),
            f"{figures['extra_bytes'] / 1e3:.1f}",
            f"{figures['extra_flops'] / 1e6:.2f}",
        )
    terminal.print(table)
