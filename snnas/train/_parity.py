"""Training the parity devices by distillation, every erasure position in every batch.

The base network is frozen (a fine-tuned :class:`FrozenSepResNeXt`, or the supernet so that a
search can score parity choices). Parity devices start as copies of their data devices
(:meth:`ParityStreams.init_from`) and learn, with Adam and a cosine schedule:

* parity device 0: the mean squared error between its logits and the base network's logits
  in normal operation (ParM's loss: the quantity its answer stands in for), averaged over
  every erasure position (j, p);
* parity device k >= 1: the relative squared error between its stream and data device k's
  normal-operation stream at every point where it stands in for device k (what its payloads
  replace).

An optional joint phase then fine-tunes base and parity devices together (the base keeps its
own cross-entropy in normal operation). Checkpoints are chosen on validation only.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnas._run import (
    Progress,
    RunDir,
    check_state,
    load_module_state,
    load_optimizer_state,
)
from snnas.data import DataSplits
from snnas.errors import CheckpointError, ConfigError, shorten
from snnas.models import FrozenSepResNeXt, SepResNeXt
from snnas.models.parity import (
    CodedNetwork,
    ParityStreams,
    calibrate_imputation,
    erasure_grid,
    fail_at_tensor,
)
from snnas.space import Policy
from snnas.train._degraded import DegradedReport, choose_answers, degraded_report
from snnas.train._trainer import Accelerator, batch_statistics

__all__ = [
    "PARITY_FORMAT",
    "ParityTrainConfig",
    "load_parity",
    "load_parity_run",
    "parity_loss",
    "train_parity",
]

PARITY_FORMAT = "snnas-parity-v1"
_LAST = "last.pt"
_BEST = "best.pt"
_POLICY_SEED = 104_729  # the supernet's policy stream for parity training
_VAL_POLICIES = 4  # supernet: random policies the validation figure averages over


@dataclass(frozen=True)
class ParityTrainConfig:
    """Everything that determines a parity training run (saved with its checkpoints)."""

    epochs: int = 4  # passes over the training split with the base frozen
    batch_size: int = 32  # images per step; each is repeated once per erasure position
    lr: float = 1e-3  # Adam, cosine decay to 0 over the frozen phase
    joint_epochs: int = 0  # then base and parity devices together (0: none)
    joint_lr: float = 1e-4  # Adam, cosine, joint phase
    shadow_weight: float = 1.0  # r >= 2: weight of the stand-in streams' relative error
    label_weight: float = 0.0  # parity device 0's cross-entropy on the labels (0: distillation)
    augment: bool = True  # the training augmentation of the dataset
    calibration_batches: int = 8  # batches of 256 training images for the imputation means
    init: str = "shadow"  # "shadow": copies of their data devices; "scratch": random (ablation)
    seed: int = 0
    train_images: int | None = None  # a seeded subset of the training split (None: all of it)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ParityTrainConfig:
        """Inverse of :meth:`to_json` (unknown keys ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def check(self) -> None:
        """Refuse meaningless values, naming the option."""
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    None, f"--{name.replace('_', '-')}", "an integer >= 1", getattr(self, name)
                )
        if self.init not in ("shadow", "scratch"):
            raise ConfigError(None, "init", "'shadow' or 'scratch'", self.init)
        if self.label_weight < 0:
            raise ConfigError(None, "--label-weight", "a number >= 0", self.label_weight)
        if self.joint_epochs < 0:
            raise ConfigError(None, "--joint-epochs", "an integer >= 0", self.joint_epochs)
        if self.train_images is not None and (
            isinstance(self.train_images, bool)
            or not isinstance(self.train_images, int)
            or self.train_images < 1
        ):
            raise ConfigError(None, "--train-images", "an integer >= 1", self.train_images)
        for name in ("lr", "joint_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(
                    None, f"--{name.replace('_', '-')}", "a positive number", getattr(self, name)
                )


