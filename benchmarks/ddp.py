"""Data-parallel supernet training: one epoch with N processes (torchrun, gloo on the CPU or
NCCL on GPUs) against one process, side by side in one run, on the same global batches.

Figures (see benchmarks/README.md):
  time_s_1, time_s_N       the epoch's training time (``metrics.jsonl``, no evaluation)
  images_per_s_1, _N       training images per second
  speedup                  time_s_1 / time_s_N
  wall_s_1, wall_s_N       the whole command (start-up, evaluation, final metrics)
  max_weight_diff          largest difference of any weight or buffer between the two
                           supernets after the epoch
  train_loss_1, _N         the epoch's training loss of each

Each run is ``python -m snnas train SPACE --epochs 1`` (through ``torchrun
--nproc-per-node N`` for the parallel one) into a temporary runs folder. On a GPU machine:
``python benchmarks/ddp.py --device cuda --nproc 2 --json``. ``--lr 0.01`` shows the two
supernets agreeing; at the default lr 0.1 the first steps amplify the last-bit differences
of the global batch-norm sums (docs/supernet.md).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _train(nproc: int, args: argparse.Namespace, runs: Path) -> dict[str, Any]:
    name = f"n{nproc}"
    snnas = ["-m", "snnas", "train", args.space, "--epochs", "1", "--eval-policies", "1",
             "--device", args.device, "--runs-dir", str(runs), "--name", name,
             "--json"]  # fmt: skip
    if args.batch_size:
        snnas += ["--batch-size", str(args.batch_size)]
    if args.lr:
        snnas += ["--lr", str(args.lr)]
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
                     "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tic = time.perf_counter()
    subprocess.run(launcher + snnas, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    metrics = json.loads((runs / name / "metrics.jsonl").read_text().splitlines()[0])
    state = torch.load(runs / name / "last.pt", weights_only=True)["model"]
    return {"wall_s": wall, "metrics": metrics, "state": state}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default=str(ROOT / "search_spaces" / "quickstart.toml"))
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help="default: the space's recipe")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        runs = Path(folder)
        one = _train(1, args, runs)
        many = _train(args.nproc, args, runs)
    diff = max(
        float((one["state"][k].double() - many["state"][k].double()).abs().max())
        for k in one["state"]
    )
    n = args.nproc
    out = {
        "nproc": n,
        "device": args.device,
        "lr": args.lr,
        "torch": torch.__version__,
        "time_s_1": one["metrics"]["time_s"],
        f"time_s_{n}": many["metrics"]["time_s"],
        "images_per_s_1": one["metrics"]["images_per_s"],
        f"images_per_s_{n}": many["metrics"]["images_per_s"],
        "speedup": one["metrics"]["time_s"] / many["metrics"]["time_s"],
        "wall_s_1": one["wall_s"],
        f"wall_s_{n}": many["wall_s"],
        "train_loss_1": one["metrics"]["train_loss"],
        f"train_loss_{n}": many["metrics"]["train_loss"],
        "max_weight_diff": diff,
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for key, value in out.items():
        print(f"{key:>18}: {value:.4g}" if isinstance(value, float) else f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
