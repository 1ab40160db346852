"""Fine-tuning the selected policy (Lin & Wang, Section 3.2: "fine-tune with a small learning
rate to get the best result").

The policy is baked in (:class:`~snnas.models.FrozenSepResNeXt`) and starts from the search's
shared weights. Batch norm first gets running statistics of *this* policy (the supernet's
average over every policy fits none of them, docs/supernet.md), then the network trains with
SGD and a cosine learning rate. After every epoch the running statistics are recalibrated on
training images and the network is scored in eval mode, as a device would run it (one image
at a time, running statistics only), so batch size never changes an answer. The checkpoint
is selected on validation; the test split is scored once, at the end, for the selected one.

Determinism: the data order and augmentation of epoch ``e`` come from generators seeded by
``(seed, e)`` and the rate is a function of the absolute step, so a run resumed from the
checkpoint of epoch ``e`` continues exactly as an uninterrupted run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from snnas._run import (
    Progress,
    RunDir,
    check_state,
    load_module_state,
    load_optimizer_state,
)
from snnas.data import DataSplits
from snnas.errors import CheckpointError, ConfigError, PolicyError, shorten
from snnas.models import FrozenSepResNeXt
from snnas.space import Policy, SearchSpace, policy_json
from snnas.train._dist import global_batch_norm, setup
from snnas.train._trainer import Accelerator, _Cached, _first, evaluate, recalibrate_bn

__all__ = [
    "FINETUNE_DIR",
    "FinetuneConfig",
    "FinetuneResult",
    "default_finetune_config",
    "finetune",
    "load_finetuned",
]

#: Sub-folder of a search run that holds its fine-tuning.
FINETUNE_DIR = "finetune"
LAST = "last.pt"
BEST = "best.pt"
_CALIB_SEED = 4_243  # the training images used to recalibrate batch norm
_LAST_SCHEMA = {"identity": dict, "epoch": int, "model": dict, "optimizer": dict,
                "metrics": list, "best": dict}  # fmt: skip


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that determines a fine-tuning run (saved with its checkpoints)."""

    epochs: int  # passes over the training split
    lr: float  # initial SGD learning rate; cosine decay to 0 over all steps
    batch_size: int
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True  # the dataset's training augmentation
    calib_batches: int = 8  # training batches (no augmentation) to recalibrate batch norm
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FinetuneConfig:
        """Inverse of :meth:`to_json` (unknown keys ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def default_finetune_config(dataset: str, **overrides: Any) -> FinetuneConfig:
    """The paper's recipe on CIFAR (lr 1e-4, 45 epochs, batch 128); on digits 20 epochs at
    lr 0.03 (the best of a sweep on the quickstart's validation split, docs/plan.md); on
    Fashion-MNIST 5 epochs at lr 0.01, batch 128, no random shifts (sized for a 2-core CPU
    like the supernet's recipe; measured in docs/parity.md, "Fashion-MNIST")."""
    if dataset == "digits":
        base = FinetuneConfig(epochs=20, lr=0.03, batch_size=32)
    elif dataset == "fashion-mnist":
        base = FinetuneConfig(epochs=5, lr=0.01, batch_size=128, augment=False)
    else:
        base = FinetuneConfig(epochs=45, lr=1e-4, batch_size=128)
    config = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    for name in ("epochs", "batch_size", "calib_batches"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(None, f"--{name.replace('_', '-')}", "an integer >= 1", value)
    for name, low in (("lr", 0.0), ("momentum", 0.0), ("weight_decay", 0.0)):
        value = getattr(config, name)
        if not math.isfinite(value) or value < low or (name == "lr" and value == 0):
            expected = "a positive finite number" if name == "lr" else "a finite number >= 0"
            raise ConfigError(None, f"--{name.replace('_', '-')}", expected, value)
    return config


@dataclass
class FinetuneResult:
    """What a finished fine-tuning reports (also ``final.json``) and the selected network."""

    metrics: dict[str, Any]
    model: FrozenSepResNeXt


def cosine_lr(lr: float, step: int, total: int) -> float:
    """``lr`` at absolute step ``step`` of ``total``, decayed to 0 along a half cosine."""
    return 0.5 * lr * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def finetune(
    space: SearchSpace,
    data: DataSplits,
    policy: Mapping[str, Any],
    supernet_state: Mapping[str, torch.Tensor],
    config: FinetuneConfig,
    run: RunDir,
    *,
    source: Mapping[str, Any] | None = None,
    source_path: str = "the search's weights",
    resume: bool = False,
    accel: Accelerator | None = None,
    progress: Progress | None = None,
) -> FinetuneResult:
    """Fine-tune ``policy``'s frozen network from ``supernet_state``; write ``run``.

    ``source`` (the search run it comes from) is recorded in ``config.json``;
    ``source_path`` names ``supernet_state`` in messages.

    Under torchrun (several processes, ``snnas.train._dist``) the training is data-parallel:
    each rank trains on its shard of every global batch; rank 0 alone recalibrates,
    evaluates, selects and writes; every rank returns rank 0's result.
    """
    accel = accel or Accelerator.pick()
    ctx = setup(accel.device)
    ctx.check_batch(config.batch_size, "--batch-size")
    data.check_space(space)
    policy = space.validate(policy)
    identity = {
        "space_hash": space.hash,
        "policy": policy_json(policy),
        "dataset": data.name,
        "config": config.to_json(),
    }
    model = FrozenSepResNeXt(space, policy)
    load_module_state(model, supernet_state, source_path, "supernet")
    accel.prepare(model)  # moves the module in place
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    train_loader = data.loader(
        "train",
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        augment=config.augment,
        pin_memory=accel.cuda,
    )
    calib = [
        accel.batch(x, y)
        for x, y in _first(
            data.loader("train", 256, shuffle=True, seed=_CALIB_SEED), config.calib_batches
        )
    ]
    val = _Cached(data, "val", 256, accel)
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * config.epochs

    metrics: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    start = 0
    run.check_resume(LAST, resume, "fine-tuning")
    if ctx.main:
        run.create()
    if resume:
        state = run.load_checkpoint(LAST)
        path = run / LAST
        check_state(path, state, _LAST_SCHEMA)
        _check_same(state, identity, run)
        if not 0 <= state["epoch"] <= config.epochs or len(state["metrics"]) != state["epoch"] + 1:
            raise CheckpointError(
                f"{shorten(str(path))}: corrupt checkpoint (epoch {state['epoch']} with "
                f"{len(state['metrics'])} epochs of metrics, of {config.epochs})"
            )
        check_state(path, state["best"], {"epoch": int, "val_acc": float})
        load_module_state(model, state["model"], path)
        load_optimizer_state(optimizer, state["optimizer"], path)
        start, metrics, best = state["epoch"], list(state["metrics"]), dict(state["best"])
    if ctx.main:
        run.write_json(
            "config.json",
            {**identity, "source": dict(source or {}), "world_size": ctx.world_size},
        )

    if start == 0 and ctx.main:
        # Batch norm of this policy before anything else: the supernet's running statistics
        # average over every policy it was trained with.
        recalibrate_bn(model, calib, accel)
        before = evaluate(model, val, accel)
        metrics = [{"epoch": 0, "lr": 0.0, "val_acc": before}]
        best = {"epoch": 0, "val_acc": before}
        run.save_checkpoint(BEST, _best_state(model, identity, best))
    # Rank 0's weights, with this policy's batch-norm statistics, on every rank.
    trained = ctx.wrap(model, accel.device)

    for epoch in range(start, config.epochs):
        tic = time.perf_counter()
        train_loader.set_epoch(epoch)
        model.train()
        loss_sum = torch.zeros((), device=accel.device)
        seen = 0
        for step, (x, y) in enumerate(train_loader):
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(config.lr, epoch * steps_per_epoch + step, total_steps)
            count = len(y)  # the global batch; this rank trains on its shard
            x, y = accel.batch(*ctx.shard(x, y))
            with global_batch_norm(model, ctx), accel.autocast():
                loss = ctx.loss(trained(x), y, count)
            optimizer.zero_grad(set_to_none=True)
            with global_batch_norm(model, ctx):
                loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * (count / ctx.world_size)  # this shard's summed loss
            seen += count
            if progress and ctx.main and (step % 20 == 19 or step + 1 == steps_per_epoch):
                progress("train", step + 1, steps_per_epoch, {"epoch": epoch + 1})
        (loss_sum,) = ctx.sum(loss_sum)
        if not ctx.main:  # rank 0 recalibrates, evaluates and writes
            continue
        recalibrate_bn(model, calib, accel)
        val_acc = evaluate(model, val, accel)
        record = {
            "epoch": epoch + 1,
            "lr": cosine_lr(config.lr, epoch * steps_per_epoch, total_steps),
            "train_loss": float(loss_sum) / max(seen, 1),
            "val_acc": val_acc,
            "time_s": time.perf_counter() - tic,
            "world_size": ctx.world_size,
        }
        metrics.append(record)
        assert best is not None
        if val_acc > best["val_acc"]:  # ties keep the earlier (less fine-tuned) checkpoint
            best = {"epoch": epoch + 1, "val_acc": val_acc}
            run.save_checkpoint(BEST, _best_state(model, identity, best))
        run.write_jsonl("metrics.jsonl", metrics)
        run.save_checkpoint(
            LAST,
            {
                "identity": identity,
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "metrics": metrics,
                "best": best,
            },
        )
        if progress:
            progress("epoch", epoch + 1, config.epochs, {"val_acc": val_acc})

    final: dict[str, Any] | None = None
    if ctx.main:
        final = _final(space, data, policy, config, run, accel, metrics, best, ctx.world_size)
    final = ctx.broadcast(final)  # once rank 0 has written best.pt
    selected = load_finetuned(run, space)
    accel.prepare(selected)  # moves the module in place
    return FinetuneResult(final, selected)


def _final(
    space: SearchSpace,
    data: DataSplits,
    policy: Policy,
    config: FinetuneConfig,
    run: RunDir,
    accel: Accelerator,
    metrics: list[dict[str, Any]],
    best: dict[str, Any] | None,
    world_size: int,
) -> dict[str, Any]:
    """Rank 0's closing work: the selected checkpoint's test accuracy, ``final.json`` and
    ``curves.png``."""
    selected = load_finetuned(run, space)
    accel.prepare(selected)
    test = _Cached(data, "test", 256, accel)
    if best is None:
        raise CheckpointError(f"{run.path}: no checkpoint was selected")
    final = {
        "space": space.name,
        "space_hash": space.hash,
        "dataset": data.name,
        "policy": policy_json(policy),
        "epochs": config.epochs,
        "selected_epoch": best["epoch"],
        "val_acc_before": metrics[0]["val_acc"],
        "val_acc": best["val_acc"],
        # Reported once, for the checkpoint selected on validation.
        "test_acc": evaluate(selected, test, accel),
        "train_time_s": sum(m.get("time_s", 0.0) for m in metrics),
        "world_size": world_size,
    }
    run.write_json("final.json", final)
    _plot(metrics, run, f"{space.name}: fine-tuning", best["epoch"])
    return final


def _best_state(
    model: FrozenSepResNeXt, identity: dict[str, Any], best: dict[str, Any]
) -> dict[str, Any]:
    return {
        "identity": identity,
        "model": model.state_dict(),
        "epoch": best["epoch"],
        "val_acc": best["val_acc"],
    }


def _check_same(state: dict[str, Any], identity: dict[str, Any], run: RunDir) -> None:
    saved = state.get("identity")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{run.path / LAST}: not a fine-tuning checkpoint")
    diff = [
        f"{k}: {saved.get(k)!r} != {v!r}"
        for k, v in identity.items()
        if k != "config" and saved.get(k) != v
    ]
    old, new = saved.get("config", {}), identity["config"]
    diff += [f"{k}: {old.get(k)!r} != {new[k]!r}" for k in new if old.get(k) != new[k]]
    if diff:
        raise CheckpointError(
            f"{run.path}: cannot resume a different fine-tuning ({'; '.join(diff)}); "
            "the learning-rate schedule depends on every setting"
        )


def load_finetuned(run: RunDir, space: SearchSpace) -> FrozenSepResNeXt:
    """The checkpoint selected on validation, as an eval-mode frozen network on the CPU."""
    state = run.load_checkpoint(BEST)
    check_state(run / BEST, state, {"identity": dict, "model": dict})
    identity = state.get("identity")
    if not isinstance(identity, dict) or not isinstance(identity.get("policy"), dict):
        raise CheckpointError(f"{run.path / BEST}: not a fine-tuned network")
    if identity.get("space_hash") != space.hash:
        raise CheckpointError(
            f"{run.path / BEST}: made for space hash {identity.get('space_hash')!r}, "
            f"not {space.hash!r} ({space.name})"
        )
    try:
        policy: Policy = space.validate(identity["policy"])
    except PolicyError as exc:
        raise CheckpointError(f"{shorten(str(run / BEST))}: policy: {exc}") from None
    model = FrozenSepResNeXt(space, policy)
    load_module_state(model, state["model"], run / BEST)
    return model.eval()


def _plot(metrics: list[dict[str, Any]], run: RunDir, title: str, selected: int) -> None:
    """Training loss and validation accuracy per epoch (``curves.png``), the epoch selected
    on validation marked."""
    from snnas._plot import pyplot, save_png

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    trained = [m for m in metrics if "train_loss" in m]
    left.plot([m["epoch"] for m in trained], [m["train_loss"] for m in trained], marker=".")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    left.grid(alpha=0.3)
    right.plot([m["epoch"] for m in metrics], [m["val_acc"] for m in metrics], marker=".")
    chosen = [m for m in metrics if m["epoch"] == selected]
    if chosen:
        right.scatter([selected], [chosen[0]["val_acc"]], s=80, facecolors="none",
                      edgecolors="C3", zorder=3, label=f"selected: epoch {selected}")  # fmt: skip
        right.legend(loc="lower right")
    right.set_xlabel("epoch (0: supernet weights, batch norm recalibrated)")
    right.set_ylabel("validation accuracy (eval mode)")
    right.grid(alpha=0.3)
    left.set_title(title)
    save_png(fig, run / "curves.png")
