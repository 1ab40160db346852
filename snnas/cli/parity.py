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
    "by_device.png", "overall.png", "backup.pt",
)  # fmt: skip
EPOCHS = Number(Range(1, 10_000, integer=True))
JOINT_EPOCHS = Number(Range(0, 10_000, integer=True))
BATCH = Number(Range(1, 65_536, integer=True))
TRAIN_IMAGES = Number(Range(1, 1_000_000_000, integer=True))
LR = Number(Range(0, 10, low_open=True))
RATE = Number(Range(0, 1, low_open=True))
#: Options of ``parity train`` that only the parity method takes, and those only failout takes.
PARITY_ONLY = ("supernet", "joint_epochs", "label_weight", "init", "base_name")
FAILOUT_ONLY = ("failout_rate", "standin")

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


def _dataset(run_dir: Path, dataset: str) -> str:
    """The dataset to use: ``--dataset`` when given, else the one the run was made with
    (``config.json``'s ``dataset``; digits when it records none). A ``--dataset`` other
    than the run's is refused."""
    ctx = click.get_current_context()
    recorded = None
    config = run_dir / "config.json"
    if config.is_file() and not config.is_symlink():
        from snnas._run import RunDir

        data = RunDir(run_dir).read_json("config.json")
        if isinstance(data, dict) and isinstance(data.get("dataset"), str):
            recorded = data["dataset"]
    if ctx.get_parameter_source("dataset") is click.core.ParameterSource.DEFAULT:
        return recorded or dataset
    if recorded is not None and recorded != dataset:
        raise click.BadParameter(
            f"expected the run's dataset {recorded!r}, found {dataset!r}",
            param_hint="'--dataset'",
        )
    return dataset


def _folder(run_dir: Path, name: str, option: str = "--name") -> Path:
    """``RUN/NAME``, where ``NAME`` is one folder name (never ``..``, a path or a link out)."""
    from snnas._run import resolve_run

    return resolve_run(run_dir, name, option)


@click.group()
def parity() -> None:
    """Parity devices: learned stand-ins that keep a split network answering."""


