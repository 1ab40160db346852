"""``snnas parity eval``: the honest figures of a parity run and its baselines, with plots.

Every method is shown at its extra devices, bytes and FLOPs per image, with its own
A_available (failout changes the network, so its normal operation differs), A_degraded per
device and position, and A_overall(f) = (1 - f) A_available + f A_degraded.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from snnas import __version__
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

__all__ = ["BASELINE_CACHE", "METHODS", "parity_eval", "plot_by_device", "plot_overall"]

#: Every method of the table, in its order; each keeps one colour in every plot.
METHODS = ("parity", "failout+parity", "backup", "replicate", "failout", "impute", "none")
_COLOURS = dict(zip(METHODS, ("C0", "C1", "C2", "C3", "C4", "C5", "C7"), strict=True))
_DEVICES = {"parity": None, "failout+parity": None, "backup": 1, "replicate": 1,
            "failout": 0, "impute": 0, "none": 0}  # fmt: skip


#: The run folder's cache of baseline figures (the parity runs of one network share them).
BASELINE_CACHE = "parity-baselines.json"
_CACHE_ENTRIES = 16  # the most recent keys kept
_FIGURES = ("available_acc", "degraded_acc", "extra_bytes", "extra_flops")


def _digest(tensors: Mapping[str, Tensor]) -> str:
    """sha256 of named tensors (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def _state(module: nn.Module) -> str:
    return _digest(dict(module.state_dict()))


def _baselines_key(
    net: Any, data: DataSplits, backup: nn.Module, failout: Failout | None,
    failout_parity: Any, split: str,
) -> str:  # fmt: skip
    """What every baseline figure depends on: the data, the base network and its policy,
    the imputation constants, the backup model, the failout networks, the code's version."""
    space = net.space
    parts = {
        "version": [__version__, torch.__version__, 1],
        "dataset": data.name,
        "split": split,
        "data": _digest({f"{s}{i}": data.tensors[s][i] for s in ("val", split) for i in (0, 1)}),
        "space": space.hash,
        "policy": _data_decisions(net.base),  # the parity decisions change no baseline
        "base": _state(net.base),
        "impute": _digest({str(p.index): net.parity.impute(p.index) for p in space.arch.points}),
        "backup": _state(backup),
        "failout": None
        if failout is None
        else [_state(failout.base), _digest({str(k): v for k, v in failout.impute.items()}),
              failout.standin, failout.config.rate],
        "failout+parity": None if failout_parity is None else _state(failout_parity),
    }  # fmt: skip
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        return False
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return math.isfinite(value)


def _cached(run: RunDir, key: str) -> dict[str, Any] | None:
    """The cached baselines under ``key``; ``None`` when absent, and when the file or the
    entry is damaged (they are then computed again and the entry rewritten)."""
    if not (run / BASELINE_CACHE).is_file():
        return None
    try:
        cache = run.read_json(BASELINE_CACHE)
    except CheckpointError:
        return None
    entries = cache.get("entries") if isinstance(cache, dict) else None
    entry = entries.get(key) if isinstance(entries, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("baselines"), dict):
        return None
    for figures in entry["baselines"].values():
        if not isinstance(figures, dict):
            return None
        numbers = [figures.get(k) for k in _FIGURES] + [
            figures.get("degraded_by_device"), figures.get("degraded_by_position"),
            list(figures.get("overall", {}).values()) if isinstance(figures.get("overall"), dict)
            else None,
        ]  # fmt: skip
        if not all(_finite(v) for v in numbers):
            return None
    if set(entry["baselines"]) - set(METHODS):
        return None
    return entry["baselines"]


def _store(run: RunDir, key: str, baselines: dict[str, Any]) -> None:
    entries: dict[str, Any] = {}
    if (run / BASELINE_CACHE).is_file():
        try:
            cache = run.read_json(BASELINE_CACHE)
            if isinstance(cache, dict) and isinstance(cache.get("entries"), dict):
                entries = {k: v for k, v in cache["entries"].items() if k != key}
        except CheckpointError:
            entries = {}
    entries[key] = {"baselines": baselines}
    kept = dict(list(entries.items())[-_CACHE_ENTRIES:])
    run.write_json(BASELINE_CACHE, {"version": 1, "entries": kept})


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
    run = RunDir(parity_run.path.parent)
    if (run / BASELINE_CACHE).is_symlink():  # before the work: it could not be written
        raise CheckpointError(
            f"{shorten(str(run / BASELINE_CACHE))}: is a symbolic link; refusing to read or "
            "replace it (remove the link)"
        )
    net = load_parity(parity_run, base).to(accel.device)
    space = net.space
    policy = base.policy
    report = degraded_report(net, data.loader("test", 256), accel)
    cost = parity_cost(space, policy)
    backup = train_backup(space, data, parity_run, accel, epochs=backup_epochs, progress=progress)
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
    other_parity = None if failout_parity is None else load_parity_run(failout_parity)
    # The baselines do not depend on the parity devices: runs of one network share them.
    key = _baselines_key(net, data, backup, failout, other_parity, "test")
    cached = _cached(run, key)
    result["baselines_reused"] = cached is not None
    if cached is None:
        cached = _baselines(net, base, data, accel, backup, report.available, failout,
                            failout_parity)  # fmt: skip
        _store(run, key, cached)
    result["baselines"] = cached
    parity_run.write_json("eval.json", result)
    plot_by_device(result, parity_run / "by_device.png")
    plot_overall(result, parity_run / "overall.png")
    return result


def _baselines(
    net: Any, base: FrozenSepResNeXt, data: DataSplits, accel: Accelerator,
    backup: nn.Module, available: float, failout: Failout | None,
    failout_parity: RunDir | None,
) -> dict[str, Any]:  # fmt: skip
    """Every baseline's figures on the test split, in :data:`METHODS` order."""
    others = baselines(net, data, accel, backup)
    for name, figures in others.items():
        figures["available_acc"] = available  # the same network in normal operation
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
    out: dict[str, Any] = {}
    for name in METHODS:
        if name not in others:
            continue
        figures = others[name]
        figures["overall"] = {
            str(f): overall(figures["available_acc"], figures["degraded_acc"], f)
            for f in OVERALL_RATES
        }
        out[name] = figures
    return out


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
