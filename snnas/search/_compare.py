"""Strategies compared under equal budgets: ``fixed`` (one supernet, frozen weights, the same
validation data for every strategy and seed) or ``full`` (the whole alternating search per
strategy and seed, the paper's Fig. 4)."""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from typing import Any

from snnas._run import Progress, RunDir
from snnas.data import DataSplits, TensorLoader
from snnas.errors import CheckpointError, ConfigError
from snnas.models import SepResNeXt
from snnas.search._config import SearchConfig
from snnas.search._loop import run_search
from snnas.search._plots import plot_compare
from snnas.search._reward import PolicyScorer, make_reward
from snnas.search.strategies import make_strategy
from snnas.space import SearchSpace, policy_json
from snnas.train import Accelerator, default_config, train

__all__ = ["compare"]

FRACTIONS = (0.25, 0.5, 1.0)
#: fixed mode scores every policy on the same validation images, at most this many
EVAL_IMAGES = 1024


def _mean_se(values: list[float]) -> dict[str, float]:
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "se": se}


def _curve_stats(runs: list[list[float]]) -> tuple[list[float], list[float]]:
    length = min(len(r) for r in runs)
    columns = [[r[i] for r in runs] for i in range(length)]
    stats = [_mean_se(c) for c in columns]
    return [s["mean"] for s in stats], [s["se"] for s in stats]


def _best_so_far(rewards: list[float]) -> list[float]:
    out: list[float] = []
    for r in rewards:
        out.append(max(r, out[-1]) if out else r)
    return out


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
    accel: Accelerator | None = None,
    progress: Progress | None = None,
    supernet_epochs: int | None = None,
) -> dict[str, Any]:
    """Compare ``strategies`` over ``seeds`` seeds; write report.json, report.md, curves.png."""
    accel = accel or Accelerator.pick()
    if config.reward == "pareto":
        raise ConfigError(
            None,
            "reward.mode",
            "accuracy, penalized or budget (a comparison ranks strategies by one number)",
            "pareto",
        )
    if mode not in ("fixed", "full"):
        raise ConfigError(None, "--mode", "fixed or full", mode)
    if seeds < 1 or (budget is not None and budget < 1):
        raise ConfigError(None, "--seeds/--budget", "integers >= 1", (seeds, budget))
    for name in strategies:  # refuse a bad name before any training
        make_strategy(name, space, 0, **_options(config, name))
    run.create()
    if mode == "fixed":
        report = _fixed(
            space,
            data,
            config,
            strategies,
            seeds,
            budget or 200,
            run,
            accel,
            progress,
            supernet_epochs,
        )
    else:
        report = _full(space, data, config, strategies, seeds, budget, run, accel, progress)
    run.write_json("report.json", report)
    (run / "report.md").write_text(_markdown(report))
    return report


def _options(config: SearchConfig, name: str) -> dict[str, Any]:
    """Strategy options of the config that apply to ``name`` ([strategy.<name>] tables)."""
    table = config.strategy.get(name.split(":")[0], {})
    return dict(table) if isinstance(table, dict) else {}


def _summarise(curves: dict[str, list[list[float]]], budget: int) -> tuple[dict[str, Any], float]:
    """Best-so-far statistics at 25/50/100% of the budget and evaluations to 95% of the best."""
    best_any = max(max(run) for runs in curves.values() for run in runs)
    threshold = 0.95 * best_any
    out: dict[str, Any] = {}
    for name, runs in curves.items():
        best = [_best_so_far(r) for r in runs]
        at = {}
        for f in FRACTIONS:
            k = max(1, round(f * budget))
            at[f"{int(100 * f)}%"] = _mean_se([b[min(k, len(b)) - 1] for b in best])
        hits = [next((i + 1 for i, v in enumerate(b) if v >= threshold), None) for b in best]
        reached = [h for h in hits if h is not None]
        out[name] = {
            "best_so_far": at,
            "evals_to_95pct": {
                "mean": statistics.fmean(reached) if reached else None,
                "reached": len(reached),
                "seeds": len(hits),
                "per_seed": hits,
            },
        }
    return out, threshold


