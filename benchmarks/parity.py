"""Parity devices on the quickstart (G = 4, r = 1): the issue's goal, measured end to end.

    python benchmarks/parity.py [--runs-dir runs] [--name bench-parity] [--variants ...]

1. trains the quickstart_parity supernet (``snnas train``'s recipe) and freezes its best
   policy (chosen on validation);
2. fine-tunes it (what ``snnas finetune`` will do: BN recalibrated, SGD lr 0.01, 10 epochs,
   the epoch chosen on validation) and writes ``config.json`` + ``finetune/best.pt`` in that
   command's format;
3. for every variant, trains the parity device (``snnas parity train``) and scores it with
   its baselines on the full test split (``snnas parity eval``).

Goal (issue 10): A_degraded within 5 points of A_available and above every baseline at equal
extra resources. Finished stages are reused when the script runs again. Figures: docs/parity.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnas._run import RunDir  # noqa: E402
from snnas.data import load_for_space  # noqa: E402
from snnas.models import SepResNeXt  # noqa: E402
from snnas.models.parity import CodedNetwork, ParityStreams  # noqa: E402
from snnas.space import load_space, policy_json  # noqa: E402
from snnas.train import Accelerator, default_config, evaluate, train  # noqa: E402
from snnas.train._finetuned import load_finetuned  # noqa: E402
from snnas.train._parity import ParityTrainConfig, train_parity  # noqa: E402
from snnas.train._parity_report import parity_eval  # noqa: E402
from snnas.train._trainer import recalibrate_bn  # noqa: E402

SPACE = ROOT / "search_spaces" / "quickstart_parity.toml"


def _protect(space: Any, level: float, encoder: str) -> dict[str, Any]:
    choices: dict[str, Any] = {d.label: level for d in space.decisions if d.kind == "encode"}
    choices.update({d.label: encoder for d in space.decisions if d.kind == "encoder"})
    return choices


#: name -> (parity decisions, parity training overrides)
VARIANTS: dict[str, tuple[tuple[float, str], dict[str, Any]]] = {
    "sum": ((100.0, "sum"), {}),  # the main one: one device's FLOPs, as the baselines
    "concat": ((100.0, "concat"), {}),  # a 1x1 convolution encoder: many more FLOPs
    "mirror": ((100.0, "mirror"), {}),  # the bytes of replicating device 0
    "half": ((50.0, "sum"), {}),  # half the encoding bytes
    "labels": ((100.0, "sum"), {"label_weight": 1.0}),  # distillation + labels
    "scratch": ((100.0, "concat"), {"init": "scratch"}),  # ablation: no shadow initialisation
}


def supernet_stage(root: RunDir, accel: Accelerator) -> dict[str, Any]:
    """The quickstart_parity supernet and its best policy (snnas train's defaults)."""
    run = RunDir(root / "supernet")
    space = load_space(SPACE)
    if not (run / "final.json").is_file():
        data = load_for_space("digits", space)
        train(space, data, default_config("supernet", "digits"), run, accel=accel)
    return run.read_json("final.json")


def finetune_stage(root: RunDir, accel: Accelerator, epochs: int) -> dict[str, Any]:
    """Freeze the supernet's best policy and fine-tune it (the stand-in for snnas finetune)."""
    if (root / "finetune" / "best.pt").is_file():
        return root.read_json("finetune.json")
    space = load_space(SPACE)
    data = load_for_space("digits", space)
    supernet = SepResNeXt(space)
    supernet.load_state_dict(RunDir(root / "supernet").load_checkpoint("last.pt")["model"])
    policy = space.load_policy(root / "supernet" / "best_policy.json")
    frozen = supernet.freeze(policy)
    calibration = data.loader("train", 256, shuffle=True, seed=0)
    recalibrate_bn(frozen, [b for _, b in zip(range(8), calibration, strict=False)], accel)
    val = list(data.loader("val", 256))
    best_acc, best_state, best_epoch = (
        evaluate(frozen, val, accel),
        copy.deepcopy(frozen.state_dict()),
        0,
    )
    optimizer = torch.optim.SGD(frozen.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loader = data.loader("train", 32, shuffle=True, seed=1, augment=True)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for group in optimizer.param_groups:
            group["lr"] = 0.01 * (0.1 if epoch >= 0.6 * epochs else 1.0)
        frozen.train()
        for x, y in loader:
            loss = F.cross_entropy(frozen(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        acc = evaluate(frozen, val, accel)
        if acc > best_acc:
            best_acc, best_state, best_epoch = acc, copy.deepcopy(frozen.state_dict()), epoch + 1
    frozen.load_state_dict(best_state)
    root.write_json("config.json", {"space_toml": space.config.source, "space_hash": space.hash})
    RunDir(root / "finetune").save_checkpoint(
        "best.pt",
        {"model": frozen.state_dict(), "policy": policy_json(policy), "space_hash": space.hash},
    )
    summary = {
        "val_acc": best_acc,
        "epoch": best_epoch,
        "test_acc": evaluate(frozen.eval(), list(data.loader("test", 256)), accel),
    }
    root.write_json("finetune.json", summary)
    return summary


def variant_stage(
    root: RunDir, accel: Accelerator, name: str, epochs: int, backup_epochs: int | None
) -> dict[str, Any]:
    """Train and score one parity variant (reused when its eval.json exists)."""
    folder = RunDir(root / f"parity-{name}")
    if (folder / "eval.json").is_file():
        return folder.read_json("eval.json")
    (level, encoder), overrides = VARIANTS[name]
    space = load_space(SPACE)
    base = load_finetuned(root.path, parity_choices=_protect(space, level, encoder))
    data = load_for_space("digits", base.space)
    net = CodedNetwork(base, ParityStreams(base.space))
    config = ParityTrainConfig(epochs=epochs, **overrides)
    tic = time.perf_counter()
    if not (folder / "final.json").is_file():
        train_parity(net, data, config, folder, resume=(folder / "last.pt").is_file(), accel=accel)
    train_s = time.perf_counter() - tic
    for other in root.path.glob("parity-*/backup.pt"):  # one backup model for every variant
        if not (folder / "backup.pt").is_file():
            shutil.copy(other, folder / "backup.pt")
    result = parity_eval(base, folder, data, accel, backup_epochs=backup_epochs)
    result["parity_train_time_s"] = train_s
    folder.write_json("eval.json", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs")
    parser.add_argument("--name", default="bench-parity")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--epochs", type=int, default=4, help="parity training epochs")
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--backup-epochs", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    accel = Accelerator.pick("cpu")
    root = RunDir(args.runs_dir / args.name)
    root.create()
    tic = time.perf_counter()
    supernet = supernet_stage(root, accel)
    finetune = finetune_stage(root, accel, args.finetune_epochs)
    results = {
        name: variant_stage(root, accel, name, args.epochs, args.backup_epochs)
        for name in args.variants.split(",")
    }
    main_result = next(iter(results.values()))
    baselines = main_result["baselines"]
    goal = {
        name: {
            "within_5_points": r["degraded_acc"] >= r["available_acc"] - 0.05,
            "above_every_baseline": all(
                r["degraded_acc"] > b["degraded_acc"] for b in baselines.values()
            ),
        }
        for name, r in results.items()
    }
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "supernet_test_acc_best": supernet.get("test_acc_best"),
        "finetune": finetune,
        "goal": goal,
        "variants": {
            name: {
                "available_acc": r["available_acc"],
                "degraded_acc": r["degraded_acc"],
                "degraded_by_device": r["degraded_by_device"],
                "overall": r["overall"],
                "extra_bytes": r["extra_bytes"],
                "extra_flops": r["extra_flops"],
                "params": r["parity_cost"]["params_per_parity"][0],
                "answers": r["answers"],
            }
            for name, r in results.items()
        },
        "baselines": {
            name: {
                k: b[k]
                for k in ("degraded_acc", "degraded_by_device", "extra_bytes", "extra_flops")
            }
            for name, b in baselines.items()
        },
        "wall_s": time.perf_counter() - tic,
    }
    root.write_json("benchmark.json", summary)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"A_available (test) {main_result['available_acc']:.4f}; goal: {goal}")
    n = main_result["images"]
    print(f"standard error of an accuracy a on {n} images: sqrt(a (1 - a) / {n})")
    rows = [(f"parity {n}", v) for n, v in summary["variants"].items()]
    rows += list(summary["baselines"].items())
    for name, figures in rows:
        print(
            f"{name:>16}: A_degraded {figures['degraded_acc']:.4f} "
            f"by device {[round(v, 3) for v in figures['degraded_by_device']]} "
            f"+{figures['extra_bytes'] / 1e3:.1f} kB +{figures['extra_flops'] / 1e6:.2f} MFLOPs"
        )


if __name__ == "__main__":
    main()
