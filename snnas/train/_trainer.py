"""Training runs: a plain ResNeXt, a fixed-policy Sep-ResNeXt, or the supernet.

Determinism: the weights are initialised from ``seed``; the data order, the augmentation and
the supernet's policies of epoch ``e`` come from generators seeded by ``(seed, e)``. A run
resumed from the checkpoint of epoch ``e`` therefore continues exactly as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
import statistics
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from snnas._run import (
    Progress,
    RunDir,
    check_state,
    load_module_state,
    load_optimizer_state,
)
from snnas.data import DataSplits
from snnas.errors import CheckpointError, ConfigError, SnnasError, TrainingError, UsageError
from snnas.models import ResNeXt, SepResNeXt
from snnas.space import Policy, SearchSpace
from snnas.train._config import TrainConfig, check_config
from snnas.train._dist import global_batch_norm, setup

__all__ = [
    "Accelerator",
    "StepSchedule",
    "TrainResult",
    "batch_statistics",
    "evaluate",
    "recalibrate_bn",
    "train",
]

CHECKPOINT = "last.pt"
#: What a training checkpoint holds, checked before any of it is used.
CHECKPOINT_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "config": dict,
    "space_hash": str,
    "epoch": int,
    "model": dict,
    "optimizer": dict,
    "metrics": list,
}
_DEVICE = re.compile(r"cpu|cuda(:\d{1,3})?|mps")
_POLICY_SEED = 7_919  # mixes the run seed into the supernet's policy stream
_EVAL_SEED = 12_345  # the random policies scored at evaluation: the same for every run


@dataclass(frozen=True)
class Accelerator:
    """Where and how tensors run: the device, mixed precision and memory format."""

    device: torch.device

    @classmethod
    def pick(cls, requested: str | None = None) -> Accelerator:
        """``requested`` ("cpu", "cuda", "cuda:1"), or a GPU when one is present."""
        if requested is None:
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        if not isinstance(requested, str) or not _DEVICE.fullmatch(requested):
            raise UsageError("--device", "cpu, cuda, cuda:N or mps", requested)
        device = torch.device(requested)
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError(None, "--device", "an available device (no GPU here)", requested)
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise ConfigError(
                    None,
                    "--device",
                    f"one of the {torch.cuda.device_count()} GPUs (cuda:0 ...)",
                    requested,
                )
            torch.backends.cudnn.benchmark = True
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ConfigError(None, "--device", "an available device (no MPS here)", requested)
        return cls(device)

    @property
    def cuda(self) -> bool:
        """Whether this is a GPU."""
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bfloat16 autocast on a GPU, nothing on the CPU."""
        if self.cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Move a batch to the device (channels-last on a GPU)."""
        if self.cuda:
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            return x, y.to(self.device, non_blocking=True)
        return x, y

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move a model to the device (channels-last on a GPU)."""
        model = model.to(self.device)
        if self.cuda:
            model = model.to(memory_format=torch.channels_last)
        return model


@dataclass
class TrainResult:
    """What a finished run reports (also written to ``final.json``)."""

    metrics: dict[str, Any]
    model: nn.Module


