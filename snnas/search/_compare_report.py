"""``report.md`` of a comparison, and the report of full mode (whole searches per seed)."""

from __future__ import annotations

from typing import Any

from snnas.data import DataSplits
from snnas.search._config import SearchConfig
from snnas.search._cost import CostTerm
from snnas.search._pareto import pareto_front
from snnas.search._stats import auc, best_so_far, mean_se, summary, wilcoxon_p
from snnas.space import SearchSpace

__all__ = ["full_report", "markdown"]


def _f(value: float, digits: int = 4) -> str:
    """``value`` to ``digits`` places, never ``-0.0000`` (a tiny negative rounds to 0)."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _ci(stat: dict[str, Any], digits: int = 4) -> str:
    lo, hi = stat["ci95"]
    return f"[{_f(lo, digits)}, {_f(hi, digits)}]"


def _evals(value: float, budget: int) -> str:
    """Evaluations to the top 1%: a seed that never got there counts as ``budget + 1`` in
    the statistics; a median or bound beyond the budget shows as ``>budget``."""
    return f">{budget}" if value > budget else f"{value:g}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def cost_sentence(cost: dict[str, Any] | None) -> str:
    """The cost term of the cost-aware modes in words (older reports: communication)."""
    if cost is None or cost.get("cost", "comm") == "comm":
        return (
            "Cost term of the cost-aware modes: the live communication ratio (policy bytes "
            "over a ring all-reduce's)."
        )
    where = "" if cost["profile"] == cost["profile_name"] else f" ({cost['profile']})"
    return (
        f"Cost term of the cost-aware modes: the latency ratio, a policy's simulated latency "
        f"of one image on the device profile {cost['profile_name']}{where} over "
        f"the densest policy's {cost['reference_ms']:.4f} ms (every device sending its whole "
        "stream, float32); the communication ratio is recorded beside it."
    )


def _cost_axis(cost: dict[str, Any] | None) -> tuple[str, str]:
    """(the cost's key, its column title)."""
    if cost is None or cost.get("cost", "comm") == "comm":
        return "comm_ratio", "communication ratio"
    return "latency_ratio", f"latency ratio (x {cost['reference_ms']:.4f} ms)"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one table per reward mode, the headline first."""
    if report["mode"] == "full":
        return _markdown_full(report)
    lines = [
        f"# Strategy comparison: {report['space']} (fixed mode)",
        "",
        f"{_plural(report['seeds'], 'seed')} per strategy, "
        f"{_plural(report['budget'], 'evaluation')} each, on "
        f"{report['dataset']}: searches score policies on {report['split']['search_images']} "
        f"validation images ("
        + {
            "batch": "batch statistics",
            "running": "the supernet's running statistics",
            "recalibrated": f"batch norm recalibrated on {report['scoring']['calib_images']} "
            "training images",
        }[report["scoring"]["search"]]
        + f"); each seed's incumbent is re-scored on {report['split']['heldout_images']} "
        f"held-out images ({report['scoring']['heldout']}). Medians over seeds with "
        "bootstrap 95% intervals; AUC is the mean best-so-far value over the budget; regret "
        "is the reference sample's best minus the strategy's final best; p is a paired "
        "two-sided Wilcoxon signed-rank test of AUC against random search over seeds.",
        "",
        cost_sentence(report.get("cost")),
        "",
    ]
    degraded = report.get("degraded")
    if degraded:
        training = degraded["parity_training"]
        lines += [
            "Parity space: the parity devices were trained on the frozen supernet "
            f"({training['epochs']} epochs, validation A_degraded "
            f"{training['val_degraded_acc']:.4f}); every policy also gets its degraded "
            "accuracy A_degraded (mean over every erasure position, batch statistics), the "
            "communication ratio includes the parity bytes, `pareto` has three objectives "
            "and the other modes use A_overall(f) = (1 - f) acc + f A_degraded with "
            f"f = {degraded['unavailability']:g}.",
            "",
        ]
    for reward in report["rewards"]:
        ref = report["reference"][reward]
        head = " (headline)" if reward == report["headline"] else ""
        lines += [f"## Reward `{reward}`{head}", ""]
        if reward == "pareto":
            point = ref["reference_point"]
            held = ref["heldout_reference_point"]
            three = "degraded_accuracy" in point
            key, _ = _cost_axis(report.get("cost"))
            cost = report.get("cost")
            axis, ref_text = (
                "live communication",
                f"communication ratio {point[key]:.1f} (a ring all-reduce's bytes)",
            )
            if key == "latency_ratio" and cost is not None:
                axis = "latency ratio"
                ref_text = (
                    f"latency ratio {point[key]:.1f} (the densest policy's "
                    f"{cost['reference_ms']:.4f} ms on {cost['profile_name']})"
                )
            lines += [
                f"Values are hypervolumes of the (accuracy, {axis}"
                + (", degraded accuracy" if three else "")
                + ") front, "
                f"reference point accuracy {point['accuracy']:.4f} (the no-communication "
                f"policy), {ref_text}"
                + (
                    f" and degraded accuracy {point['degraded_accuracy']:.4f} (the "
                    "no-communication policy without protection)"
                    if three
                    else ""
                )
                + "; held-out: the front re-scored on the held-out images, "
                f"reference accuracy {held['accuracy']:.4f}"
                + (f", degraded {held['degraded_accuracy']:.4f}" if three else "")
                + f". The reference sample ({ref['policies']} uniform policies) has a front of "
                f"{ref['front_size']} policies and hypervolume {ref['hypervolume']:.5f}; "
                "top 1% means within the sample's best 1% by additive epsilon gap to its "
                f"front (threshold {_f(ref['top1pct_threshold'])}).",
                "",
            ]
        else:
            lines += [
                f"Reference sample: {ref['policies']} uniform policies, best "
                f"{_f(ref['best'])}, median {_f(ref['median'])}, top-1% threshold "
                f"{_f(ref['top1pct_threshold'])}.",
                "",
            ]
        digits = 5 if reward == "pareto" else 4
        lines += [
            "| strategy | AUC [95% CI] | final | regret [95% CI] | evals to top 1% "
            "(reached) | held-out [95% CI] | p vs random |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, r in report["results"][reward].items():
            s = r["stats"]
            e = s["evals_to_top1pct"]
            budget = report["budget"]
            lo, hi = e["ci95"]
            reach = (
                f"{_evals(e['median'], budget)} [{_evals(lo, budget)}, {_evals(hi, budget)}] "
                f"({e['reached']}/{report['seeds']})"
            )
            lines.append(
                f"| {name} | {_f(r['auc'], digits)} {_ci(s['auc'], digits)} | "
                f"{_f(r['final'], digits)} | {_f(r['regret'], digits)} "
                f"{_ci(s['regret'], digits)} | {reach} | {_f(r['heldout'], digits)} "
                f"{_ci(s['heldout'], digits)} | {_p(r['p_vs_random'])} |"
            )
        for name in report["skipped"].get(reward, []):
            lines.append(f"| {name} | not a multi-objective strategy: skipped | | | | | |")
        lines.append("")
        if reward == "pareto":
            lines += _front(report["results"][reward], _cost_axis(report.get("cost"))[1])
    lines += [
        f"Evaluations to the top 1%: a seed that never got there within the budget counts as "
        f"more than it in the medians and intervals (shown as >{report['budget']}; "
        "`report.json` stores it as the budget + 1, `censored_at`); the count in brackets is "
        "the seeds that got there. `curves.png` plots the mean curves; `report.json` has every "
        "figure per seed.",
        "",
    ]
    return "\n".join(lines)


#: Most rows of the front table in report.md (report.json has every seed's front).
FRONT_ROWS = 20


def _front(results: dict[str, Any], column: str = "communication ratio") -> list[str]:
    """The non-dominated policies found by any strategy and seed (search-half scores)."""
    points = [
        (*p, (name, seed))
        for name, r in results.items()
        for seed, front in enumerate(r.get("fronts", []))
        for p in front
    ]
    front = pareto_front(points)
    if not front:
        return []
    three = len(front[0]) == 4
    lines = [
        f"Front of every strategy's final fronts together ({len(front)} policies"
        + (f", the {FRONT_ROWS} most accurate shown" if len(front) > FRONT_ROWS else "")
        + "; search-half scores):",
        "",
        f"| accuracy | {column} |"
        + (" degraded accuracy |" if three else "")
        + " found by (seed) |",
        "| ---: | ---: |" + (" ---: |" if three else "") + " --- |",
    ]
    for p in sorted(front, key=lambda p: -p[0])[:FRONT_ROWS]:
        name, seed = p[-1]
        cells = f"| {_f(p[0])} | {_f(p[1])} |" + (f" {_f(p[2])} |" if three else "")
        lines.append(f"{cells} {name} ({seed}) |")
    return [*lines, ""]


def full_report(
    space: SearchSpace,
    data: DataSplits,
    config: SearchConfig,
    strategies: list[str],
    seeds: int,
    histories: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """Full mode: every search's rewards per evaluation (weights change as it trains), its
    selected policy's deployable validation score, AUC and the test against random."""
    results: dict[str, Any] = {}
    for name, runs in histories.items():
        curves = [best_so_far(h["rewards"]) for h in runs]
        results[name] = {
            "auc": summary([auc(c) for c in curves])["median"],
            "final": summary([c[-1] for c in curves])["median"],
            "selected_reward": summary([h["reward"] for h in runs])["median"],
            "regret": None,
            "evals_to_top1pct": None,
            "p_vs_random": None,
            "stats": {
                "auc": summary([auc(c) for c in curves]),
                "selected_reward": summary([h["reward"] for h in runs]),
                "selected_val_acc": summary([h["val"] for h in runs]),
            },
            "per_iteration": {
                "train_loss": [h["losses"] for h in runs],
                "mean_sampled_accuracy": [h["sampled"] for h in runs],
            },
            "final_mean_se": mean_se([c[-1] for c in curves]),
        }
    if "random" in results:
        base = results["random"]["stats"]["auc"]["per_seed"]
        for name, r in results.items():
            if name != "random":
                r["p_vs_random"] = wilcoxon_p(r["stats"]["auc"]["per_seed"], base)
    return {
        "mode": "full",
        "cost": CostTerm.from_config(space, config).to_json(),
        "space": space.name,
        "space_hash": space.hash,
        "dataset": data.name,
        "strategies": strategies,
        "seeds": seeds,
        "iterations": config.iterations,
        "budget": min(len(h["rewards"]) for runs in histories.values() for h in runs),
        "rewards": [config.reward],
        "headline": config.reward,
        "results": {config.reward: results},
        "time_s": {},
    }


def _markdown_full(report: dict[str, Any]) -> str:
    reward = report["headline"]
    lines = [
        f"# Strategy comparison: {report['space']} (full mode)",
        "",
        f"{report['seeds']} whole searches per strategy, "
        f"{_plural(report['iterations'], 'iteration')} "
        f"({_plural(report['budget'], 'evaluation')}), reward `{reward}` on "
        f"{report['dataset']}. "
        "Medians over seeds with bootstrap 95% intervals; the selected reward is deployable "
        "(batch norm recalibrated, whole validation split).",
        "",
        cost_sentence(report.get("cost")),
        "",
        "| strategy | AUC [95% CI] | final best | selected reward [95% CI] | p vs random |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in report["results"][reward].items():
        s = r["stats"]
        lines.append(
            f"| {name} | {_f(r['auc'])} {_ci(s['auc'])} | {_f(r['final'])} | "
            f"{_f(r['selected_reward'])} {_ci(s['selected_reward'])} | {_p(r['p_vs_random'])} |"
        )
    lines += ["", "`curves.png` plots training loss and mean sampled accuracy.", ""]
    return "\n".join(lines)