@parity.command("train")
@_RUN
@click.option(
    "--method",
    type=click.Choice(["parity", "failout"]),
    default="parity",
    show_default=True,
    help="parity: train parity devices; failout: train the fine-tuned network further with "
    "data devices dropped at random (no extra device; default --name failout).",
)
@click.option(
    "--base",
    "base_name",
    help="Train the parity devices against the failout network in RUN/BASE (failout + parity; "
    "default --name parity-BASE) instead of the fine-tuned one.",
)
@click.option(
    "--failout-rate",
    type=RATE,
    help="failout: probability that a training image has one device dropped (default 0.5).",
)
@click.option(
    "--standin",
    type=click.Choice(["mean", "zeros"]),
    help="failout: a dropped device's payloads become the imputation constants (mean, "
    "default) or zeros (ResiliNet's).",
)
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
@click.option(
    "--epochs", type=EPOCHS, help="Epochs with the base frozen (default 4; failout: the same)."
)
@click.option(
    "--joint-epochs", type=JOINT_EPOCHS, help="Then epochs training base and parity together."
)
@click.option("--batch-size", type=BATCH)
@click.option(
    "--train-images",
    type=TRAIN_IMAGES,
    help="Train on this many training images, a seeded subset (default: the whole split; "
    "a 2-core CPU's budget on Fashion-MNIST, docs/parity.md).",
)
@click.option(
    "--lr", type=LR, help="Adam learning rate of the frozen phase (failout: 1e-3 by default)."
)
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
    method: str,
    base_name: str | None,
    failout_rate: float | None,
    standin: str | None,
    space_file: Path | None,
    choices_file: Path | None,
    supernet: bool,
    epochs: int | None,
    joint_epochs: int | None,
    batch_size: int | None,
    train_images: int | None,
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
    RUN/parity/ (config, metrics.jsonl, last.pt, best.pt chosen on validation, final.json).
    With --method failout, trains the fine-tuned network itself further with devices dropped
    at random (RUN/failout/, the same files); --base FAILOUT then trains parity devices
    against that network."""
    from dataclasses import replace

    from snnas._run import RunDir
    from snnas.cli._progress import progress_bars
    from snnas.data import load_for_space
    from snnas.models.parity import CodedNetwork, ParityStreams
    from snnas.train import Accelerator
    from snnas.train._finetuned import load_finetuned, load_supernet
    from snnas.train._parity import ParityTrainConfig, train_parity

    given = {
        "supernet": supernet or None,
        "joint_epochs": joint_epochs,
        "label_weight": label_weight,
        "init": init,
        "base_name": base_name,
        "failout_rate": failout_rate,
        "standin": standin,
    }
    wrong = PARITY_ONLY if method == "failout" else FAILOUT_ONLY
    for key in wrong:
        if given[key] is not None:
            option = "--base" if key == "base_name" else f"--{key.replace('_', '-')}"
            raise click.UsageError(f"{option} does not apply to --method {method}")
    if supernet and base_name is not None:
        raise click.UsageError("--base trains against a failout network, not the supernet")
    dataset = _dataset(run_dir, dataset)
    if method == "failout":
        _train_failout(
            terminal, run_dir, space_file, choices_file, epochs, batch_size, lr, failout_rate,
            standin, seed, name, resume, device, as_json, dataset, data_dir, download,
            train_images,
        )  # fmt: skip
        return
    base_folder = None if base_name is None else RunDir(_folder(run_dir, base_name, "--base"))
    default = "parity-supernet" if supernet else f"parity-{base_name}" if base_name else "parity"
    out = RunDir(_folder(run_dir, name or default))
    out.check_own(PARITY_FILES, "parity run")
    _check_kind(out, "parity")
    out.check_resume("last.pt", resume, "parity run")
    choices = _choices(choices_file)
    imputation = None
    if supernet:
        if choices is not None:
            raise click.UsageError("--choices fixes one policy; the supernet trains them all")
        base: Any = load_supernet(run_dir, space_file)
    else:
        base = load_finetuned(run_dir, space_file, choices)
    if base_folder is not None:
        from snnas.train._failout import load_failout

        failout = load_failout(base_folder, base)
        base, imputation = failout.base, failout.impute
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
        "train_images": train_images,
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
        final = train_parity(
            net, data, config, out, resume=resume, accel=accel, progress=progress,
            base=base_name, imputation=imputation,
        )  # fmt: skip
    _print_final(terminal, final, as_json)


def _print_final(terminal: Terminal, final: dict[str, Any], as_json: bool) -> None:
    if as_json:
        terminal.json(final)
        return
    for key, value in final.items():
        terminal.info(
            f"{key:>20}: {value:.4f}" if isinstance(value, float) else f"{key:>20}: {value}"
        )


def _check_kind(out: Any, method: str) -> None:
    """Refuse a folder that holds a run of the other method (its ``config.json`` says), or
    checkpoints without the ``config.json`` that both methods write before any of them."""
    from snnas.errors import CheckpointError, shorten

    if not out.exists():
        return
    path = out / "config.json"
    if not path.is_file() or path.is_symlink():
        if out.has_checkpoint("last.pt") or out.has_checkpoint("best.pt"):
            raise CheckpointError(
                f"{shorten(str(out.path))}: not a {method} run folder (checkpoints without "
                "its config.json); choose another --name"
            )
        return
    data = out.read_json("config.json")
    if not isinstance(data, dict):
        raise CheckpointError(f"{shorten(str(path))}: expected a JSON object")
    found = data.get("method", "parity")
    if found != method:
        raise CheckpointError(
            f"{shorten(str(out.path))}: holds a {shorten(found, 40)} run, not a {method} run; "
            "choose another --name"
        )


def _train_failout(
    terminal: Terminal,
    run_dir: Path,
    space_file: Path | None,
    choices_file: Path | None,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    rate: float | None,
    standin: str | None,
    seed: int,
    name: str | None,
    resume: bool,
    device: str | None,
    as_json: bool,
    dataset: str,
    data_dir: Path | None,
    download: bool = False,
    train_images: int | None = None,
) -> None:
    """``snnas parity train RUN --method failout``."""
    from dataclasses import replace

    from snnas._run import RunDir
    from snnas.cli._progress import progress_bars
    from snnas.data import load_for_space
    from snnas.errors import ConfigError
    from snnas.train import Accelerator
    from snnas.train._failout import FAILOUT_FILES, FailoutConfig, train_failout
    from snnas.train._finetuned import load_finetuned

    out = RunDir(_folder(run_dir, name or "failout"))
    out.check_own(FAILOUT_FILES, "failout run")
    _check_kind(out, "failout")
    out.check_resume("last.pt", resume, "failout run")
    base = load_finetuned(run_dir, space_file, _choices(choices_file))
    if base.space.parity.r < 1:
        raise ConfigError(
            base.space.config.path, "parity.r", "r >= 1 (pass --space with parity devices)", 0
        )
    overrides: dict[str, Any] = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "rate": rate,
                 "standin": standin, "train_images": train_images}  # fmt: skip
    config = replace(
        FailoutConfig(seed=seed), **{k: v for k, v in overrides.items() if v is not None}
    )
    config.check()
    accel = Accelerator.pick(device)
    data = load_for_space(dataset, base.space, data_dir, download)
    if not as_json:
        terminal.info(
            f"failout training of {base.space.name}'s fine-tuned network (rate {config.rate}, "
            f"{config.standin} stand-ins) on {accel.device} -> {out.path}"
        )
    with progress_bars(terminal, "failout") as progress:
        final = train_failout(
            base, data, config, out, resume=resume, accel=accel, progress=progress
        )
    _print_final(terminal, final, as_json)


@parity.command("eval")
@_RUN
@click.option("--name", default="parity", show_default=True, help="The parity folder under RUN.")
@click.option("--backup-epochs", type=EPOCHS, help="Epochs of the backup-model baseline.")
@click.option(
    "--failout",
    "failout_name",
    help="The failout folder under RUN scored as the failout baseline (default: failout, "
    "when it exists).",
)
@click.option(
    "--failout-parity",
    "failout_parity_name",
    help="The parity folder under RUN trained on the failout network (default: "
    "parity-failout, when it exists).",
)
@click.option("--device", help="cpu, cuda or cuda:N (default: a GPU when present).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@data_options
@click.pass_obj
def evaluate(
    terminal: Terminal,
    run_dir: Path,
    name: str,
    backup_epochs: int | None,
    failout_name: str | None,
    failout_parity_name: str | None,
    device: str | None,
    as_json: bool,
    dataset: str,
    data_dir: Path | None,
    download: bool,
) -> None:
    """A_available, A_degraded (every erasure position, full test split) and A_overall(f) of
    RUN's parity devices, against no protection, imputation, replication, a backup model,
    failout and failout + parity, with every method's extra devices, bytes and FLOPs. Writes
    eval.json, by_device.png and overall.png next to the weights. The baselines' figures are
    kept in RUN/parity-baselines.json and reused by the parity runs of the same network
    (delete the file to compute them again)."""
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
    _check_kind(folder, "parity")
    # The failout folders: named ones must exist; the defaults are used when they do.
    extra: dict[str, RunDir | None] = {}
    for option, given, default in (
        ("--failout", failout_name, "failout"),
        ("--failout-parity", failout_parity_name, "parity-failout"),
    ):
        other = RunDir(_folder(run_dir, given or default, option))
        if given is None and (not other.exists() or other.path == folder.path):
            extra[option] = None
            continue
        if not other.exists():
            raise CheckpointError(f"{shorten(str(other.path))}: no such folder ({option})")
        if other.path == folder.path:
            raise click.BadParameter("is the parity run evaluated itself", param_hint=option)
        if option == "--failout-parity":
            _check_kind(other, "parity")
        extra[option] = other
    dataset = _dataset(run_dir, dataset)
    net = load_parity_run(folder)
    if not isinstance(net.base, FrozenSepResNeXt):
        raise ConfigError(
            str(folder.path), "RUN", "a parity run of a fine-tuned network", "a supernet run"
        )
    failout = None
    if extra["--failout"] is not None:
        from snnas.train._failout import load_failout

        failout = load_failout(extra["--failout"])
    accel = Accelerator.pick(device)
    data = load_for_space(dataset, net.space, data_dir, download)
    if failout is not None:
        failout.base.to(accel.device)
    with progress_bars(terminal, "parity eval") as progress:
        result = parity_eval(
            net.base, folder, data, accel, backup_epochs=backup_epochs, progress=progress,
            failout=failout, failout_parity=extra["--failout-parity"],
        )  # fmt: skip
    if as_json:
        terminal.json(result)
        return
    _table(terminal, result)
    if result["baselines_reused"]:
        terminal.info(
            f"the baselines' figures were reused from {run_dir}/parity-baselines.json (the "
            "same network, data, backup and failout runs; delete it to compute them again)"
        )
    terminal.info(f"wrote {folder.path}/eval.json, by_device.png, overall.png")


def _table(terminal: Terminal, result: dict[str, Any]) -> None:
    """Two tables: every method's resources and headline figures, then its accuracy per
    unavailable device (narrow enough for an 80-column terminal)."""
    from rich import box
    from rich.table import Table

    g = len(result["degraded_by_device"])
    rates = list(result["overall"])
    rows = {"parity": result, **result["baselines"]}
    summary = Table(
        "method",
        "+dev",
        "+kB",
        "+MFLOP",
        "avail",
        "degr",
        *(f"f={100 * float(f):g}%" for f in rates),
        title=f"{result['space']} ({result.get('dataset', '?')}): accuracy in % on "
        f"{result['images']} test images, every erasure position. +: extra per image; avail: "
        "A_available; degr: A_degraded; f=x%: A_overall(f)",
        box=box.SIMPLE_HEAD,
    )
    summary.columns[0].no_wrap = True
    devices = Table(
        "method",
        *(f"dev {d} lost" for d in range(g)),
        title="A_degraded (%) by unavailable device",
        box=box.SIMPLE_HEAD,
    )
    devices.columns[0].no_wrap = True
    for method, figures in rows.items():
        extra = figures.get("extra_devices")
        summary.add_row(
            method,
            "?" if extra is None else str(extra),
            f"{figures['extra_bytes'] / 1e3:.1f}",
            f"{figures['extra_flops'] / 1e6:.2f}",
            f"{100 * figures.get('available_acc', result['available_acc']):.1f}",
            f"{100 * figures['degraded_acc']:.1f}",
            *(f"{100 * figures['overall'][f]:.1f}" for f in rates),
        )
        devices.add_row(method, *(f"{100 * v:.1f}" for v in figures["degraded_by_device"]))
    terminal.print(summary)
    terminal.print(devices)
