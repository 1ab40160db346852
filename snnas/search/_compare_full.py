"""Full-mode comparison: the whole alternating search per strategy and seed (the paper's
Fig. 4), its training-loss and sampled-accuracy curves."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from snnas._run import Progress, RunDir
from snnas.data import DataSplits
from snnas.search._compare_report import full_report
from snnas.search._config import SearchConfig
from snnas.search._loop import run_search
from snnas.search._plots import plot_compare
from snnas.search._stats import mean_se
from snnas.space import SearchSpace
from snnas.train import Accelerator

__all__ = ["full_comparison"]


def full_comparison(
    space: SearchSpace,
    data: DataSplits,
    config: SearchConfig,
    strategies: list[str],
    seeds: int,
    budget: int | None,
    run: RunDir,
    accel: Accelerator,
    progress: Progress | None,
) -> dict[str, Any]:
    if budget is not None:
        config = replace(config, iterations=budget)
    histories: dict[str, list[dict[str, Any]]] = {}
    for name in strategies:
        histories[name] = []
        for seed in range(seeds):
            sub = RunDir(run / f"{name.replace(':', '-')}-s{seed}")
            result = run_search(
                space, data, config, name, sub, seed=seed, resume=True, accel=accel,
                progress=progress,
            )  # fmt: skip
            histories[name].append(
                {
                    "rewards": [e["reward"] for e in result.events],
                    "losses": [r["train_loss"] for r in sub.read_jsonl("iterations.jsonl")],
                    "sampled": [
                        r["mean_sampled_accuracy"] for r in sub.read_jsonl("iterations.jsonl")
                    ],
                    "val": result.summary["best_val_acc"],
                    "reward": result.summary["best_reward"],
                }
            )
    report = full_report(space, data, config, strategies, seeds, histories)
    losses = {n: _mean_curve([h["losses"] for h in histories[n]]) for n in strategies}
    sampled = {n: _mean_curve([h["sampled"] for h in histories[n]]) for n in strategies}
    plot_compare(
        losses,
        run / "curves.png",
        f"{space.name}: mean ± s.e. over {seeds} seeds (full searches)",
        "iteration",
        "shared-weight training loss",
        panels={"mean sampled accuracy": sampled},
    )
    return report


def _mean_curve(runs: list[list[float]]) -> tuple[list[float], list[float]]:
    length = min(len(r) for r in runs)
    stats = [mean_se([r[i] for r in runs]) for i in range(length)]
    return [s["mean"] for s in stats], [s["se"] for s in stats]
