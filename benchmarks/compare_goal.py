"""The controller's goal (issues 9 and 15), measured on a fixed-mode comparison.

Penalized rewards: REINFORCE reaches random search's final best (median over seeds of the
best reward after the whole budget) within half the budget, judged by

  * the median over seeds of the evaluations REINFORCE needs to reach that value
    (a seed that never does counts as budget + 1), which must be <= budget / 2, and
  * a one-sided paired Wilcoxon signed-rank test over seeds that REINFORCE's best after half
    the budget exceeds random's best after the whole budget: p < 0.05.

Pareto rewards: REINFORCE's median hypervolume of the (accuracy, live communication) front
beats random's on the search half and on the held-out half (the two-sided paired test's
p-value beside it).

When the goal is not reached, what limits it: ``--snr N`` scores the first N policies of the
reference sample deployably on the held-out half and gives the search proxy's
signal-to-noise ratio (the spread of the held-out penalized reward over policies against
the spread of the proxy's error), and ``--finetuned K`` fine-tunes K reference policies
spread over the proxy's ranking (``--finetune-epochs`` from the shared weights, the
dataset's fine-tuning recipe otherwise) and gives Kendall's tau and Spearman's rho of the
proxy (and of the held-out score) against their fine-tuned test accuracy.

It runs ``snnas compare`` with its defaults on the quickstart (10 seeds, 200 evaluations,
penalized, pareto and accuracy rewards; resumable) unless the run folder holds a report,
then reads ``evaluations.jsonl`` and ``report.json`` (``--snr`` and ``--finetuned`` need only the
trained supernet and the reference sample, and run beside an unfinished comparison):

    python benchmarks/compare_goal.py [--run runs/compare-quickstart] [--json]
    python benchmarks/compare_goal.py --run runs/compare-fashion \
        --space search_spaces/fashion.toml --dataset fashion-mnist --snr 200 --finetuned 8
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from snnas._run import RunDir  # noqa: E402
from snnas.search._stats import best_so_far, first_reach  # noqa: E402


def _fixed(run: Path, space_file: Path, dataset: str, data_dir: Path | None) -> Any:
    """The comparison's harness, set up on its trained supernet (nothing is trained; the
    settings come from ``compare.json``, so this works while the searches still run)."""
    from snnas.data import load_for_space
    from snnas.search._compare_fixed import FixedComparison
    from snnas.search._config import SearchConfig, with_defaults
    from snnas.space import load_space
    from snnas.train import Accelerator

    settings = RunDir(run).read_json("compare.json")
    config = SearchConfig.from_json(with_defaults(settings["config"]))  # --set, --profile too
    space = load_space(space_file)
    data = load_for_space(dataset, space, data_dir=data_dir)
    fixed = FixedComparison(
        space, data, config, ["random"], 1, settings["budget"],
        RunDir(run), Accelerator.pick("cpu"), None, ["penalized"], settings["reference"],
    )  # fmt: skip
    # The supernet's own epochs: with the default instead, set-up would train it further
    # (a resumed run continues to its epochs) and every score here would be another network's.
    epochs = int(settings["supernet"]["epochs"])
    trained = len(RunDir(run / "supernet").read_jsonl("metrics.jsonl"))
    if trained != epochs:
        raise SystemExit(f"{run}/supernet has {trained} epochs, compare.json says {epochs}")
    fixed._setup(epochs)
    return fixed


def _run_compare(
    run: Path, space_file: Path, dataset: str, data_dir: Path | None, seeds: int, budget: int
) -> float:
    from snnas.data import load_for_space
    from snnas.search import load_search_config
    from snnas.search._compare import compare
    from snnas.space import load_space
    from snnas.train import Accelerator

    space = load_space(space_file)
    tic = time.perf_counter()
    compare(
        space,
        load_for_space(dataset, space, data_dir=data_dir),
        load_search_config(dataset),
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
    out: dict[str, Any] = {"time_s": report.get("time_s", {})}
    if "reinforce" in curves and "random" in curves:
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
        out["penalized"] = {
            "random_final_best_median": target,
            "reinforce_evals_to_it": reach,
            "reinforce_evals_to_it_median": statistics.median(reach),
            "half_budget": half,
            "reinforce_best_at_half_median": statistics.median(at_half),
            "p_reinforce_half_gt_random_full": p_half,
            "p_vs_random_auc": penalized["reinforce"]["p_vs_random"],
            "met": statistics.median(reach) <= half and p_half < 0.05,
        }
    pareto = report["results"].get("pareto", {})
    if "reinforce" in pareto and "random" in pareto:
        hv = {k: pareto[k]["hypervolume"] for k in ("reinforce", "random")}
        held = {k: pareto[k]["heldout"] for k in ("reinforce", "random")}
        out["pareto"] = {
            "hypervolume_median": hv,
            "heldout_hypervolume_median": held,
            "p_vs_random_auc": pareto["reinforce"]["p_vs_random"],
            "met": hv["reinforce"] > hv["random"] and held["reinforce"] > held["random"],
        }
    return out


def incumbents(fixed: Any) -> dict[str, dict[str, float]]:
    """Why held-out rewards differ: the penalized incumbents' accuracy on the search half
    (batch statistics, as searched, and deployable), on the held-out half (deployable) and
    their live communication ratio; medians over seeds."""
    import torch

    from snnas.search._reward import DEPLOY_CALIB_IMAGES, PolicyScorer, calibration_images

    report = fixed.run_dir.read_json("report.json")
    space, search = fixed.space, fixed.scorer
    deployable = PolicyScorer(
        space, search.model, torch.cat([x for x, _ in search.batches]),
        torch.cat([y for _, y in search.batches]), fixed.accel, batch_size=search.batch_size,
        calibration=calibration_images(fixed.data, DEPLOY_CALIB_IMAGES),
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


def _reference(fixed: Any, n: int) -> list[tuple[Any, float, float]]:
    """The first ``n`` reference policies with their search-half accuracy and ratio."""
    rows = fixed.run_dir.read_jsonl("reference.jsonl")[:n]
    key = fixed.cost_key  # comm_ratio, or latency_ratio for a comparison under --profile
    return [(fixed.space.validate(r["policy"]), r["accuracy"], r[key]) for r in rows]


def _agreement(proxy: list[float], truth: list[float]) -> dict[str, float]:
    """Spread of ``truth`` over policies (signal), of ``proxy - truth`` (noise), their ratio
    and the rank correlations of the two."""
    from scipy import stats

    signal = statistics.stdev(truth)
    noise = statistics.stdev([a - b for a, b in zip(proxy, truth, strict=True)])
    return {
        "signal_std": signal,
        "noise_std": noise,
        "snr": signal / noise,
        "kendall": float(stats.kendalltau(proxy, truth).statistic),
        "spearman": float(stats.spearmanr(proxy, truth).statistic),
    }


def snr(fixed: Any, n: int, lam: float) -> dict[str, Any]:
    """The search proxy against the held-out deployable score on ``n`` reference policies:
    signal = the held-out penalized reward's standard deviation over the policies, noise =
    the standard deviation of (proxy - held-out); and the rank correlations."""
    tic = time.perf_counter()
    proxy, held, acc_proxy, acc_held = [], [], [], []
    for policy, acc, ratio in _reference(fixed, n):
        h = fixed.heldout_accuracy(policy)
        proxy.append(acc - lam * ratio)
        held.append(h - lam * ratio)
        acc_proxy.append(acc)
        acc_held.append(h)
    return {
        "policies": len(proxy),
        "penalized": _agreement(proxy, held),
        "accuracy": _agreement(acc_proxy, acc_held),
        "time_s": time.perf_counter() - tic,
    }


def finetuned(fixed: Any, dataset: str, k: int, n: int, epochs: int | None) -> dict[str, Any]:
    """Fine-tune ``k`` of the first ``n`` reference policies, spread evenly over the search
    proxy's penalized ranking; rank correlations of the proxy and of the held-out score
    against the fine-tuned test accuracy."""
    from finetune_policies import finetune_policy
    from scipy import stats

    from snnas.train._finetune import default_finetune_config

    recipe = default_finetune_config(dataset, epochs=epochs)
    lam = fixed.config.reward_lambda
    ranked = sorted(_reference(fixed, n), key=lambda r: r[1] - lam * r[2])
    picks = [ranked[round(i * (len(ranked) - 1) / max(k - 1, 1))] for i in range(k)]
    rows = []
    for policy, acc, ratio in picks:
        tuned = finetune_policy(
            fixed.space, fixed.data, fixed.scorer.model, policy, epochs=recipe.epochs,
            lr=recipe.lr, batch_size=recipe.batch_size, augment=recipe.augment,
            accel=fixed.accel,
        )  # fmt: skip
        rows.append({
            "proxy_acc": acc, "heldout_acc": fixed.heldout_accuracy(policy), "ratio": ratio,
            **tuned,
        })  # fmt: skip
        print(f"  fine-tuned {len(rows)}/{k}: {rows[-1]}", file=sys.stderr, flush=True)

    def corr(a: str, b: str) -> dict[str, float]:
        x, y = [r[a] for r in rows], [r[b] for r in rows]
        return {
            "kendall": float(stats.kendalltau(x, y).statistic),
            "spearman": float(stats.spearmanr(x, y).statistic),
        }

    return {
        "recipe": {"epochs": recipe.epochs, "lr": recipe.lr, "batch_size": recipe.batch_size},
        "policies": rows,
        "proxy_vs_test": corr("proxy_acc", "test_acc"),
        "heldout_vs_test": corr("heldout_acc", "test_acc"),
        "before_vs_test": corr("val_acc_before", "test_acc"),
        "test_acc_range": [min(r["test_acc"] for r in rows), max(r["test_acc"] for r in rows)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs/compare-quickstart")
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces/quickstart.toml")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--snr", type=int, default=0, help="reference policies for the SNR")
    parser.add_argument("--finetuned", type=int, default=0, help="policies to fine-tune")
    parser.add_argument("--finetune-epochs", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    finished = (args.run / "report.json").exists()
    if not finished and not (args.snr or args.finetuned):
        _run_compare(args.run, args.space, args.dataset, args.data_dir, args.seeds, args.budget)
        finished = True
    result: dict[str, Any] = goal(args.run) if finished else {}
    fixed = _fixed(args.run, args.space, args.dataset, args.data_dir)
    if finished:
        result["incumbents"] = incumbents(fixed)
    if args.snr:
        result["snr"] = snr(fixed, args.snr, fixed.config.reward_lambda)
    if args.finetuned:
        result["finetuned"] = finetuned(
            fixed, args.dataset, args.finetuned, max(args.snr, args.finetuned), args.finetune_epochs
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return
    if "penalized" in result:
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
    if "incumbents" in result:
        print("penalized incumbents (medians): search-half accuracy as searched / deployable,")
        print("held-out accuracy (deployable), live communication ratio")
    for name, row in result.get("incumbents", {}).items():
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
    if "snr" in result:
        for mode in ("penalized", "accuracy"):
            row = result["snr"][mode]
            print(
                f"proxy vs held-out ({mode}, {result['snr']['policies']} policies): signal "
                f"{row['signal_std']:.4f}, noise {row['noise_std']:.4f}, SNR {row['snr']:.2f}, "
                f"tau {row['kendall']:.3f}, rho {row['spearman']:.3f}"
            )
    if "finetuned" in result:
        ft = result["finetuned"]
        print(
            f"fine-tuned ({len(ft['policies'])} policies, test "
            f"{ft['test_acc_range'][0]:.4f}-{ft['test_acc_range'][1]:.4f}): proxy tau "
            f"{ft['proxy_vs_test']['kendall']:.3f} rho {ft['proxy_vs_test']['spearman']:.3f}; "
            f"held-out tau {ft['heldout_vs_test']['kendall']:.3f} "
            f"rho {ft['heldout_vs_test']['spearman']:.3f}"
        )


if __name__ == "__main__":
    main()