def _forward(model: nn.Module, x: Tensor, policy: Mapping[str, Any] | None) -> Tensor:
    return model(x) if policy is None else model(x, policy)


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Evaluate with each batch's own normalisation statistics, leaving the running ones.

    A supernet's running statistics average over every policy it was trained with and fit
    none of them (measured in docs/supernet.md), so policies are scored with the statistics
    of the scored batch, as weight-sharing NAS does. Batch norm layers are put in training
    mode with momentum 0, so their running statistics do not move.
    """
    saved = [(m, m.training, m.momentum) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m, _, _ in saved:
        m.train()
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, training, momentum in saved:
            m.train(training)
            m.momentum = momentum


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    accel: Accelerator,
    policy: Mapping[str, Any] | None = None,
) -> None:
    """Recompute every batch norm's running statistics under one policy (a cumulative
    average over ``batches``), so the model can run in eval mode, one image at a time."""
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    was_training = model.training
    model.train()
    for x, y in batches:
        x, _ = accel.batch(x, y)
        with accel.autocast():
            _forward(model, x, policy)
    model.train(was_training)
    for m, momentum in zip(layers, saved, strict=True):
        m.momentum = momentum


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    accel: Accelerator,
    policy: Mapping[str, Any] | None = None,
    *,
    bn: str = "running",
) -> float:
    """Top-1 accuracy of ``model`` (under ``policy`` for a supernet) on ``batches``.

    ``bn="running"`` uses the running statistics (eval mode); ``bn="batch"`` each batch's
    own (see :func:`batch_statistics`).
    """
    was_training = model.training
    model.eval()
    correct = total = 0
    context = batch_statistics(model) if bn == "batch" else contextlib.nullcontext()
    with context:
        for x, y in batches:
            x, y = accel.batch(x, y)
            with accel.autocast():
                logits = _forward(model, x, policy)
            correct += int((logits.argmax(1) == y).sum())
            total += int(y.numel())
    model.train(was_training)
    return correct / max(total, 1)


class _Cached:
    """An evaluation split held on the device once, for many policies to be scored on."""

    def __init__(self, data: DataSplits, split: str, batch_size: int, accel: Accelerator):
        self.batches = [accel.batch(x, y) for x, y in data.loader(split, batch_size)]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return iter(self.batches)


def _first(batches: Iterable[Any], n: int) -> Iterator[Any]:
    for i, item in enumerate(batches):
        if i == n:
            return
        yield item


def _build(space: SearchSpace, config: TrainConfig) -> nn.Module:
    if config.mode == "plain":
        return ResNeXt(space.network)
    return SepResNeXt(space)


def step_schedule(lr: float, milestones: Sequence[float], t: int, total: int) -> float:
    """``lr`` divided by 10 at each milestone (a fraction of ``total``), at time ``t``."""
    return StepSchedule.from_fractions(lr, milestones, total)(t)


@dataclass(frozen=True)
class StepSchedule:
    """A step learning-rate schedule in absolute steps (or epochs): ``lr`` divided by 10 at
    each of ``steps``.

    It is fixed when a run starts and stored in its checkpoint: a run resumed with more
    epochs or iterations keeps the rates it had (and stays at the last one), instead of
    stretching its milestones over the new total.
    """

    lr: float
    steps: tuple[int, ...]

    @classmethod
    def from_fractions(cls, lr: float, milestones: Sequence[float], total: int) -> StepSchedule:
        """Milestones given as fractions of ``total`` steps."""
        return cls(lr, tuple(max(1, round(f * total)) for f in milestones))

    def __call__(self, t: int) -> float:
        return self.lr * 0.1 ** sum(1 for m in self.steps if t >= m)

    def to_json(self) -> dict[str, Any]:
        """JSON form (stored in checkpoints)."""
        return {"lr": self.lr, "steps": list(self.steps)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepSchedule:
        """Inverse of :meth:`to_json`."""
        return cls(float(data["lr"]), tuple(int(s) for s in data["steps"]))


def learning_schedule(config: TrainConfig) -> StepSchedule:
    """The schedule of a run started with ``config``, in epochs."""
    return StepSchedule.from_fractions(config.lr, config.milestones, config.epochs)


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """The rate at ``epoch`` of a run started with ``config`` (milestones are fractions of
    its epochs)."""
    return learning_schedule(config)(epoch)


def train(
    space: SearchSpace,
    data: DataSplits,
    config: TrainConfig,
    run: RunDir,
    *,
    resume: bool = False,
    accel: Accelerator | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train per ``config``, writing ``config.json``, ``metrics.jsonl``, ``last.pt`` and
    ``final.json`` into ``run``. ``progress(phase, done, total, info)`` reports steps.

    Under torchrun (several processes, ``snnas.train._dist``) the run is data-parallel:
    every rank trains on its shard of each global batch of ``config.batch_size`` images,
    rank 0 alone evaluates, writes the run and reports progress, and every rank returns
    rank 0's result. ``config.json`` and each epoch's metrics record the world size.
    """
    accel = accel or Accelerator.pick()
    ctx = setup(accel.device)
    data.check_space(space)
    ctx.check_batch(config.batch_size, "--batch-size")
    policy = space.validate(config.policy) if config.mode == "policy" and config.policy else None
    if config.mode == "policy" and policy is None:
        raise CheckpointError("mode 'policy' needs a policy")
    # Every rank draws the same policies: the seed is rank 0's (the supernet stays one).
    seed = ctx.broadcast(config.seed)

    torch.manual_seed(seed)
    model = accel.prepare(_build(space, config))
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )
    metrics: list[dict[str, Any]] = []
    start_epoch = 0
    identity = {"config": config.to_json(), "space_hash": space.hash}
    schedule = learning_schedule(config)

    if ctx.main:
        run.create()
    if run.has_checkpoint(CHECKPOINT):
        if not resume:
            raise CheckpointError(
                f"{run.path} already holds a run: pass --resume to continue it, or another --name"
            )
        state = run.load_checkpoint(CHECKPOINT)
        start_epoch, metrics = _check_same_run(state, space, config, run)
        load_module_state(model, state["model"], run / CHECKPOINT)
        load_optimizer_state(optimizer, state["optimizer"], run / CHECKPOINT)
        # The schedule the run started with, in absolute epochs (older checkpoints: from the
        # epochs they were started with), so more epochs continue at the last rate.
        try:
            schedule = (
                StepSchedule.from_json(state["schedule"])
                if "schedule" in state
                else learning_schedule(TrainConfig.from_json(state["config"]))
            )
        except (TypeError, ValueError, KeyError, AttributeError):
            raise CheckpointError(
                f"{run / CHECKPOINT}: corrupt checkpoint (its 'schedule' is not one)"
            ) from None
    # The space file's text too, so later commands (snnas parity) rebuild the same space.
    if ctx.main:
        run.write_json(
            "config.json",
            {
                **identity,
                "world_size": ctx.world_size,
                "space": space.to_json(),
                "space_toml": space.config.source,
            },
        )
    # Rank 0's parameters and buffers on every rank (the checkpoint's, or the same seed's).
    trained = ctx.wrap(model, accel.device)

    train_loader = data.loader(
        "train",
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        augment=config.augment,
        workers=config.workers,
        pin_memory=accel.cuda,
    )
    val = _Cached(data, "val", 256, accel)
    eval_rng = random.Random(_EVAL_SEED)
    epoch_policies = [space.sample(eval_rng) for _ in range(config.epoch_eval_policies)]
    no_comm = space.no_communication_policy()

    for epoch in range(start_epoch, config.epochs):
        tic = time.perf_counter()
        train_loader.set_epoch(epoch)
        policy_rng = random.Random(seed * _POLICY_SEED + epoch)
        for group in optimizer.param_groups:
            group["lr"] = schedule(epoch)
        model.train()
        # Running sums stay on the device: no host synchronisation on every step.
        loss_sum = torch.zeros((), device=accel.device)
        correct = torch.zeros((), dtype=torch.long, device=accel.device)
        seen = 0
        total_steps = len(train_loader)
        for step, (x, y) in enumerate(train_loader):
            count = len(y)  # the global batch; this rank trains on its shard
            x, y = accel.batch(*ctx.shard(x, y))
            step_policy: Policy | None = policy
            if config.mode == "supernet":
                step_policy = space.sample(policy_rng)  # eq. (9): Monte Carlo over policies
            with global_batch_norm(model, ctx), accel.autocast():
                logits = _forward(trained, x, step_policy)
                loss = ctx.loss(logits, y, count)
            optimizer.zero_grad(set_to_none=True)
            with global_batch_norm(model, ctx):
                loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * (count / ctx.world_size)  # this shard's summed loss
            correct += (logits.argmax(1) == y).sum()
            seen += count
            if progress and ctx.main and (step % 20 == 19 or step + 1 == total_steps):
                # Rank 0's shard only: no synchronisation inside the epoch.
                info = {"epoch": epoch + 1, "loss": float(loss_sum) * ctx.world_size / seen}
                progress("train", step + 1, total_steps, info)
        loss_sum, correct = ctx.sum(loss_sum, correct)  # one synchronisation per epoch
        elapsed = time.perf_counter() - tic
        if not math.isfinite(float(loss_sum)):
            raise TrainingError(
                f"training diverged in epoch {epoch + 1}: the loss is {float(loss_sum)} "
                f"(learning rate {learning_rate(config, epoch):g}; try a lower --lr). "
                f"{run.path} keeps the checkpoint of the epoch before."
            )
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": schedule(epoch),
            "train_loss": float(loss_sum) / seen,
            "train_acc": int(correct) / seen,
            "time_s": elapsed,
            "images_per_s": seen / elapsed,
            "world_size": ctx.world_size,
        }
        metrics.append(record)
        if not ctx.main:
            continue  # rank 0 evaluates and writes; the others wait at the next collective
        if config.mode == "supernet":
            accs = [evaluate(model, val, accel, p, bn="batch") for p in epoch_policies]
            record["val_acc_mean"] = statistics.fmean(accs)
            record["val_acc_nocomm"] = evaluate(model, val, accel, no_comm, bn="batch")
        else:
            record["val_acc"] = evaluate(model, val, accel, policy)
        run.write_jsonl("metrics.jsonl", metrics)
        run.save_checkpoint(
            CHECKPOINT,
            {
                **identity,
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.to_json(),
                "metrics": metrics,
            },
        )
        if progress:
            progress("epoch", epoch + 1, config.epochs, record)

    final: dict[str, Any] | None = None
    if ctx.main:
        final = _final_metrics(space, data, config, model, accel, policy, run, progress)
        final["train_time_s"] = sum(m["time_s"] for m in metrics)
        final["epochs"] = config.epochs
        final["world_size"] = ctx.world_size
        run.write_json("final.json", final)
    return TrainResult(ctx.broadcast(final), model)


