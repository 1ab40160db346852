"""``snnas parity eval``: the honest figures of a parity run and its baselines, with plots.

Every method is shown at its extra devices, bytes and FLOPs per image, with its own
A_available (failout changes the network, so its normal operation differs), A_degraded per
device and position, and A_overall(f) = (1 - f) A_available + f A_degraded.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

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
_CACHE_BYTES = 16 << 20  # a larger file is not read (never written by snnas: 16 small entries)
_RESOURCES = 1e15  # bound of extra bytes and FLOPs per image
#: The code the baselines' figures come from: a change to any of it is another key.
_SOURCES = (
    "snnas.train._baselines",
    "snnas.train._degraded",
    "snnas.train._failout",
    "snnas.train._parity_report",
    "snnas.train._trainer",
    "snnas.models",
    "snnas.cost",
    "snnas.data",
)


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


def _code_digest() -> str:
    """sha256 of the source files of :data:`_SOURCES` (a package: every module in it)."""
    h = hashlib.sha256()
    for name in _SOURCES:
        path = Path(str(importlib.import_module(name).__file__))
        files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
        for file in files:
            h.update(f"{file.relative_to(path.parent)}|".encode())
            h.update(file.read_bytes())
    return h.hexdigest()


def _baselines_key(
    net: Any, data: DataSplits, accel: Accelerator, backup: nn.Module,
    failout: Failout | None, failout_parity: tuple[RunDir, Any, dict[str, Any]] | None,
) -> str:  # fmt: skip
    """What every baseline figure depends on: the code, the device and its precision, the
    data and its normalisation, the base network (policy, weights, imputation constants),
    the backup model, the failout networks (policy, weights, stand-ins, parity decisions)."""
    space = net.space
    parts: dict[str, Any] = {
        "format": 1,
        "code": _code_digest(),
        "torch": torch.__version__,
        "device": accel.device.type,
        "autocast": "bfloat16" if accel.cuda else "float32",
        "dataset": data.name,
        "data": _digest({f"{s}{i}": data.tensors[s][i] for s in ("val", "test") for i in (0, 1)}),
        "normalization": json.dumps(data.normalization, sort_keys=True, default=str),
        "space": space.hash,
        "policy": _data_decisions(net.base),  # the parity decisions change no baseline
        "base": _state(net.base),
        "impute": _digest({str(p.index): net.parity.impute(p.index) for p in space.arch.points}),
        "backup": _state(backup),
        "failout": None,
        "failout+parity": None,
    }
    if failout is not None:
        parts["failout"] = [
            failout.base.space.hash, _data_decisions(failout.base), _state(failout.base),
            _digest({str(k): v for k, v in failout.impute.items()}), failout.standin,
            failout.config.rate,
        ]  # fmt: skip
    if failout_parity is not None:
        folder, other, config = failout_parity
        parts["failout+parity"] = [
            folder.path.name, config["base"], other.space.hash,
            other.space.policy_to_json(other.base.policy)["policy"], _state(other),
        ]  # fmt: skip
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _number(value: Any, low: float, high: float) -> bool:
    """A JSON number (not a boolean) in [low, high] (NaN is not; huge integers are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def _figures_ok(figures: Any, g: int, p: int) -> bool:
    """Whether a cached method's figures have every field the report and the plots read,
    with the right shapes and ranges."""
    if not isinstance(figures, dict):
        return False
    rates = {str(f) for f in OVERALL_RATES}
    by_device, by_position, total = (
        figures.get("degraded_by_device"), figures.get("degraded_by_position"),
        figures.get("overall"),
    )  # fmt: skip
    extra = figures.get("extra_devices")
    return (
        all(_number(figures.get(k), 0, 1) for k in ("available_acc", "degraded_acc"))
        and all(_number(figures.get(k), 0, _RESOURCES) for k in ("extra_bytes", "extra_flops"))
        and (extra is None or _number(extra, 0, 1 << 20))
        and isinstance(by_device, list)
        and len(by_device) == g
        and all(_number(v, 0, 1) for v in by_device)
        and isinstance(by_position, list)
        and len(by_position) == g
        and all(
            isinstance(row, list) and len(row) == p and all(_number(v, 0, 1) for v in row)
            for row in by_position
        )
        and isinstance(total, dict)
        and set(total) == rates
        and all(_number(v, 0, 1) for v in total.values())
    )


def _check_cache_path(run: RunDir) -> None:
    """Refuse, before any work, what could be neither read nor replaced."""
    path = run / BASELINE_CACHE
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise CheckpointError(
            f"{shorten(str(path))}: is not a regular file (a link, a folder or a device); "
            "refusing to read or replace it (remove it)"
        )


def _entries(run: RunDir) -> dict[str, Any]:
    """The cache's entries by key; ``{}`` when there is no file, or a damaged or oversized
    one (never trusted: its figures are computed again and the file rewritten)."""
    path = run / BASELINE_CACHE
    if not path.is_file() or path.stat().st_size > _CACHE_BYTES:
        return {}
    try:
        cache = run.read_json(BASELINE_CACHE)
    except CheckpointError:
        return {}
    entries = cache.get("entries") if isinstance(cache, dict) else None
    return entries if isinstance(entries, dict) else {}


def _cached(
    entries: dict[str, Any], key: str, methods: set[str], g: int, p: int
) -> dict[str, Any] | None:
    """The cached baselines under ``key``; ``None`` when absent, and when the entry is
    damaged: another set of methods, a missing field, a wrong shape, a number out of range
    (they are then computed again and the entry rewritten)."""
    entry = entries.get(key)
    baselines = entry.get("baselines") if isinstance(entry, dict) else None
    if not isinstance(baselines, dict) or set(baselines) != methods:
        return None
    if not all(_figures_ok(baselines[m], g, p) for m in methods):
        return None
    return {m: baselines[m] for m in METHODS if m in methods}


def _store(run: RunDir, entries: dict[str, Any], key: str, baselines: dict[str, Any]) -> None:
    """Rewrite the cache with ``key``'s entry last, keeping the most recent others."""
    others = {k: v for k, v in entries.items() if k != key}
    kept = dict(list({**others, key: {"baselines": baselines}}.items())[-_CACHE_ENTRIES:])
    run.write_json(BASELINE_CACHE, {"version": 1, "entries": kept})


def _data_decisions(net: FrozenSepResNeXt) -> dict[str, Any]:
    kinds = {d.label: d.kind for d in net.space.decisions}
    policy = net.space.policy_to_json(net.policy)["policy"]
    return {k: v for k, v in policy.items() if kinds[k] not in ("encode", "encoder")}


def _load_failout_parity(
    folder: RunDir, base: FrozenSepResNeXt
) -> tuple[RunDir, Any, dict[str, Any]]:
    """A parity run whose base is a failout network of ``base``'s data decisions, and its
    config (refused otherwise)."""
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
    return folder, net, config


def _failout_parity(
    loaded: tuple[RunDir, Any, dict[str, Any]], data: DataSplits, accel: Accelerator
) -> dict[str, Any]:
    """The ``failout + parity`` figures of :func:`_load_failout_parity`'s run."""
    folder, net, config = loaded
    other = net.base
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
    validation split. The baselines' figures are kept in the run folder's
    :data:`BASELINE_CACHE` under a digest of everything they depend on, and reused by the
    parity runs of the same network (``baselines_reused``).

    ``failout``: a failout network (:func:`~snnas.train._failout.load_failout`), scored as
    the ``failout`` baseline (no extra device); ``failout_parity``: a parity run trained on
    it (``snnas parity train RUN --base FAILOUT``), scored as ``failout+parity``.
    """
    run = RunDir(parity_run.path.parent)
    _check_cache_path(run)  # before the work: the cache could not be written after it
    other_parity = None if failout_parity is None else _load_failout_parity(failout_parity, base)
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
    # The baselines do not depend on the parity devices: runs of one network share them.
    key = _baselines_key(net, data, accel, backup, failout, other_parity)
    methods = {"none", "impute", "replicate", "backup"}
    methods |= {"failout"} if failout is not None else set()
    methods |= {"failout+parity"} if other_parity is not None else set()
    entries = _entries(run)
    cached = _cached(entries, key, methods, space.groups, space.num_points)
    result["baselines_reused"] = cached is not None
    if cached is None:
        cached = _baselines(net, data, accel, backup, report.available, failout, other_parity)
    result["baselines"] = cached
    parity_run.write_json("eval.json", result)
    plot_by_device(result, parity_run / "by_device.png")
    plot_overall(result, parity_run / "overall.png")
    if not result["baselines_reused"]:
        _store(run, entries, key, cached)  # last: eval.json and the plots are written first
    return result


def _baselines(
    net: Any, data: DataSplits, accel: Accelerator, backup: nn.Module, available: float,
    failout: Failout | None, failout_parity: tuple[RunDir, Any, dict[str, Any]] | None,
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
        others["failout+parity"] = _failout_parity(failout_parity, data, accel)
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
