"""One device block at batch 1: the eager module against one frozen TorchScript call.

    .venv/bin/python benchmarks/engine_block.py PLAN [BLOCK ...]

Prints, per block of device 0 of the plan, the median over 7 rounds of 2,000 calls of each
(one torch thread), after checking that both give the same numbers.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from snnas.plan import load_plan


def _time(call: Callable[[Tensor], Tensor], x: Tensor, n: int = 2000) -> float:
    with torch.inference_mode():
        for _ in range(200):
            call(x)
        rounds = []
        for _ in range(7):
            tic = time.perf_counter()
            for _ in range(n):
                call(x)
            rounds.append((time.perf_counter() - tic) / n)
    return statistics.median(rounds)


def main() -> None:
    torch.set_num_threads(1)
    plan = load_plan(sys.argv[1])
    net = plan.net(0)
    chosen = [int(b) for b in sys.argv[2:]] or [int(b) for b in net.blocks]
    for b in chosen:
        block = net.blocks[str(b)].eval()
        geo = plan.arch.blocks[b]
        x = torch.randn(1, geo.in_width, geo.in_size, geo.in_size)  # (1, w, H, W)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            frozen = torch.jit.freeze(torch.jit.script(block))
        with torch.inference_mode():
            if not torch.allclose(block(x), frozen(x), atol=1e-5):
                raise SystemExit(f"block {b}: the frozen block differs from the eager one")
        eager, fast = _time(block, x), _time(frozen, x)
        print(f"block {b} ({geo.in_width}->{geo.out_width}, {geo.in_size}x{geo.in_size}): "
              f"eager {eager * 1e3:.4f} ms, frozen TorchScript {fast * 1e3:.4f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
