"""``snnas parity eval``: the honest figures of a parity run and its baselines, with plots."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from snnas._run import Progress, RunDir
from snnas.cost import parity_cost
from snnas.data import DataSplits
from snnas.models import FrozenSepResNeXt
from snnas.train._baselines import baselines, train_backup
from snnas.train._degraded import OVERALL_RATES, degraded_report, overall
from snnas.train._parity import load_parity
from snnas.train._trainer import Accelerator

__all__ = ["parity_eval", "plot_by_device", "plot_overall"]

_METHODS = ("parity", "replicate", "backup", "impute", "none")


def parity_eval(
    base: FrozenSepResNeXt,
    parity_run: RunDir,
    data: DataSplits,
    accel: Accelerator,
    *,
    backup_epochs: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score the parity run's ``best.pt`` on the full test split, every erasure position,
    against the baselines; write ``eval.json``, ``by_device.png`` and ``overall.png`` into
    ``parity_run``. Every choice (checkpoint, answerers, replicated device) was made on the
    validation split."""
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
        "baselines": {},
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    for name, figures in others.items():
        figures["overall"] = {
            str(f): overall(report.available, figures["degraded_acc"], f) for f in OVERALL_RATES
        }
        result["baselines"][name] = figures
    parity_run.write_json("eval.json", result)
    plot_by_device(result, parity_run / "by_device.png")
    plot_overall(result, parity_run / "overall.png")
    return result


def _series(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    series = {"parity": result}
    series.update(result["baselines"])
    return {name: series[name] for name in _METHODS if name in series}


def plot_by_device(result: dict[str, Any], path: Path) -> None:
    """Accuracy per unavailable device (mean over points) for every method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(result)
    g = len(result["degraded_by_device"])
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, figures) in enumerate(series.items()):
        xs = [d + (i - (len(series) - 1) / 2) * width for d in range(g)]
        label = f"{name} ({figures['degraded_acc']:.3f}; +{figures['extra_bytes'] / 1e3:.1f} kB)"
        ax.bar(xs, figures["degraded_by_device"], width, label=label)
    ax.axhline(result["available_acc"], color="black", lw=1, ls="--", label="available")
    ax.set_xticks(range(g))
    ax.set_xticklabels([f"device {d}" for d in range(g)])
    ax.set_ylabel("accuracy when the device is unavailable")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{result['space']}: A_degraded per unavailable device ({result['split']})")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_overall(result: dict[str, Any], path: Path) -> None:
    """A_overall(f) = (1 - f) A_available + f A_degraded against the unavailability rate f."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [i / 100 for i in range(0, 21)]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, figures in _series(result).items():
        ys = [overall(result["available_acc"], figures["degraded_acc"], f) for f in rates]
        ax.plot([100 * f for f in rates], ys, label=name)
    for f in OVERALL_RATES:
        ax.axvline(100 * f, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("unavailability rate f (%)")
    ax.set_ylabel("A_overall")
    ax.set_title(f"{result['space']}: A_overall(f) ({result['split']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
