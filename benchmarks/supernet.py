"""Supernet speed: the cost of running any policy, measured side by side in one run.

Figures (see benchmarks/README.md):
  train_step_ratio   supernet training step (forward + backward + SGD, a fresh random policy
                     each step) over the same grouped network with no transmissions
                     (target <= 1.05); saved-activation bytes of both beside it
  unfused_ratio      the same step with the reference transfer (transmit, then aggregate:
                     gather, mask, cast, pad, add) instead of the fused one, timed in the same
                     interleaving
  infer_ratio        supernet inference under one fixed policy over its frozen standalone
                     model (target <= 1.05)
  train_images_per_s, infer_images_per_s   per space
  scorer_policies_per_s   the search's scorer (first space only): batch statistics of 180
                     images (the digits search reward), and the deployable score (batch norm
                     recalibrated on 1,024 images, then 180 images in eval mode)

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

import snnas.models.supernet as supernet_module  # noqa: E402
from snnas.models import SepResNeXt  # noqa: E402
from snnas.search._reward import DEPLOY_CALIB_IMAGES, PolicyScorer  # noqa: E402
from snnas.space import load_space  # noqa: E402
from snnas.train import Accelerator  # noqa: E402


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

    fused = supernet_module.transfer

    def reference(x: torch.Tensor, sent: torch.Tensor, plan: Any) -> torch.Tensor:
        return supernet_module.aggregate(x, supernet_module.transmit(sent, plan), plan)

    def with_transfer(fn: Callable[..., torch.Tensor], step: Callable[[], None]) -> Any:
        def run() -> None:
            supernet_module.transfer = fn
            try:
                step()
            finally:
                supernet_module.transfer = fused

        return run

    supernet_step = train_step(lambda: space.sample(rng))
    grouped_step = train_step(lambda: quiet)
    unfused_step = with_transfer(reference, train_step(lambda: space.sample(rng)))
    variants = [supernet_step, grouped_step, unfused_step]
    for _ in range(2):  # warm-up
        for fn in variants:
            fn()
    t_super, t_grouped, t_unfused = _interleaved(variants, repeats, device)
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
        "unfused_ratio": t_unfused / t_grouped,
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


def bench_scorer(path: Path, device: torch.device, policies: int = 20) -> dict[str, float]:
    """Policies per second of the search's scorer on random images of the space's shape."""
    space = load_space(path)
    torch.manual_seed(0)
    net = SepResNeXt(space).to(device)
    n = space.network
    shape = (n.input_channels, n.input_size, n.input_size)
    images, labels = torch.randn(180, *shape), torch.randint(0, n.num_classes, (180,))
    calib = torch.randn(DEPLOY_CALIB_IMAGES, *shape)
    accel = Accelerator(device)
    scorers = {
        "batch_180": PolicyScorer(space, net, images, labels, accel, batch_size=180, bn="batch"),
        "deployable": PolicyScorer(
            space, net, images, labels, accel, batch_size=180, calibration=calib
        ),
    }
    rng = random.Random(3)
    sample = [space.sample(rng) for _ in range(policies)]
    out = {}
    for name, scorer in scorers.items():
        scorer.accuracy(sample[0])  # warm-up
        _sync(device)
        tic = time.perf_counter()
        for policy in sample:
            scorer.accuracy(policy)
        _sync(device)
        out[name] = policies / (time.perf_counter() - tic)
    return out


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
    scorer = bench_scorer(ROOT / args.spaces[0], device)
    report = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "spaces": results,
        "train_step_ratio": max(r["train_step_ratio"] for r in results),
        "infer_ratio": max(r["infer_ratio"] for r in results),
        "scorer_policies_per_s": {"space": results[0]["space"], **scorer},
        "gpu_command": "python benchmarks/supernet.py --device cuda --batch 128 --json",
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"device {report['device']}, torch {report['torch']}, {report['threads']} threads")
    header = f"{'space':<24}{'batch':>6}{'train x':>9}{'unfused x':>11}{'infer x':>9}{'mem x':>7}"
    print(header + f"{'train img/s':>13}{'infer img/s':>13}")
    for r in results:
        print(
            f"{r['space']:<24}{r['batch']:>6}{r['train_step_ratio']:>9.3f}"
            f"{r['unfused_ratio']:>11.3f}{r['infer_ratio']:>9.3f}"
            f"{r['train_memory_ratio']:>7.2f}{r['train_images_per_s']:>13.1f}"
            f"{r['infer_images_per_s']:>13.1f}"
        )
    print(
        "train x: supernet step / no-transmission step (target <= 1.05); unfused x: the same "
        "with the reference transfer; infer x: supernet / frozen (target <= 1.05)"
    )
    sc = report["scorer_policies_per_s"]
    print(
        f"scorer on {sc['space']}: {sc['batch_180']:.1f} policies/s with batch statistics of "
        f"180 images, {sc['deployable']:.1f} deployable (recalibrated on "
        f"{DEPLOY_CALIB_IMAGES} images)"
    )


if __name__ == "__main__":
    main()
