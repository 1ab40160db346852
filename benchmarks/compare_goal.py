"""Issue 9's goal for the controller, measured on a fixed-mode comparison of the quickstart.

Penalized rewards: REINFORCE reaches random search's final best (median over seeds of the
best reward after the whole budget) within half the budget, judged by

  * the median over seeds of the evaluations REINFORCE needs to reach that value
    (a seed that never does counts as budget + 1), which must be <= budget / 2, and
  * a one-sided paired Wilcoxon signed-rank test over seeds that REINFORCE's best after half
    the budget exceeds random's best after the whole budget: p < 0.05.

Pareto rewards: REINFORCE's median hypervolume of the (accuracy, live communication) front
is at least random's (with the two-sided paired test's p-value beside it).

It runs ``snnas compare`` with its defaults on the quickstart (10 seeds, 200 evaluations,
penalized, pareto and accuracy rewards; resumable) unless the run folder holds one, then
reads ``evaluations.jsonl`` and ``report.json``:

    python benchmarks/compare_goal.py [--run runs/compare-quickstart] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnas._run import RunDir  # noqa: E402
from snnas.search._stats import best_so_far, first_reach  # noqa: E402


def _run_compare(run: Path, seeds: int, budget: int) -> float:
    from snnas.data import load_for_space
    from snnas.search import load_search_config
    from snnas.search._compare import compare
    from snnas.space import load_space
    from snnas.train import Accelerator

    space = load_space(ROOT / "search_spaces/quickstart.toml")
    tic = time.perf_counter()
    compare(
        space,
        load_for_space("digits", space),
        load_search_config("digits"),
        ["reinforce", "random", "evolution", "optuna:tpe"],
        seeds,
        budget,
        RunDir(run),
        accel=Accelerator.pick("cpu"),
    )
    return time.perf_counter() - tic


def goal(run: Path) -> dict[str, Any]:
    """The goal's figures from a finished comparison."""
    from scipy.stats import wilcoxon

    folder = RunDir(run)
    report = folder.read_json("report.json")
    budget, seeds = report["budget"], report["seeds"]
    curves: dict[str, list[list[float]]] = {}
    for e in folder.read_jsonl("evaluations.jsonl"):
        if e["reward_mode"] == "penalized":
            curves.setdefault(e["strategy"], [[] for _ in range(seeds)])[e["seed"]].append(
                e["reward"]
            )
    best = {k: [best_so_far(c) for c in v] for k, v in curves.items()}
    random_final = [c[-1] for c in best["random"]]
    target = statistics.median(random_final)
    half = budget // 2
    reach = [first_reach(c, target) or budget + 1 for c in best["reinforce"]]
    at_half = [c[half - 1] for c in best["reinforce"]]
    if all(a == b for a, b in zip(at_half, random_final, strict=True)):
        p_half = 1.0
    else:
        p_half = float(
            wilcoxon(at_half, random_final, zero_method="zsplit", alternative="greater").pvalue
        )
    penalized = report["results"]["penalized"]
    pareto = report["results"].get("pareto", {})
    out: dict[str, Any] = {
        "penalized": {
            "random_final_best_median": target,
            "reinforce_evals_to_it": reach,
            "reinforce_evals_to_it_median": statistics.median(reach),
            "half_budget": half,
            "reinforce_best_at_half_median": statistics.median(at_half),
            "p_reinforce_half_gt_random_full": p_half,
            "p_vs_random_auc": penalized["reinforce"]["p_vs_random"],
            "met": statistics.median(reach) <= half and p_half < 0.05,
        },
        "time_s": report.get("time_s", {}),
    }
    if "reinforce" in pareto and "random" in pareto:
        hv = {k: pareto[k]["hypervolume"] for k in ("reinforce", "random")}
        out["pareto"] = {
            "hypervolume_median": hv,
            "heldout_hypervolume_median": {
                k: pareto[k]["heldout"] for k in ("reinforce", "random")
            },
            "p_vs_random_auc": pareto["reinforce"]["p_vs_random"],
            "met": hv["reinforce"] >= hv["random"],
        }
    return out


