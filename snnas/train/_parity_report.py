"""``snnas parity eval``: the honest figures of a parity run and its baselines, with plots.

Every method is shown at its extra devices, bytes and FLOPs per image, with its own
A_available (failout changes the network, so its normal operation differs), A_degraded per
device and position, and A_overall(f) = (1 - f) A_available + f A_degraded.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from snnas._run import Progress, RunDir
from snnas.cost import parity_cost
from snnas.data import DataSplits
from snnas.errors import CheckpointError, shorten
from snnas.models import FrozenSepResNeXt
from snnas.train._baselines import baselines, train_backup
from snnas.train._degraded import OVERALL_RATES, degraded_report, overall
from snnas.train._failout import Failout, failout_figures
from snnas.train._parity import load_parity, load_parity_run
from snnas.train._trainer import Accelerator

__all__ = ["METHODS", "parity_eval", "plot_by_device", "plot_overall"]

#: Every method of the table, in its order; each keeps one colour in every plot.
METHODS = ("parity", "failout+parity", "backup", "replicate", "failout", "impute", "none")
_COLOURS = dict(zip(METHODS, ("C0", "C1", "C2", "C3", "C4", "C5", "C7"), strict=True))
_DEVICES = {"parity": None, "failout+parity": None, "backup": 1, "replicate": 1,
            "failout": 0, "impute": 0, "none": 0}  # fmt: skip


def _data_decisions(net: FrozenSepResNeXt) -> dict[str, Any]:
    kinds = {d.label: d.kind for d in net.space.decisions}
    policy = net.space.policy_to_json(net.policy)["policy"]
    return {k: v for k, v in policy.items() if kinds[k] not in ("encode", "encoder")}


def _failout_parity(
    folder: RunDir, base: FrozenSepResNeXt, data: DataSplits, accel: Accelerator
) -> dict[str, Any]:
    """The ``failout + parity`` figures: a parity run whose base is a failout network."""
    net = load_parity_run(folder)
    other = net.base
    if not isinstance(other, FrozenSepResNeXt) or _data_decisions(other) != _data_decisions(base):
        raise CheckpointError(
            f"{shorten(str(folder.path))}: not a parity run of this run's network (another "
            "policy, or a supernet)"
        )
    config = folder.read_json("config.json")
    if not isinstance(config, dict) or not isinstance(config.get("base"), str):
        raise CheckpointError(
            f"{shorten(str(folder.path / 'config.json'))}: its parity devices were not trained "
            "on a failout network (snnas parity train RUN --base FAILOUT)"
        )
    net.to(accel.device)
    report = degraded_report(net, data.loader("test", 256), accel)
    cost = parity_cost(other.space, other.policy)
    return {
        **report.to_json(),
        "extra_bytes": cost.bytes,
        "extra_flops": cost.flops,
        "extra_devices": other.space.parity.r,
        "folder": folder.path.name,
        "base": config["base"],
    }


def parity_eval(
    base: FrozenSepResNeXt,
    parity_run: RunDir,
    data: DataSplits,
    accel: Accelerator,
    *,
    backup_epochs: int | None = None,
    failout: Failout | None = None,
    failout_parity: RunDir | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score the parity run's ``best.pt`` on the full test split, every erasure position,
    against the baselines; write ``eval.json``, ``by_device.png`` and ``overall.png`` into
    ``parity_run``. Every choice (checkpoint, answerers, replicated device) was made on the
    validation split.

    ``failout``: a failout network (:func:`~snnas.train._failout.load_failout`), scored as
    the ``failout`` baseline (no extra device); ``failout_parity``: a parity run trained on
    it (``snnas parity train RUN --base FAILOUT``), scored as ``failout+parity``.
    """
    net = load_parity(parity_run, base).to(accel.device)
    space = net.space
    policy = base.policy
    report = degraded_report(net, data.loader("test", 256), accel)
    cost = parity_cost(space, policy)
    backup = train_backup(space, data, parity_run, accel, epochs=backup_epochs, progress=progress)
    others = baselines(net, data, accel, backup)
    result: dict[str, Any] = {
        "space": space.name,
        "space_hash": space.hash,
        "dataset": data.name,
        "split": "test",
        "policy": space.policy_to_json(policy)["policy"],
        **report.to_json(),
        "extra_bytes": cost.bytes,
        "extra_flops": cost.flops,
        "parity_cost": cost.to_json(),
        "extra_devices": space.parity.r,
        "baselines": {},
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    for name, figures in others.items():
        figures["available_acc"] = report.available  # the same network in normal operation
        figures["extra_devices"] = _DEVICES[name]
    if failout is not None:
        failed = degraded_report(failout.coded().to(accel.device), data.loader("test", 256), accel)
        others["failout"] = {
            **failout_figures(failed),
            "extra_bytes": 0,
            "extra_flops": 0,
            "extra_devices": 0,
            "standin": failout.standin,
            "rate": failout.config.rate,
        }
    if failout_parity is not None:
        others["failout+parity"] = _failout_parity(failout_parity, base, data, accel)
    for name in METHODS:
        if name not in others:
            continue
        figures = others[name]
        figures["overall"] = {
            str(f): overall(figures["available_acc"], figures["degraded_acc"], f)
            for f in OVERALL_RATES
        }
        result["baselines"][name] = figures
    parity_run.write_json("eval.json", result)
    plot_by_device(result, parity_run / "by_device.png")
    plot_overall(result, parity_run / "overall.png")
    return result


def _series(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    series = {"parity": result}
    series.update(result["baselines"])
    return {name: series[name] for name in METHODS if name in series}


def _label(name: str, figures: dict[str, Any]) -> str:
    devices = figures.get("extra_devices")
    extra = "" if devices is None else f"+{devices} dev, "
    return (
        f"{name} ({extra}+{figures['extra_bytes'] / 1e3:.1f} kB, "
        f"+{figures['extra_flops'] / 1e6:.2f} MFLOPs)"
    )


def plot_by_device(result: dict[str, Any], path: Path) -> None:
    """Left: accuracy per unavailable device (mean over points) for every method; right:
    each method's A_available and A_degraded (one colour per method in both panels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(result)
    g = len(result["degraded_by_device"])
    width = 0.8 / len(series)
    fig, (ax, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    for i, (name, figures) in enumerate(series.items()):
        xs = [d + (i - (len(series) - 1) / 2) * width for d in range(g)]
        ax.bar(xs, figures["degraded_by_device"], width, color=_COLOURS[name],
               label=_label(name, figures))  # fmt: skip
    ax.axhline(result["available_acc"], color="black", lw=1, ls="--", label="A_available (base)")
    ax.set_xticks(range(g))
    ax.set_xticklabels([f"device {d}" for d in range(g)])
    ax.set_ylabel("accuracy when the device is unavailable")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{result['space']} ({result['dataset']}): per unavailable device")
    ax.legend(fontsize=6.5, loc="lower right")
    names = list(series)
    for i, name in enumerate(names):
        figures = series[name]
        right.bar(i - 0.2, figures.get("available_acc", result["available_acc"]), 0.4,
                  color=_COLOURS[name], alpha=0.45)  # fmt: skip
        right.bar(i + 0.2, figures["degraded_acc"], 0.4, color=_COLOURS[name])
    right.set_xticks(range(len(names)))
    right.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    right.set_ylim(0, 1.02)
    right.set_title("A_available (light) and A_degraded (dark)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_overall(result: dict[str, Any], path: Path) -> None:
    """A_overall(f) = (1 - f) A_available + f A_degraded against the unavailability rate f,
    each method with its own A_available."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [i / 100 for i in range(0, 21)]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, figures in _series(result).items():
        available = figures.get("available_acc", result["available_acc"])
        ys = [overall(available, figures["degraded_acc"], f) for f in rates]
        ax.plot([100 * f for f in rates], ys, color=_COLOURS[name], label=name)
    for f in OVERALL_RATES:
        ax.axvline(100 * f, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("unavailability rate f (%)")
    ax.set_ylabel("A_overall")
    ax.set_title(f"{result['space']} ({result['dataset']}): A_overall(f) ({result['split']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
