"""Fine-tune policies from a supernet's shared weights: the ground truth the cheap scores are
checked against (docs/search.md, "Which score ranks policies").

Each policy's frozen network starts from the supernet's weights, gets its own batch-norm
statistics (recalibrated on training images), trains a few epochs at a small learning rate
with a cosine decay, is recalibrated again and scored in eval mode (one image at a time
would give the same answer) on the validation and test splits.

    python benchmarks/finetune_policies.py search_spaces/quickstart.toml runs/proxies/supernet \
        --policies P1.json P2.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnas._run import RunDir  # noqa: E402
from snnas.data import DataSplits, load_for_space  # noqa: E402
from snnas.models import SepResNeXt  # noqa: E402
from snnas.search._reward import DEPLOY_CALIB_IMAGES, calibration_images  # noqa: E402
from snnas.space import SearchSpace, load_space  # noqa: E402
from snnas.train import Accelerator, evaluate  # noqa: E402
from snnas.train._trainer import recalibrate_bn  # noqa: E402

#: digits defaults: 5 epochs at lr 0.01, batch 32 (cosine to 0)
EPOCHS, LR, BATCH = 5, 0.01, 32


def finetune_policy(
    space: SearchSpace,
    data: DataSplits,
    supernet: SepResNeXt,
    policy: Mapping[str, Any],
    *,
    epochs: int = EPOCHS,
    lr: float = LR,
    batch_size: int = BATCH,
    seed: int = 0,
    augment: bool = True,
    accel: Accelerator | None = None,
) -> dict[str, float]:
    """Fine-tune one policy; return its validation and test accuracy (deployable: running
    statistics recalibrated on training images, eval mode)."""
    accel = accel or Accelerator.pick("cpu")
    net = supernet.freeze(policy)
    calib = calibration_images(data, DEPLOY_CALIB_IMAGES)
    chunks = [(c, torch.zeros(len(c))) for c in calib.split(256)]
    recalibrate_bn(net, chunks, accel)
    val = list(data.loader("val", 256))
    test = list(data.loader("test", 256))
    before = evaluate(net, val, accel)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    loader = data.loader("train", batch_size, shuffle=True, seed=seed, augment=augment)
    total, step = epochs * len(loader), 0
    tic = time.perf_counter()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        net.train()
        for x, y in loader:
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    recalibrate_bn(net, chunks, accel)
    return {
        "val_acc_before": before,
        "val_acc": evaluate(net, val, accel),
        "test_acc": evaluate(net, test, accel),
        "time_s": time.perf_counter() - tic,
    }


def load_supernet(space_file: Path, run: Path) -> tuple[SearchSpace, SepResNeXt]:
    """The space and the trained supernet of a ``snnas train`` supernet run folder."""
    space = load_space(space_file)
    folder = RunDir(run)
    if folder.read_json("config.json")["space_hash"] != space.hash:
        raise SystemExit(f"{run} was trained on another space than {space_file}")
    net = SepResNeXt(space)
    net.load_state_dict(folder.load_checkpoint("last.pt")["model"])
    return space, net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("space", type=Path, help="the space file")
    parser.add_argument("run", type=Path, help="a supernet run folder (snnas train)")
    parser.add_argument("--policies", nargs="+", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--lr", type=float, default=LR)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    space, net = load_supernet(args.space, args.run)
    data = load_for_space("digits", space)
    out = []
    for path in args.policies:
        result = finetune_policy(
            space, data, net, space.load_policy(path), epochs=args.epochs, lr=args.lr
        )
        out.append({"policy": str(path), **result})
        if not args.json:
            print(f"{path}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