def incumbents(run: Path) -> dict[str, dict[str, float]]:
    """Why held-out rewards differ: the penalized incumbents' accuracy on the search half
    (batch statistics, as searched, and deployable), on the held-out half (deployable) and
    their live communication ratio; medians over seeds."""
    import torch

    from snnas.data import load_for_space
    from snnas.search import load_search_config
    from snnas.search._compare_fixed import FixedComparison
    from snnas.search._reward import DEPLOY_CALIB_IMAGES, PolicyScorer, calibration_images
    from snnas.space import load_space
    from snnas.train import Accelerator

    report = RunDir(run).read_json("report.json")
    space = load_space(ROOT / "search_spaces/quickstart.toml")
    data = load_for_space("digits", space)
    fixed = FixedComparison(
        space, data, load_search_config("digits"), report["strategies"], report["seeds"],
        report["budget"], RunDir(run), Accelerator.pick("cpu"), None, report["rewards"],
        report["reference"][report["headline"]]["policies"],
    )  # fmt: skip
    fixed._setup(None)
    search = fixed.scorer
    deployable = PolicyScorer(
        space, search.model, torch.cat([x for x, _ in search.batches]),
        torch.cat([y for _, y in search.batches]), fixed.accel, batch_size=search.batch_size,
        calibration=calibration_images(data, DEPLOY_CALIB_IMAGES),
    )  # fmt: skip
    out = {}
    for name, result in report["results"]["penalized"].items():
        rows = []
        for policy in map(space.validate, result["incumbents"]):
            rows.append(
                (
                    search.accuracy(policy),
                    deployable.accuracy(policy),
                    fixed.heldout_accuracy(policy),
                    search.ratio(policy),
                )
            )
        columns = [statistics.median(c) for c in zip(*rows, strict=True)]
        keys = ("search_acc_batch", "search_acc_deployable", "heldout_acc", "live_ratio")
        out[name] = dict(zip(keys, columns, strict=True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs/compare-quickstart")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (args.run / "report.json").exists():
        _run_compare(args.run, args.seeds, args.budget)
    result = goal(args.run)
    result["incumbents"] = incumbents(args.run)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    pen = result["penalized"]
    print(
        f"penalized: random's final best (median of {args.seeds} seeds) "
        f"{pen['random_final_best_median']:.4f}; reinforce reaches it in "
        f"{pen['reinforce_evals_to_it_median']:g} evaluations (median; half the budget is "
        f"{pen['half_budget']}); its best after half the budget "
        f"{pen['reinforce_best_at_half_median']:.4f}"
        f" (one-sided p = {pen['p_reinforce_half_gt_random_full']:.3g}); AUC p vs random "
        f"{pen['p_vs_random_auc']}: goal {'met' if pen['met'] else 'NOT met'}"
    )
    print("penalized incumbents (medians): search-half accuracy as searched / deployable, ")
    print("held-out accuracy (deployable), live communication ratio")
    for name, row in result["incumbents"].items():
        print(
            f"  {name:<12} {row['search_acc_batch']:.4f} / {row['search_acc_deployable']:.4f}"
            f"  {row['heldout_acc']:.4f}  {row['live_ratio']:.4f}"
        )
    if "pareto" in result:
        par = result["pareto"]
        hv = par["hypervolume_median"]
        print(
            f"pareto: hypervolume reinforce {hv['reinforce']:.5f} vs random {hv['random']:.5f} "
            f"(held-out {par['heldout_hypervolume_median']['reinforce']:.5f} vs "
            f"{par['heldout_hypervolume_median']['random']:.5f}; AUC p {par['p_vs_random_auc']})"
            f": goal {'met' if par['met'] else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
