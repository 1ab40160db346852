"""Failout: the fine-tuned network trained further with whole data devices dropped at random.

ResiliNet's failout (Yousefpour et al., 2020) made to fit a Sep-ResNeXt: at every training
step each image, with probability ``rate``, gets one erasure position ``(j, p)`` drawn
uniformly among data devices ``1..G-1`` and every transmission point: device ``j`` is
unavailable from point ``p`` on, and every payload it would send from ``p`` on is replaced,
for its receivers, by zeros (``standin="zeros"``, ResiliNet's rule) or by the imputation
constants (``standin="mean"``: the per-channel training means of the fine-tuned network's
streams, calibrated once before failout training the way the parity code does it, then kept:
the network learns to live with these constants, which are saved with its weights). The
loss is device 0's cross-entropy on the labels; the optimiser Adam with a cosine schedule;
batch norm trains and is then recalibrated on clean training images after every epoch (the
fine-tuning's rule). Device 0 is never dropped: its stream feeds the head, so a network
without extra devices cannot answer without it, and an image it answers without device 0
does not exist.

The run folder (``RUN/failout`` by default) holds ``config.json``, ``metrics.jsonl``,
``last.pt`` (exact resume), ``best.pt`` (the epoch of best validation A_degraded: the base
network's weights under ``model`` and the constants under ``impute``) and ``final.json``.
``snnas parity eval`` scores it as the ``failout`` baseline, and ``snnas parity train RUN
--base failout`` trains parity devices against it (``failout + parity``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from snnas._numbers import Range
from snnas._run import Progress, RunDir, check_state, load_module_state, load_optimizer_state
from snnas.data import DataSplits
from snnas.errors import CheckpointError, ConfigError, shorten
from snnas.models import FrozenSepResNeXt
from snnas.models.parity import (
    NEVER,
    CodedNetwork,
    ParityStreams,
    calibrate_imputation,
    erasure_grid,
)
from snnas.space import space_from_text
from snnas.train._degraded import DegradedReport, degraded_report
from snnas.train._trainer import Accelerator, recalibrate_bn

__all__ = [
    "FAILOUT_FILES",
    "STANDINS",
    "Failout",
    "FailoutConfig",
    "failout_figures",
    "failout_loss",
    "failout_positions",
    "load_failout",
    "read_failout_identity",
    "sample_fail_at",
    "train_failout",
]

#: Everything a failout run folder holds.
FAILOUT_FILES = ("config.json", "metrics.jsonl", "last.pt", "best.pt", "final.json")
#: What replaces a dropped device's payloads (``CodedNetwork.standin`` modes).
STANDINS = ("mean", "zeros")
METHOD = "failout"
_LAST = "last.pt"
_BEST = "best.pt"
_RNG_STRIDE = 1_000_003  # per-epoch generator seeds: seed * stride + epoch

EPOCHS = Range(1, 10_000, integer=True)
BATCH = Range(1, 65_536, integer=True)
LR = Range(0, 10, low_open=True)
RATE = Range(0, 1, low_open=True)
CALIBRATION = Range(1, 10_000, integer=True)
SEED = Range(0, 2**31 - 1, integer=True)


@dataclass(frozen=True)
class FailoutConfig:
    """Everything that determines a failout run (saved with its checkpoints)."""

    epochs: int = 4  # the parity training's budget (ParityTrainConfig.epochs)
    batch_size: int = 32
    lr: float = 1e-3  # Adam, cosine decay to 0 (the parity devices' rate)
    rate: float = 0.5  # probability that an image has one device dropped
    standin: str = "mean"  # "mean": the imputation constants; "zeros": ResiliNet's zeros
    augment: bool = True
    calibration_batches: int = 8  # batches of 256 training images (imputation, batch norm)
    seed: int = 0
    train_images: int | None = None  # a seeded subset of the training split (None: all of it)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FailoutConfig:
        """Inverse of :meth:`to_json` (unknown keys ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def check(self) -> None:
        """Refuse meaningless values, naming the option (``ConfigError``)."""
        checks = (
            ("epochs", "--epochs", EPOCHS),
            ("batch_size", "--batch-size", BATCH),
            ("lr", "--lr", LR),
            ("rate", "--failout-rate", RATE),
            ("calibration_batches", "calibration_batches", CALIBRATION),
            ("seed", "--seed", SEED),
        )
        for name, option, valid in checks:
            problem = valid.problem(getattr(self, name))
            if problem is not None:
                raise ConfigError(None, option, problem, getattr(self, name))
        if self.train_images is not None and (
            isinstance(self.train_images, bool)
            or not isinstance(self.train_images, int)
            or self.train_images < 1
        ):
            raise ConfigError(None, "--train-images", "an integer >= 1", self.train_images)
        if self.standin not in STANDINS:
            raise ConfigError(None, "--standin", "'mean' or 'zeros'", self.standin)
        if not isinstance(self.augment, bool):
            raise ConfigError(None, "augment", "true or false", self.augment)


def failout_positions(groups: int, points: int) -> list[tuple[int, int]]:
    """The erasure positions failout draws from: every device but device 0, every point."""
    return [(j, p) for j, p in erasure_grid(groups, points) if j != 0]


def sample_fail_at(
    n: int, groups: int, points: int, rate: float, generator: torch.Generator
) -> Tensor:
    """``(n, G)`` long: for each image, with probability ``rate``, one position of
    :func:`failout_positions` (the device's entry is the point it is lost from), else
    ``NEVER`` everywhere (normal operation)."""
    positions = failout_positions(groups, points)
    if not positions:
        raise ValueError("failout needs at least two data devices")
    table = torch.tensor(positions, dtype=torch.long)  # (K, 2): device, point
    dropped = torch.rand(n, generator=generator) < rate  # (n,)
    pick = torch.randint(len(positions), (n,), generator=generator)  # (n,)
    fail_at = torch.full((n, groups), NEVER, dtype=torch.long)  # (n, G)
    rows = torch.nonzero(dropped).flatten()
    fail_at[rows, table[pick[rows], 0]] = table[pick[rows], 1]
    return fail_at


def failout_loss(net: CodedNetwork, x: Tensor, y: Tensor, fail_at: Tensor) -> Tensor:
    """Device 0's cross-entropy with the dropped devices' payloads replaced by
    ``net.standin`` (``fail_at``: ``(N, G)``, see :func:`sample_fail_at`)."""
    out = net(x, None, fail_at)
    return F.cross_entropy(out.device_logits, y)


def failout_figures(report: DegradedReport) -> dict[str, Any]:
    """A_available and A_degraded of a network without extra devices from its report:
    device 0 answers with the stand-ins; nobody answers when device 0 is lost (0)."""
    rows = [list(r) for r in report.device]
    rows[0] = [0.0] * len(rows[0])
    return {
        "available_acc": report.available,
        "degraded_acc": sum(map(sum, rows)) / sum(map(len, rows)),
        "degraded_by_device": [sum(r) / len(r) for r in rows],
        "degraded_by_position": rows,
    }


@dataclass
class Failout:
    """A failout-trained network: its weights, the constants it was trained with, its rule."""

    base: FrozenSepResNeXt
    impute: dict[int, Tensor]  # point -> (G, w)
    standin: str
    config: FailoutConfig

    def coded(self) -> CodedNetwork:
        """A coded network over ``base`` whose data devices replace a lost device's payloads
        by this run's stand-ins (its parity devices untouched: they are not used)."""
        net = CodedNetwork(self.base, ParityStreams(self.base.space))
        net.to(next(self.base.parameters()).device)
        with torch.no_grad():
            for q, value in self.impute.items():
                net.parity.impute(q).copy_(value)
        net.standin = self.standin
        return net.eval()


def _impute_state(net: CodedNetwork) -> dict[str, Tensor]:
    return {
        str(p.index): net.parity.impute(p.index).detach().cpu().clone()
        for p in net.space.arch.points
    }


def _load_impute(net: CodedNetwork, saved: Any, path: Any) -> None:
    points = [p.index for p in net.space.arch.points]
    if not isinstance(saved, dict) or sorted(saved) != sorted(str(q) for q in points):
        raise CheckpointError(f"{shorten(str(path))}: corrupt checkpoint (imputation constants)")
    with torch.no_grad():
        for q in points:
            value, target = saved[str(q)], net.parity.impute(q)
            if not isinstance(value, Tensor) or value.shape != target.shape:
                raise CheckpointError(
                    f"{shorten(str(path))}: the imputation constants of point {q} do not "
                    "match this network"
                )
            if not bool(torch.isfinite(value).all()):
                raise CheckpointError(f"{shorten(str(path))}: non-finite imputation constants")
            target.copy_(value)


def _data_policy(base: FrozenSepResNeXt) -> dict[str, Any]:
    """The data network's decisions (the parity ones do not change its weights)."""
    parity = {d.label for d in base.space.decisions if d.kind in ("encode", "encoder")}
    policy = base.space.policy_to_json(base.policy)["policy"]
    return {k: v for k, v in policy.items() if k not in parity}


def _identity(base: FrozenSepResNeXt, config: FailoutConfig, dataset: str) -> dict[str, Any]:
    return {
        "method": METHOD,
        "space_hash": base.space.hash,
        "policy": base.space.policy_to_json(base.policy)["policy"],
        "data_policy": _data_policy(base),
        "dataset": dataset,
        "config": config.to_json(),
    }


def _first(batches: Iterable[Any], n: int) -> Iterator[Any]:
    for i, item in enumerate(batches):
        if i == n:
            return
        yield item


def _validate(
    net: CodedNetwork, val: list[tuple[Tensor, Tensor]], accel: Accelerator
) -> dict[str, Any]:
    return failout_figures(degraded_report(net, val, accel))


def train_failout(
    base: FrozenSepResNeXt,
    data: DataSplits,
    config: FailoutConfig,
    run: RunDir,
    *,
    resume: bool = False,
    accel: Accelerator | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train ``base`` (a fine-tuned network, changed in place) with failout into ``run``.

    Writes ``last.pt`` every epoch, ``best.pt`` at the epoch of best validation
    A_degraded (ties: the earlier), ``metrics.jsonl`` and ``final.json``; returns the final
    metrics (validation figures only: the test split is ``snnas parity eval``'s).
    """
    config.check()
    accel = accel or Accelerator.pick()
    space = base.space
    if space.groups < 2:
        raise ConfigError(space.config.path, "split.groups", "at least 2 for failout", 1)
    data.check_space(space)
    data = data.subset("train", config.train_images, config.seed)
    net = CodedNetwork(base, ParityStreams(space)).to(accel.device)
    net.standin = config.standin
    for p in net.parity.parameters():
        p.requires_grad_(False)  # only the data network trains
    identity = _identity(base, config, data.name)
    run.create()
    state: dict[str, Any] = {"epoch": 0, "metrics": [], "best": None, "before": None}
    optimizer = torch.optim.Adam(base.parameters(), lr=config.lr)
    calib_loader = data.loader("train", 256, shuffle=True, seed=config.seed)
    calib = [accel.batch(x, y) for x, y in _first(calib_loader, config.calibration_batches)]
    val = [accel.batch(x, y) for x, y in data.loader("val", 256)]
    if run.has_checkpoint(_LAST):
        if not resume:
            raise CheckpointError(
                f"{run.path} already holds a failout run: pass --resume to continue it"
            )
        saved = run.load_checkpoint(_LAST)
        _check_saved(saved, run / _LAST, config.epochs)
        _check_same(saved, identity, run)
        load_module_state(base, saved["model"], run / _LAST)
        _load_impute(net, saved["impute"], run / _LAST)
        load_optimizer_state(optimizer, saved["optimizer"], run / _LAST)
        state = {k: saved[k] for k in state}
    else:
        torch.manual_seed(config.seed)
        net.eval()
        calibrate_imputation(net, calib)  # the fine-tuned network's means, kept from here on
        state["before"] = _validate(net, val, accel)
    run.write_json("config.json", {**identity, "space_toml": space.config.source})

    loader = data.loader(
        "train", config.batch_size, shuffle=True, seed=config.seed, augment=config.augment
    )
    steps = len(loader)
    g, points = space.groups, space.num_points
    for epoch in range(int(state["epoch"]), config.epochs):
        loader.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.seed * _RNG_STRIDE + epoch)
        tic = time.perf_counter()
        loss_sum = torch.zeros((), device=accel.device)
        dropped = seen = 0
        net.train()
        net.parity.eval()  # not used by the loss; its statistics stay
        for step, (x, y) in enumerate(loader):
            t = (epoch * steps + step) / (config.epochs * steps)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * t))
            x, y = accel.batch(x, y)
            fail_at = sample_fail_at(y.numel(), g, points, config.rate, generator)  # (N, G)
            dropped += int((fail_at < NEVER).any(1).sum())
            seen += y.numel()
            with accel.autocast():
                loss = failout_loss(net, x, y, fail_at.to(accel.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            if progress and (step % 10 == 9 or step + 1 == steps):
                progress("train", step + 1, steps, {"epoch": epoch + 1})
        recalibrate_bn(base, calib, accel)  # normal operation's statistics, as fine-tuning
        figures = _validate(net, val, accel)
        record = {
            "epoch": epoch + 1,
            "train_loss": float(loss_sum) / steps,
            "dropped_share": dropped / max(seen, 1),
            "val_available_acc": figures["available_acc"],
            "val_degraded_acc": figures["degraded_acc"],
            "time_s": time.perf_counter() - tic,
        }
        state["metrics"].append(record)
        state["epoch"] = epoch + 1
        if state["best"] is None or record["val_degraded_acc"] > state["best"]["val_degraded_acc"]:
            state["best"] = dict(record)
            run.save_checkpoint(
                _BEST,
                {**identity, "model": base.state_dict(), "impute": _impute_state(net),
                 "epoch": epoch + 1, "val": record},
            )  # fmt: skip
        run.write_jsonl("metrics.jsonl", state["metrics"])
        run.save_checkpoint(
            _LAST,
            {**identity, **state, "model": base.state_dict(), "impute": _impute_state(net),
             "optimizer": optimizer.state_dict()},
        )  # fmt: skip
        if progress:
            progress("epoch", epoch + 1, config.epochs, record)
    best = state["best"]
    final = {
        "method": METHOD,
        "epochs": config.epochs,
        "best_epoch": best["epoch"],
        "val_available_acc": best["val_available_acc"],
        "val_degraded_acc": best["val_degraded_acc"],
        "val_before": {k: state["before"][k] for k in ("available_acc", "degraded_acc")},
        "rate": config.rate,
        "standin": config.standin,
        "train_time_s": sum(m["time_s"] for m in state["metrics"]),
    }
    run.write_json("final.json", final)
    return final


#: What one epoch's record in a failout checkpoint must hold.
_RECORD = {"epoch": int, "val_available_acc": float, "val_degraded_acc": float,
           "time_s": float}  # fmt: skip


def _check_saved(saved: Mapping[str, Any], path: Any, epochs: int) -> None:
    """Refuse a ``last.pt`` whose entries are missing, of the wrong type or inconsistent."""
    check_state(path, saved, {"method": str, "model": dict, "impute": dict, "optimizer": dict,
                              "epoch": int, "metrics": list, "best": dict, "before": dict,
                              "config": dict})  # fmt: skip
    if saved["method"] != METHOD:
        raise CheckpointError(f"{shorten(str(path))}: not a failout checkpoint")
    epoch, metrics = saved["epoch"], saved["metrics"]
    if not 1 <= epoch <= epochs or len(metrics) != epoch:
        raise CheckpointError(
            f"{shorten(str(path))}: corrupt checkpoint (epoch {shorten(epoch)} with "
            f"{len(metrics)} epochs of metrics, of {epochs})"
        )
    for record in [*metrics, saved["best"]]:
        if not isinstance(record, dict):
            raise CheckpointError(
                f"{shorten(str(path))}: corrupt checkpoint (metrics are not records)"
            )
        check_state(path, record, _RECORD)
    check_state(path, saved["before"], {"available_acc": float, "degraded_acc": float})


def _check_same(saved: Mapping[str, Any], identity: Mapping[str, Any], run: RunDir) -> None:
    for key in ("space_hash", "policy", "dataset"):
        if saved.get(key) != identity[key]:
            raise CheckpointError(
                f"{shorten(str(run.path))}: cannot resume: the checkpoint's {key} is "
                f"{shorten(saved.get(key), 100, quote=True)}, not {shorten(identity[key], 100)}"
            )
    old = FailoutConfig.from_json(saved["config"]).to_json()
    new = identity["config"]
    diff = [f"{k}: {old[k]!r} != {new[k]!r}" for k in old if k != "epochs" and old[k] != new[k]]
    if diff:
        raise CheckpointError(
            f"{shorten(str(run.path))}: cannot resume with another configuration "
            f"({shorten('; '.join(diff), 200)})"
        )


def read_failout_identity(run: RunDir) -> dict[str, Any]:
    """A failout folder's ``config.json``, checked to be one (``CheckpointError`` if not)."""
    path = run / "config.json"
    if not run.exists():
        raise CheckpointError(
            f"{shorten(str(run.path))}: no failout run (no such folder; train it with "
            "snnas parity train RUN --method failout)"
        )
    if not path.is_file():
        raise CheckpointError(f"{shorten(str(run.path))}: not a failout run (no config.json)")
    config = run.read_json("config.json")
    if not isinstance(config, dict) or config.get("method") != METHOD:
        raise CheckpointError(f"{shorten(str(path))}: not a failout run")
    if not isinstance(config.get("space_toml"), str):
        raise CheckpointError(f"{shorten(str(path))}: no space_toml")
    return config


def load_failout(run: RunDir, base: FrozenSepResNeXt | None = None) -> Failout:
    """The failout network of ``run``'s ``best.pt``.

    ``base`` (a fine-tuned network, maybe under another space with the same network and
    other parity decisions) receives the weights; it must have the same data decisions.
    Without it the network is rebuilt from the space and policy the run recorded.
    """
    config = read_failout_identity(run)
    path = run / _BEST
    if base is None:
        space = space_from_text(config["space_toml"], str(run / "config.json"))
        if not isinstance(config.get("policy"), dict):
            raise CheckpointError(f"{shorten(str(run / 'config.json'))}: no policy")
        base = FrozenSepResNeXt(space, space.policy_from_json(config["policy"], str(path)))
    saved = run.load_checkpoint(_BEST)
    check_state(path, saved, {"method": str, "model": dict, "impute": dict, "config": dict,
                              "data_policy": dict})  # fmt: skip
    if saved["method"] != METHOD:
        raise CheckpointError(f"{shorten(str(path))}: not a failout checkpoint")
    if saved["data_policy"] != _data_policy(base):
        raise CheckpointError(
            f"{shorten(str(path))}: trained for another data policy than this run's network"
        )
    failout_config = FailoutConfig.from_json(saved["config"])
    try:
        failout_config.check()
    except ConfigError:
        raise CheckpointError(f"{shorten(str(path))}: corrupt checkpoint (its config)") from None
    load_module_state(base, saved["model"], path)
    probe = CodedNetwork(base, ParityStreams(base.space))
    _load_impute(probe, saved["impute"], path)
    impute = {p.index: probe.parity.impute(p.index).clone() for p in base.space.arch.points}
    return Failout(base.eval(), impute, failout_config.standin, failout_config)
