"""Strategies compared under equal budgets: ``fixed`` (one supernet, frozen weights, the same
validation images for every strategy and seed) or ``full`` (the whole alternating search per
strategy and seed, the paper's Fig. 4).

Fixed mode splits the validation split in two: strategies search on one half, and each
seed's incumbent is re-scored, deployably (batch norm recalibrated, eval mode), on the other
half, which no search saw. A reference sample of uniform random policies, scored once per
comparison, gives each reward mode its scale: the best reward known, the top-1% threshold
(a percentile, so it works for negative rewards) and, in ``pareto`` mode, the reference
front. Per strategy and reward mode: the area under the best-so-far curve, the regret, the
evaluations to the top 1%, held-out scores, bootstrap 95% intervals over seeds and a paired
Wilcoxon test against random search (docs/search.md).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from snnas._run import Progress, RunDir
from snnas.data import DataSplits
from snnas.errors import ConfigError, UsageError
from snnas.search._compare_fixed import FixedComparison, strategy_options
from snnas.search._compare_full import full_comparison
from snnas.search._compare_report import markdown
from snnas.search._config import REWARD_MODES, SearchConfig
from snnas.search.strategies import make_strategy
from snnas.search.strategies._base import parse_names
from snnas.space import SearchSpace
from snnas.train import Accelerator

__all__ = ["DEFAULT_REWARDS", "REFERENCE", "check_cost_and_constraints", "compare"]

#: Reward modes a comparison reports by default; the first is the headline.
DEFAULT_REWARDS = ("penalized", "pareto", "accuracy")
#: Uniform random policies in the reference sample.
REFERENCE = 2_000


def check_cost_and_constraints(config: SearchConfig, rewards: list[str], mode: str) -> None:
    """Refuse the latency cost without a cost-aware mode to use it, and ``[constraints]`` in
    fixed mode (not applied there: docs/search.md)."""
    costed = [r for r in (rewards[:1] if mode == "full" else rewards) if r != "accuracy"]
    if config.cost == "latency" and not costed:
        raise UsageError(
            "--rewards",
            "a cost-aware mode (penalized, budget or pareto"
            + (", first in full mode" if mode == "full" else "")
            + ') with reward.cost = "latency" (the accuracy mode has no cost term)',
            ",".join(rewards),
        )
    if mode == "fixed" and (config.max_comm_ratio is not None or config.max_latency_ms is not None):
        # The fixed harness's statistics (the uniform reference sample, best-so-far curves,
        # the top 1%, hypervolumes) count every evaluation; constraints would need them over
        # feasible policies only, which is not built (docs/search.md).
        raise ConfigError(
            None,
            "constraints",
            "none in snnas compare's fixed mode (its statistics count every evaluation); "
            "--mode full applies them as snnas search does",
            {
                k: v
                for k, v in (
                    ("comm_ratio", config.max_comm_ratio),
                    ("latency_ms", config.max_latency_ms),
                )
                if v is not None
            },
        )


def compare(
    space: SearchSpace,
    data: DataSplits,
    config: SearchConfig,
    strategies: list[str],
    seeds: int,
    budget: int | None,
    run: RunDir,
    *,
    mode: str = "fixed",
    rewards: list[str] | tuple[str, ...] | None = None,
    reference: int = REFERENCE,
    accel: Accelerator | None = None,
    progress: Progress | None = None,
    supernet_epochs: int | None = None,
    parity_epochs: int | None = None,
) -> dict[str, Any]:
    """Compare ``strategies`` over ``seeds`` seeds; write report.json, report.md, curves.png.

    ``rewards``: the reward modes to compare under (fixed mode; the first is the headline;
    default :data:`DEFAULT_REWARDS`). Full mode runs whole searches under the first. On a
    parity space with ``config.degraded`` (fixed mode), the parity devices are trained on the
    frozen supernet for ``parity_epochs`` (default :class:`ParityTrainConfig`'s) and every
    policy also gets its degraded accuracy (docs/search.md). Bad arguments are
    usage errors (:class:`UsageError`), raised before any training.
    """
    tic = time.perf_counter()
    accel = accel or Accelerator.pick()
    strategies = parse_names(strategies)  # registered names, each once, at least one
    rewards = list(DEFAULT_REWARDS if rewards is None else rewards)
    if mode not in ("fixed", "full"):
        raise UsageError("--mode", "fixed or full", mode)
    bad = [r for r in rewards if r not in REWARD_MODES]
    if not rewards or bad or len(set(rewards)) != len(rewards):
        raise UsageError(
            "--rewards", f"distinct modes of {', '.join(REWARD_MODES)}", bad or rewards
        )
    for option, value, low in (
        ("--seeds", seeds, 1), ("--budget", budget, 1), ("--reference", reference, 10),
        ("--parity-epochs", parity_epochs, 1),
    ):  # fmt: skip
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < low
        ):
            raise UsageError(option, f"an integer >= {low}", value)
    check_cost_and_constraints(config, rewards, mode)
    degraded = space.parity.r >= 1 and config.degraded is not False
    if degraded and mode == "full":
        raise UsageError(
            "--mode",
            "fixed for the degraded objective of a parity space (full mode trains the shared "
            "weights in every search, and parity devices need frozen ones; or set "
            "reward.degraded = false)",
            mode,
        )
    for name in strategies:  # refuse a bad option before any training
        make_strategy(name, space, 0, **strategy_options(config, name))
    run.create()
    if mode == "fixed":
        report = FixedComparison(
            space, data, config, strategies, seeds, budget or 200, run, accel, progress, rewards,
            reference, parity_epochs,
        ).run(supernet_epochs)  # fmt: skip
    else:
        report = full_comparison(
            space, data, replace(config, reward=rewards[0]), strategies, seeds, budget, run,
            accel, progress,
        )  # fmt: skip
    report["time_s"]["total"] = time.perf_counter() - tic
    run.write_json("report.json", report)
    run.write_text("report.md", markdown(report))  # never in place, nor through a link
    return report
