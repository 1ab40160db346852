"""Supernet speed: the cost of running any policy, measured side by side in one run.

Figures (see benchmarks/README.md):
  train_step_ratio   supernet training step (forward + backward + SGD, a fresh random policy
                     each step) over the same grouped network with no transmissions
                     (target <= 1.15); saved-activation bytes of both beside it
  infer_ratio        supernet inference under one fixed policy over its frozen standalone
                     model (target <= 1.05)
  train_images_per_s, infer_images_per_s   per space

Variants are timed interleaved (A, B, A, B, ...) and the medians compared, so machine noise
hits both alike. On a GPU: `python benchmarks/supernet.py --device cuda --batch 128 --json`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnas.models import SepResNeXt  # noqa: E402
from snnas.space import load_space  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _interleaved(fns: list[Callable[[], None]], repeats: int, device: torch.device) -> list[float]:
    """Median seconds of each function, timed in alternation."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            _sync(device)
            tic = time.perf_counter()
            fn()
            _sync(device)
            times[i].append(time.perf_counter() - tic)
    return [statistics.median(t) for t in times]


def _saved_bytes(step: Callable[[], None]) -> int:
    """Bytes of the tensors autograd saves for backward during one step (activation memory)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return total


def bench_space(path: Path, batch: int, repeats: int, device: torch.device) -> dict[str, Any]:
    space = load_space(path)
    torch.manual_seed(0)
    net = SepResNeXt(space).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    net_size = space.network
    x = torch.randn(batch, net_size.input_channels, net_size.input_size, net_size.input_size)
    x = x.to(device)
    y = torch.randint(0, net_size.num_classes, (batch,), device=device)
    rng = random.Random(0)
    quiet = space.no_communication_policy()

    def train_step(policy_fn: Callable[[], Any]) -> Callable[[], None]:
        def step() -> None:
            loss = F.cross_entropy(net(x, policy_fn()), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    supernet_step = train_step(lambda: space.sample(rng))
    grouped_step = train_step(lambda: quiet)
    for _ in range(2):  # warm-up
        supernet_step()
        grouped_step()
    t_super, t_grouped = _interleaved([supernet_step, grouped_step], repeats, device)
    # Activation memory of a dense policy (everyone sends everything) vs no transmissions.
    dense = _dense(space)
    mem_super = _saved_bytes(train_step(lambda: dense))
    mem_grouped = _saved_bytes(grouped_step)

    policy = space.sample(random.Random(2))
    net.eval()
    frozen = net.freeze(policy).eval()

    @torch.no_grad()
    def infer_super() -> None:
        net(x, policy)

    @torch.no_grad()
    def infer_frozen() -> None:
        frozen(x)

    for _ in range(2):
        infer_super()
        infer_frozen()
    t_inf_super, t_inf_frozen = _interleaved([infer_super, infer_frozen], repeats * 2, device)
    return {
        "space": space.name,
        "batch": batch,
        "train_step_ratio": t_super / t_grouped,
        "train_step_s": t_super,
        "grouped_step_s": t_grouped,
        "train_saved_bytes": mem_super,
        "grouped_saved_bytes": mem_grouped,
        "train_memory_ratio": mem_super / mem_grouped,
        "infer_ratio": t_inf_super / t_inf_frozen,
        "infer_supernet_s": t_inf_super,
        "infer_frozen_s": t_inf_frozen,
        "train_images_per_s": batch / t_super,
        "infer_images_per_s": batch / t_inf_super,
    }


def _dense(space: Any) -> dict[str, Any]:
    """The most expensive policy the space allows: every device sends all its channels in
    float32 to the next device (the cyclic shift) wherever those are choices."""
    shift = tuple((i + 1) % space.groups for i in range(space.groups))
    preferred = {"permutation": shift, "sparsity": 100.0, "dtype": "float32"}
    return {
        d.label: preferred[d.kind] if preferred[d.kind] in d.choices else d.choices[0]
        for d in space.decisions
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=None, help="batch size for every space")
    parser.add_argument(
        "--spaces",
        nargs="+",
        default=["search_spaces/quickstart.toml", "search_spaces/sep_resnext56_4x16d_g4.toml"],
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    results = []
    for i, name in enumerate(args.spaces):
        batch = args.batch or (64 if i == 0 else 16)
        repeats = args.repeats if i == 0 else max(5, args.repeats // 2)
        results.append(bench_space(ROOT / name, batch, repeats, device))
    report = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "spaces": results,
        "train_step_ratio": max(r["train_step_ratio"] for r in results),
        "infer_ratio": max(r["infer_ratio"] for r in results),
        "gpu_command": "python benchmarks/supernet.py --device cuda --batch 128 --json",
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"device {report['device']}, torch {report['torch']}, {report['threads']} threads")
    header = f"{'space':<24}{'batch':>6}{'train x':>9}{'infer x':>9}{'mem x':>7}{'train img/s':>13}"
    print(header + f"{'infer img/s':>13}")
    for r in results:
        print(
            f"{r['space']:<24}{r['batch']:>6}{r['train_step_ratio']:>9.3f}{r['infer_ratio']:>9.3f}"
            f"{r['train_memory_ratio']:>7.2f}{r['train_images_per_s']:>13.1f}"
            f"{r['infer_images_per_s']:>13.1f}"
        )
    print(
        "train x: supernet step / no-transmission step (target <= 1.15); "
        "infer x: supernet / frozen (target <= 1.05)"
    )


if __name__ == "__main__":
    main()
