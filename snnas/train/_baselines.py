"""Baselines of ``snnas parity eval`` at equal extra resources (ParM's protocol).

* ``none``: no extra device; a missing payload is zeros; nobody answers when device 0 is lost.
* ``impute``: no extra device; a missing payload is its training mean (the receivers' half of
  the parity design, measured alone); nobody answers when device 0 is lost.
* ``replicate``: the extra device is a hot replica of one data device (same weights, same
  received payloads): that device's loss costs nothing, any other's is ``none``. The device
  is chosen on validation (device 0, whose loss is otherwise fatal, in every run so far).
* ``backup``: the extra device runs a cheap model with one data device's blocks (a ResNeXt of
  width C/G: the same FLOPs as one device with the stem and the head) on the raw image, trained
  on the labels; it answers when a device is lost where validation prefers it to device 0's
  answer with zero payloads (always when device 0 is lost).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from snnas._run import Progress, RunDir
from snnas.arch import Architecture
from snnas.cost import compute, liveness, stem_bytes
from snnas.data import DataSplits
from snnas.models import FrozenSepResNeXt, ResNeXt
from snnas.models.parity import CodedNetwork
from snnas.space import SearchSpace
from snnas.train._config import default_config
from snnas.train._degraded import DegradedReport, degraded_report
from snnas.train._trainer import Accelerator, evaluate, step_schedule

__all__ = ["BACKUP_CHECKPOINT", "backup_network", "baselines", "train_backup"]

BACKUP_CHECKPOINT = "backup.pt"


def backup_network(space: SearchSpace) -> ResNeXt:
    """A plain ResNeXt with one data device's blocks (C/G paths of the same width)."""
    net = space.network
    small = replace(net, cardinality=net.cardinality // space.groups)
    return ResNeXt(small)


def _backup_flops(space: SearchSpace) -> int:
    net = replace(space.network, cardinality=space.network.cardinality // space.groups)
    arch = Architecture(net, groups=1, alpha=1)
    body = sum(arch.block_macs(b) for b in arch.blocks)
    return 2 * (arch.stem_macs() + body + arch.head_macs())


def train_backup(
    space: SearchSpace,
    data: DataSplits,
    run: RunDir,
    accel: Accelerator,
    *,
    epochs: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> ResNeXt:
    """Train (or reload from ``run/backup.pt``) the backup model with the dataset's plain
    recipe (``snnas train --plain``), the epoch chosen on validation."""
    model = backup_network(space).to(accel.device)
    config = default_config("plain", data.name, epochs=epochs, seed=seed)
    if run.has_checkpoint(BACKUP_CHECKPOINT):
        state = run.load_checkpoint(BACKUP_CHECKPOINT)
        if state.get("config") == config.to_json() and state.get("space_hash") == space.hash:
            model.load_state_dict(state["model"])
            return model.eval()
    torch.manual_seed(seed)
    model = backup_network(space).to(accel.device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    loader = data.loader(
        "train", config.batch_size, shuffle=True, seed=seed, augment=config.augment
    )
    val = [accel.batch(x, y) for x, y in data.loader("val", 256)]
    best_acc, best_state = -1.0, copy.deepcopy(model.state_dict())
    for epoch in range(config.epochs):
        loader.set_epoch(epoch)
        for group in optimizer.param_groups:
            group["lr"] = step_schedule(config.lr, config.milestones, epoch, config.epochs)
        model.train()
        for x, y in loader:
            x, y = accel.batch(x, y)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        acc = evaluate(model, val, accel)
        if acc > best_acc:
            best_acc, best_state = acc, copy.deepcopy(model.state_dict())
        if progress:
            progress("backup", epoch + 1, config.epochs, {"val_acc": acc})
    model.load_state_dict(best_state)
    run.save_checkpoint(
        BACKUP_CHECKPOINT,
        {"model": model.state_dict(), "config": config.to_json(), "space_hash": space.hash,
         "val_acc": best_acc},
    )  # fmt: skip
    return model.eval()


def _rows(report: DegradedReport, zero_device0: bool = True) -> list[list[float]]:
    rows = [list(r) for r in report.device]
    if zero_device0:
        rows[0] = [0.0] * len(rows[0])  # nobody answers: every image counts as wrong
    return rows


def _summary(
    rows: list[list[float]], extra_bytes: int, extra_flops: int, **info: Any
) -> dict[str, Any]:
    by_device = [sum(r) / len(r) for r in rows]
    return {
        "degraded_acc": sum(map(sum, rows)) / sum(map(len, rows)),
        "degraded_by_device": by_device,
        "degraded_by_position": rows,
        "extra_bytes": extra_bytes,
        "extra_flops": extra_flops,
        **info,
    }


@torch.no_grad()
def _accuracy(
    model: torch.nn.Module, batches: Iterable[tuple[Tensor, Tensor]], accel: Accelerator
) -> float:
    return evaluate(model, batches, accel)


def baselines(
    net: CodedNetwork,
    data: DataSplits,
    accel: Accelerator,
    backup: torch.nn.Module,
    policy: Mapping[str, Any] | None = None,
    split: str = "test",
) -> dict[str, dict[str, Any]]:
    """Every baseline's figures on ``split`` (choices made on the validation split)."""
    space = net.space
    g = space.groups
    if policy is None:
        if not isinstance(net.base, FrozenSepResNeXt):
            raise ValueError("the supernet needs a policy")
        policy = net.base.policy
    saved = net.standin
    reports: dict[str, dict[str, DegradedReport]] = {}
    for mode in ("zeros", "mean"):
        net.standin = mode
        reports[mode] = {
            s: degraded_report(net, data.loader(s, 256), accel, policy) for s in ("val", split)
        }
    net.standin = saved
    available = {s: reports["zeros"][s].available for s in ("val", split)}
    live = liveness(space, policy)
    comp = compute(space, policy)
    image = space.network.input_channels * space.network.input_size**2 * 4
    out: dict[str, dict[str, Any]] = {
        "none": _summary(_rows(reports["zeros"][split]), 0, 0),
        "impute": _summary(_rows(reports["mean"][split]), 0, 0),
    }

    # Replication: device d's loss costs nothing; pick d on validation.
    def replicated(rows: list[list[float]], d: int, avail: float) -> list[list[float]]:
        rows = [list(r) for r in rows]
        rows[d] = [avail] * len(rows[d])
        return rows

    val_rows = _rows(reports["zeros"]["val"])
    best = max(range(g), key=lambda d: (_mean(replicated(val_rows, d, available["val"])), -d))
    into = sum(t.bytes for t in live.live_transfers if t.dst == best)
    entry = image if best == 0 else stem_bytes(space)  # a replica of device 0 computes the stem
    out["replicate"] = _summary(
        replicated(_rows(reports["zeros"][split]), best, available[split]),
        entry + into,
        comp.live_flops_per_device[best],
        device=best,
    )

    # The backup model: answers where validation prefers it to device 0 with zero payloads.
    backup_acc = {s: _accuracy(backup, data.loader(s, 256), accel) for s in ("val", split)}
    val_zero = _rows(reports["zeros"]["val"], zero_device0=False)
    prefer = [j == 0 or backup_acc["val"] >= _mean([val_zero[j]]) for j in range(g)]
    test_zero = _rows(reports["zeros"][split], zero_device0=False)
    rows = [
        [backup_acc[split]] * len(test_zero[j]) if prefer[j] else test_zero[j] for j in range(g)
    ]
    out["backup"] = _summary(
        rows,
        image,
        _backup_flops(space),
        backup_acc=backup_acc[split],
        answers=["backup" if p else "device0" for p in prefer],
    )
    return out


def _mean(rows: list[list[float]]) -> float:
    return sum(map(sum, rows)) / sum(map(len, rows))