def _check_same_run(
    state: dict[str, Any], space: SearchSpace, config: TrainConfig, run: RunDir
) -> tuple[int, list[dict[str, Any]]]:
    """Check a loaded checkpoint against this run; return its epoch and metrics."""
    path = run / CHECKPOINT
    check_state(path, state, CHECKPOINT_SCHEMA)
    if state["space_hash"] != space.hash:
        raise CheckpointError(
            f"{run.path}: the checkpoint is for space hash {state['space_hash'][:40]!r}, "
            f"not {space.hash!r} ({space.name}); use another --name"
        )
    try:
        saved = TrainConfig.from_json(state["config"])
        check_config(saved, str(path))
    except (TypeError, ValueError, KeyError, SnnasError):
        raise CheckpointError(f"{path}: corrupt checkpoint (its 'config' is not one)") from None
    diff = saved.differences(config)
    if diff:
        raise CheckpointError(
            f"{run.path}: cannot resume with a different configuration ({'; '.join(diff)})"
        )
    epoch, metrics = state["epoch"], state["metrics"]
    if not 0 <= epoch <= saved.epochs or len(metrics) != epoch:
        raise CheckpointError(
            f"{path}: corrupt checkpoint (epoch {epoch} of {saved.epochs} with "
            f"{len(metrics)} epochs of metrics)"
        )
    for record in metrics:
        if not isinstance(record, dict):
            raise CheckpointError(f"{path}: corrupt checkpoint (its metrics are not records)")
        check_state(path, record, {"time_s": (int, float)})
    return epoch, list(metrics)