def parity_loss(
    net: CodedNetwork,
    x: Tensor,
    policy: Mapping[str, Any] | None,
    shadow_weight: float = 1.0,
    labels: Tensor | None = None,
    *,
    joint: bool = False,
    label_weight: float = 0.0,
) -> Tensor:
    """The distillation loss of one batch over every erasure position (module docstring).

    ``joint``: the base trains too; its cross-entropy in normal operation on ``labels`` is
    added and the targets are detached from the base. ``label_weight``: parity device 0's
    cross-entropy on ``labels`` at every position is added with this weight (0: pure
    distillation, the default).
    """
    if (joint or label_weight) and labels is None:
        raise ValueError("labels are needed for the joint phase and for label_weight > 0")
    space = net.space
    g, points, r = space.groups, space.num_points, net.parity.r
    positions = erasure_grid(g, points)
    b = x.shape[0]
    if joint:
        clean = net(x, policy)
    else:
        with torch.no_grad():
            clean = net(x, policy)
    fail_at = fail_at_tensor(positions, g, b, x.device)
    out = net(x.repeat(len(positions), 1, 1, 1), policy, fail_at)
    target = clean.device_logits.detach().repeat(len(positions), 1)
    loss = F.mse_loss(out.parity_logits, target)  # parity device 0 stands in for the answer
    if r > 1 and shadow_weight > 0:
        terms = []
        for q, shadow in out.shadows.items():
            reference = clean.streams[q].detach().repeat(len(positions), 1, 1, 1, 1)
            for k in range(1, r):
                standing_in = fail_at[:, k] <= q  # (N,)
                if bool(standing_in.any()):
                    est, ref = shadow[standing_in, k], reference[standing_in, k]
                    terms.append(((est - ref) ** 2).mean() / (ref**2).mean().clamp_min(1e-8))
        if terms:
            loss = loss + shadow_weight * torch.stack(terms).mean()
    if label_weight > 0:
        assert labels is not None
        repeated = labels.repeat(len(positions))
        loss = loss + label_weight * F.cross_entropy(out.parity_logits, repeated)
    if joint:
        assert labels is not None
        loss = loss + F.cross_entropy(clean.logits, labels)
    return loss


def _first(batches: Iterable[Any], n: int) -> Iterator[Any]:
    for i, item in enumerate(batches):
        if i == n:
            return
        yield item


def _frozen_bn(module: nn.Module) -> None:
    """Batch norm of a fine-tuned network keeps its running statistics (eval mode)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


def _policies(net: CodedNetwork, seed: int) -> Iterator[Policy | None]:
    """The policy of every step: the frozen base's own, or random ones for the supernet."""
    if isinstance(net.base, FrozenSepResNeXt):
        while True:
            yield None
    rng = random.Random(seed)
    while True:
        yield net.space.sample(rng)


def _validation_policies(net: CodedNetwork) -> list[Policy | None]:
    if isinstance(net.base, FrozenSepResNeXt):
        return [None]
    rng = random.Random(_POLICY_SEED + 1)
    return [net.space.sample(rng) for _ in range(_VAL_POLICIES)]


def _validate(
    net: CodedNetwork, val: list[tuple[Tensor, Tensor]], accel: Accelerator
) -> tuple[float, float, list[bool], DegradedReport]:
    """Validation A_available and A_degraded (answerers chosen on this same split)."""
    supernet = isinstance(net.base, SepResNeXt)
    reports = [
        degraded_report(net, val, accel, p, bn="batch" if supernet else "running")
        for p in _validation_policies(net)
    ]
    report = reports[0]
    if len(reports) > 1:  # the supernet: average the grids over the validation policies
        report = DegradedReport(
            sum(r.available for r in reports) / len(reports),
            _mean_grid([r.parity for r in reports]),
            _mean_grid([r.device for r in reports]),
            report.answers,
            report.images,
        )
    answers = choose_answers(report)
    report.answers = answers
    return report.available, report.degraded, answers, report


def _mean_grid(grids: list[list[list[float]]]) -> list[list[float]]:
    return [
        [sum(g[j][p] for g in grids) / len(grids) for p in range(len(grids[0][0]))]
        for j in range(len(grids[0]))
    ]


def _identity(
    net: CodedNetwork, config: ParityTrainConfig, policy: Policy | None, base: str | None
) -> dict[str, Any]:
    return {
        "space_hash": net.space.hash,
        "config": config.to_json(),
        "policy": None if policy is None else net.space.policy_to_json(policy)["policy"],
        "supernet": isinstance(net.base, SepResNeXt),
        "base": base,
    }