def _fixed(
    space: SearchSpace,
    data: DataSplits,
    config: SearchConfig,
    strategies: list[str],
    seeds: int,
    budget: int,
    run: RunDir,
    accel: Accelerator,
    progress: Progress | None,
    supernet_epochs: int | None,
) -> dict[str, Any]:
    # One supernet for everyone (resumed if it was trained already).
    train_config = default_config("supernet", data.name, epochs=supernet_epochs, eval_policies=10)
    trained = train(
        space,
        data,
        train_config,
        RunDir(run / "supernet"),
        resume=True,
        accel=accel,
        progress=progress,
    )
    model = trained.model
    assert isinstance(model, SepResNeXt)
    images, labels = data.tensors["val"]
    n = min(len(labels), EVAL_IMAGES)
    if data.transforms is None:
        fixed_batches = list(TensorLoader(images[:n], labels[:n], config.eval_batch_size))
    else:
        fixed_batches = list(data.loader("val", config.eval_batch_size))[
            : max(1, n // config.eval_batch_size)
        ]
    scorer = PolicyScorer(space, model, fixed_batches, accel)
    full_val = PolicyScorer(space, model, list(data.loader("val", config.eval_batch_size)), accel)
    reward_of = make_reward(config)
    cache: dict[tuple[int, ...], tuple[float, float, float]] = {}

    def score(policy: dict[str, Any]) -> tuple[float, float, float]:
        key = space.encode(policy)
        if key not in cache:
            acc, ratio = scorer.accuracy(policy), scorer.ratio(policy)
            reward = reward_of(acc, ratio)
            assert not isinstance(reward, tuple)  # pareto is refused above
            cache[key] = (reward, acc, ratio)
        return cache[key]

    # Finished (strategy, seed) runs are kept in evaluations.jsonl, rewritten atomically after
    # each one, so an interrupted comparison picks up where it stopped.
    identity = {"space_hash": space.hash, "budget": budget, "config": config.to_json(),
                "supernet": train_config.to_json()}  # fmt: skip
    evaluations = _previous_evaluations(run, identity, budget)
    run.write_json("compare.json", identity)
    for e in evaluations:
        policy = space.validate(e["policy"])
        cache[space.encode(policy)] = (e["reward"], e["accuracy"], e["comm_ratio"])
    curves: dict[str, list[list[float]]] = {}
    finals: dict[str, Any] = {}
    total = len(strategies) * seeds * budget
    done = 0
    for name in strategies:
        curves[name] = []
        best_overall: tuple[float, dict[str, Any]] | None = None
        for seed in range(seeds):
            records = [e for e in evaluations if (e["strategy"], e["seed"]) == (name, seed)]
            if not records:
                strategy = make_strategy(name, space, seed, **_options(config, name))
                for i in range(budget):
                    policy = strategy.ask()
                    reward, acc, ratio = score(policy)
                    strategy.tell(policy, reward)
                    records.append({
                        "strategy": name, "seed": seed, "evaluation": i + 1,
                        "policy": policy_json(policy), "reward": reward,
                        "accuracy": acc, "comm_ratio": ratio,
                    })  # fmt: skip
                    if progress and (done + i + 1) % 10 == 0:
                        progress("compare", done + i + 1, total, {"strategy": name, "seed": seed})
                evaluations += records
                run.write_jsonl("evaluations.jsonl", evaluations)
            done += budget
            for e in records:
                if best_overall is None or e["reward"] > best_overall[0]:
                    best_overall = (e["reward"], space.validate(e["policy"]))
            curves[name].append([e["reward"] for e in records])
        assert best_overall is not None
        policy = best_overall[1]
        finals[name] = {
            "best_policy": policy_json(policy),
            "best_reward": best_overall[0],
            "val_acc_full": full_val.accuracy(policy),
            "comm_ratio": full_val.ratio(policy),
        }
    stats, threshold = _summarise(curves, budget)
    for name in strategies:
        stats[name]["final"] = finals[name]
    mean_curves = {
        name: _curve_stats([_best_so_far(r) for r in runs]) for name, runs in curves.items()
    }
    plot_compare(
        mean_curves,
        run / "curves.png",
        f"{space.name}: best-so-far reward, mean ± s.e. over {seeds} seeds",
        "evaluations",
        "best reward so far",
    )
    return {
        "mode": "fixed",
        "space": space.name,
        "space_hash": space.hash,
        "dataset": data.name,
        "strategies": strategies,
        "seeds": seeds,
        "budget": budget,
        "reward": config.reward,
        "threshold_95pct": threshold,
        "eval_images": n,
        "distinct_policies_scored": len(cache),
        "supernet": trained.metrics,
        "results": stats,
    }


def _previous_evaluations(
    run: RunDir, identity: dict[str, Any], budget: int
) -> list[dict[str, Any]]:
    """Complete (strategy, seed) runs of an earlier, interrupted call with the same settings."""
    if (run / "compare.json").exists() and run.read_json("compare.json") != identity:
        raise CheckpointError(
            f"{run.path} holds a comparison with other settings (space, budget or configuration);"
            " use another --name"
        )
    records = run.read_jsonl("evaluations.jsonl")  # [] when there is none
    counts: dict[tuple[str, int], int] = {}
    for e in records:
        counts[(e["strategy"], e["seed"])] = counts.get((e["strategy"], e["seed"]), 0) + 1
    return [e for e in records if counts[(e["strategy"], e["seed"])] == budget]


def _full(
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
    curves: dict[str, list[list[float]]] = {}
    losses: dict[str, list[list[float]]] = {}
    sampled: dict[str, list[list[float]]] = {}
    finals: dict[str, Any] = {}
    for name in strategies:
        curves[name], losses[name], sampled[name] = [], [], []
        vals = []
        for seed in range(seeds):
            sub = RunDir(run / f"{name.replace(':', '-')}-s{seed}")
            one = replace(config, strategy=_options(config, name))
            result = run_search(
                space, data, one, name, sub, seed=seed, resume=True, accel=accel, progress=progress
            )
            curves[name].append([e["reward"] for e in result.events])
            log = sub.read_jsonl("iterations.jsonl")
            losses[name].append([r["train_loss"] for r in log])
            sampled[name].append([r["mean_sampled_accuracy"] for r in log])
            vals.append(result.summary["best_val_acc"])
        finals[name] = {"best_val_acc": _mean_se(vals), "per_seed": vals}
    budget_evals = min(len(r) for runs in curves.values() for r in runs)
    stats, threshold = _summarise(curves, budget_evals)
    for name in strategies:
        stats[name]["final"] = finals[name]
        stats[name]["per_iteration"] = {
            "train_loss": _curve_stats(losses[name]),
            "mean_sampled_accuracy": _curve_stats(sampled[name]),
        }
    plot_compare(
        {n: _curve_stats(losses[n]) for n in strategies},
        run / "curves.png",
        f"{space.name}: mean ± s.e. over {seeds} seeds (full searches)",
        "iteration",
        "shared-weight training loss",
        panels={"mean sampled accuracy": {n: _curve_stats(sampled[n]) for n in strategies}},
    )
    return {
        "mode": "full",
        "space": space.name,
        "space_hash": space.hash,
        "dataset": data.name,
        "strategies": strategies,
        "seeds": seeds,
        "iterations": config.iterations,
        "budget": budget_evals,
        "reward": config.reward,
        "threshold_95pct": threshold,
        "results": stats,
    }


def _fmt(stat: dict[str, float]) -> str:
    return f"{stat['mean']:.4f} ± {stat['se']:.4f}"


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Strategy comparison: {report['space']} ({report['mode']} mode)",
        "",
        f"{report['seeds']} seeds per strategy, {report['budget']} evaluations each, reward "
        f"`{report['reward']}` on {report['dataset']} validation data. Best-so-far reward, "
        "mean ± standard error over seeds; evaluations to reach 95% of the best reward any "
        f"strategy found ({report['threshold_95pct']:.4f}).",
        "",
        "| strategy | best @25% | best @50% | best @100% | evals to 95% (seeds) | final |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in report["results"].items():
        e = r["evals_to_95pct"]
        to95 = (
            f"{e['mean']:.1f} ({e['reached']}/{e['seeds']})" if e["mean"] else f"- (0/{e['seeds']})"
        )
        final = r["final"]
        if "val_acc_full" in final:
            end = f"{final['val_acc_full']:.4f} val, {100 * final['comm_ratio']:.1f}% comm"
        else:
            end = f"{_fmt(final['best_val_acc'])} val"
        at = r["best_so_far"]
        lines.append(
            f"| {name} | {_fmt(at['25%'])} | {_fmt(at['50%'])} | {_fmt(at['100%'])} | "
            f"{to95} | {end} |"
        )
    lines += ["", "`curves.png` plots the curves; `report.json` has every figure.", ""]
    return "\n".join(lines)