def _final_metrics(
    space: SearchSpace,
    data: DataSplits,
    config: TrainConfig,
    model: nn.Module,
    accel: Accelerator,
    policy: Policy | None,
    run: RunDir,
    progress: Progress | None,
) -> dict[str, Any]:
    val = _Cached(data, "val", 256, accel)
    test = _Cached(data, "test", 256, accel)
    out: dict[str, Any] = {"mode": config.mode, "dataset": data.name, "space": space.name}
    if config.mode != "supernet":
        out["val_acc"] = evaluate(model, val, accel, policy)
        out["test_acc"] = evaluate(model, test, accel, policy)
        return out
    # The supernet: score random policies on validation, select on validation only, and
    # report the test accuracy of the selected policy once, at the end.
    rng = random.Random(_EVAL_SEED + 1)
    scored = []
    for i in range(config.eval_policies):
        candidate = space.sample(rng)
        scored.append((evaluate(model, val, accel, candidate, bn="batch"), i, candidate))
        if progress:
            progress("eval", i + 1, config.eval_policies, {})
    scored.sort(key=lambda item: (-item[0], item[1]))
    best_acc, _, best = scored[0]
    accs = [s[0] for s in scored]
    no_comm = space.no_communication_policy()
    out.update(
        {
            "random_policies": len(accs),
            "val_acc_best": best_acc,
            "val_acc_mean": statistics.fmean(accs),
            "val_acc_worst": min(accs),
            "val_acc_nocomm": evaluate(model, val, accel, no_comm, bn="batch"),
            # The same policies with the supernet's shared running statistics, to show why
            # scoring uses batch statistics (docs/supernet.md).
            "val_acc_mean_running_bn": statistics.fmean(
                evaluate(model, val, accel, s[2]) for s in scored
            ),
            "test_acc_best": evaluate(model, test, accel, best, bn="batch"),
            "test_acc_nocomm": evaluate(model, test, accel, no_comm, bn="batch"),
        }
    )
    # What the selected policy gives once frozen with its own running statistics, as it
    # would be deployed (one image at a time, eval mode).
    frozen = model.freeze(best)  # type: ignore[operator]
    calib = data.loader("train", 256, shuffle=True, seed=config.seed)
    recalibrate_bn(frozen, _first(calib, 8), accel)
    out["test_acc_best_recalibrated"] = evaluate(frozen, test, accel)
    run.write_json("best_policy.json", {**space.policy_to_json(best), "val_acc": best_acc})
    return out