def train_parity(
    net: CodedNetwork,
    data: DataSplits,
    config: ParityTrainConfig,
    run: RunDir,
    *,
    resume: bool = False,
    accel: Accelerator | None = None,
    progress: Progress | None = None,
    base: str | None = None,
    imputation: Mapping[int, Tensor] | None = None,
) -> dict[str, Any]:
    """Train ``net``'s parity devices into ``run`` (``last.pt`` every epoch, ``best.pt`` the
    epoch with the best validation A_degraded, ``metrics.jsonl``, ``final.json``).

    ``net.base`` is frozen for ``config.epochs`` epochs, then trained jointly for
    ``config.joint_epochs``. Returns the final metrics (validation figures only).
    ``base`` names where the base network comes from (recorded, checked on resume; ``None``:
    the run's fine-tuned network or supernet, e.g. ``"failout"`` for a failout folder), and
    ``imputation`` (point -> (G, w)) gives the imputation constants instead of calibrating
    them (a failout network keeps the constants it was trained with).
    """
    config.check()
    accel = accel or Accelerator.pick()
    data.check_space(net.space)
    data = data.subset("train", config.train_images, config.seed)
    net.to(accel.device)
    policy = net.base.policy if isinstance(net.base, FrozenSepResNeXt) else None
    identity = _identity(net, config, policy, base)
    run.create()
    total_epochs = config.epochs + config.joint_epochs
    state: dict[str, Any] = {"epoch": 0, "metrics": [], "best": None}
    saved: dict[str, Any] | None = None
    if run.has_checkpoint(_LAST):
        if not resume:
            raise CheckpointError(
                f"{run.path} already holds a parity run: pass --resume to continue it"
            )
        saved = run.load_checkpoint(_LAST)
        _check_saved(saved, run / _LAST, total_epochs)
        _check_same(saved, identity, run)
        load_module_state(net, saved["model"], run / _LAST)
        state = {k: saved[k] for k in state}
    else:
        torch.manual_seed(config.seed)
        if config.init == "shadow":
            net.parity.init_from(net.base)
        else:  # the ablation: random blocks and head, the stem still a copy (it is exact)
            net.parity.stem.load_state_dict(net.base.stem.state_dict())
        if imputation is not None:
            with torch.no_grad():
                for q, value in imputation.items():
                    net.parity.impute(q).copy_(value)
        else:
            calib = data.loader("train", 256, shuffle=True, seed=config.seed)
            batches = [accel.batch(x, y) for x, y in _first(calib, config.calibration_batches)]
            net.eval()
            with batch_statistics(net) if policy is None else contextlib.nullcontext():
                calibrate_imputation(net, batches, _validation_policies(net))
    # The space file's text, so ``snnas parity eval`` rebuilds the same network.
    run.write_json("config.json", {**identity, "space_toml": net.space.config.source})

    val = [accel.batch(x, y) for x, y in data.loader("val", 256)]
    loader = data.loader(
        "train", config.batch_size, shuffle=True, seed=config.seed, augment=config.augment
    )
    steps = len(loader)
    optimizer: torch.optim.Optimizer | None = None
    phase: bool | None = None
    for epoch in range(int(state["epoch"]), total_epochs):
        joint = epoch >= config.epochs
        if phase != joint:  # a new phase: what trains, and a fresh optimizer
            phase = joint
            for p in (*net.base.parameters(), *net.parity.stem.parameters()):
                p.requires_grad_(joint)  # the parity stem is a copy of the data stem
            trainable = [p for p in net.parameters() if p.requires_grad]
            optimizer = torch.optim.Adam(trainable, lr=config.joint_lr if joint else config.lr)
            if saved is not None and bool(saved["joint"]) == joint:
                load_optimizer_state(optimizer, saved["optimizer"], run / _LAST)
        assert optimizer is not None
        first, length = (config.epochs, config.joint_epochs) if joint else (0, config.epochs)
        base_lr = config.joint_lr if joint else config.lr
        loader.set_epoch(epoch)
        policies = _policies(net, config.seed * _POLICY_SEED + epoch)
        tic = time.perf_counter()
        loss_sum = torch.zeros((), device=accel.device)
        net.detach_base = not joint
        for step, (x, y) in enumerate(loader):
            t = (epoch - first) * steps + step
            for group in optimizer.param_groups:
                group["lr"] = base_lr * 0.5 * (1 + math.cos(math.pi * t / (length * steps)))
            x, y = accel.batch(x, y)
            net.train()
            if policy is not None:
                _frozen_bn(net)  # a fine-tuned base and its copies keep their statistics
            context = batch_statistics(net.base) if policy is None else contextlib.nullcontext()
            with context, accel.autocast():
                loss = parity_loss(
                    net,
                    x,
                    next(policies),
                    config.shadow_weight,
                    y,
                    joint=joint,
                    label_weight=config.label_weight,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            if progress and (step % 10 == 9 or step + 1 == steps):
                info = {"epoch": epoch + 1, "loss": float(loss_sum) / (step + 1)}
                progress("train", step + 1, steps, info)
        net.detach_base = False
        available, degraded, answers, _ = _validate(net, val, accel)
        record = {
            "epoch": epoch + 1,
            "phase": "joint" if joint else "frozen",
            "train_loss": float(loss_sum) / steps,
            "val_available_acc": available,
            "val_degraded_acc": degraded,
            "answers": ["parity" if a else "device0" for a in answers],
            "time_s": time.perf_counter() - tic,
        }
        state["metrics"].append(record)
        state["epoch"] = epoch + 1
        if state["best"] is None or degraded > state["best"]["val_degraded_acc"]:
            net.parity.answers.copy_(torch.tensor(answers))
            state["best"] = dict(record)
            run.save_checkpoint(
                _BEST, {**identity, "model": net.state_dict(), "epoch": epoch + 1, "val": record}
            )
        run.write_jsonl("metrics.jsonl", state["metrics"])
        run.save_checkpoint(
            _LAST,
            {
                **identity,
                **state,
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "joint": joint,
            },
        )
        saved = None
        if progress:
            progress("epoch", epoch + 1, total_epochs, record)
    final = {
        "epochs": total_epochs,
        "best_epoch": state["best"]["epoch"],
        "val_available_acc": state["best"]["val_available_acc"],
        "val_degraded_acc": state["best"]["val_degraded_acc"],
        "answers": state["best"]["answers"],
        "train_time_s": sum(m["time_s"] for m in state["metrics"]),
    }
    run.write_json("final.json", final)
    return final


#: What one epoch's record in a parity checkpoint must hold.
_RECORD = {"epoch": int, "val_available_acc": float, "val_degraded_acc": float,
           "answers": list, "time_s": float}  # fmt: skip


def _check_saved(saved: Mapping[str, Any], path: Any, total_epochs: int) -> None:
    """Refuse a ``last.pt`` whose entries are missing, of the wrong type or inconsistent."""
    check_state(path, saved, {"model": dict, "optimizer": dict, "epoch": int, "metrics": list,
                              "best": dict, "joint": bool, "config": dict})  # fmt: skip
    epoch, metrics = saved["epoch"], saved["metrics"]
    if not 1 <= epoch <= total_epochs or len(metrics) != epoch:
        raise CheckpointError(
            f"{shorten(str(path))}: corrupt checkpoint (epoch {shorten(epoch)} with "
            f"{len(metrics)} epochs of metrics, of {total_epochs})"
        )
    for record in [*metrics, saved["best"]]:
        if not isinstance(record, dict):
            raise CheckpointError(
                f"{shorten(str(path))}: corrupt checkpoint (metrics are not records)"
            )
        check_state(path, record, _RECORD)


def _check_same(saved: Mapping[str, Any], identity: Mapping[str, Any], run: RunDir) -> None:
    for key in ("space_hash", "policy", "supernet", "base"):
        if saved.get(key) != identity[key]:
            raise CheckpointError(
                f"{run.path}: cannot resume: the checkpoint's {key} is {saved.get(key)!r}, "
                f"not {identity[key]!r}"
            )
    old = ParityTrainConfig.from_json(saved["config"]).to_json()
    new = identity["config"]
    diff = [
        f"{k}: {old[k]!r} != {new[k]!r}"
        for k in old
        if k not in ("epochs", "joint_epochs") and old[k] != new[k]
    ]
    if diff:
        raise CheckpointError(
            f"{run.path}: cannot resume with another configuration ({'; '.join(diff)})"
        )


def load_parity_run(run: RunDir) -> CodedNetwork:
    """The coded network of a parity run folder (``config.json`` and ``best.pt``), rebuilt
    from the space text and policy it recorded; its base's weights come from ``best.pt``."""
    from snnas.space import space_from_text

    path = run / "config.json"
    config = run.read_json("config.json")
    if not isinstance(config, dict):
        raise CheckpointError(f"{shorten(str(path))}: expected a JSON object")
    text = config.get("space_toml")
    if not isinstance(text, str):
        raise CheckpointError(f"{shorten(str(path))}: no space_toml")
    space = space_from_text(text, str(path))
    base: SepResNeXt | FrozenSepResNeXt
    if config.get("supernet") is True:
        base = SepResNeXt(space)
    else:
        if not isinstance(config.get("policy"), dict):
            raise CheckpointError(f"{shorten(str(path))}: no policy (not a parity run?)")
        base = FrozenSepResNeXt(space, space.policy_from_json(config["policy"], f"{path}: policy"))
    return load_parity(run, base)


def load_parity(run: RunDir, base: SepResNeXt | FrozenSepResNeXt) -> CodedNetwork:
    """The coded network of a parity run's ``best.pt`` over ``base`` (weights only; the base's
    own weights come from the checkpoint too, which matters after a joint phase)."""
    saved = run.load_checkpoint(_BEST)
    check_state(run / _BEST, saved, {"model": dict})
    if saved.get("space_hash") != base.space.hash:
        raise CheckpointError(
            f"{run.path / _BEST}: made for space hash {saved.get('space_hash')!r}, "
            f"not {base.space.hash!r}"
        )
    net = CodedNetwork(base, ParityStreams(base.space))
    load_module_state(net, saved["model"], run / _BEST)
    return net.eval()
