"""Which cheap score ranks policies like the deployable one (docs/search.md).

Trains (or reuses) the quickstart supernet of ``snnas compare`` (30 epochs of uniform
policies), samples policies uniformly, and scores each with:

  deployable        batch norm recalibrated per policy on 1,024 training images, eval mode
  batch@m           each minibatch's own statistics, minibatches of m validation images
  running           the supernet's shared running statistics
  recal@n           recalibrated on n training images (1, 2, 4 training batches of 32)

all on the whole validation split (180 images). It prints Kendall's tau and Spearman's rho
of every proxy against the deployable score (accuracy, and the penalized reward
acc - 0.1 x live ratio), the cost of each proxy per policy, and, for a handful of policies
spread over the deployable ranking, the same correlations against fine-tuned accuracy
(benchmarks/finetune_policies.py: 5 epochs at lr 0.01 from the shared weights; test split).

    python benchmarks/proxies.py [--policies 60] [--finetuned 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from finetune_policies import finetune_policy  # noqa: E402
from scipy import stats  # noqa: E402

from snnas._run import RunDir  # noqa: E402
from snnas.data import load_for_space  # noqa: E402
from snnas.models import SepResNeXt  # noqa: E402
from snnas.search._reward import (  # noqa: E402
    DEPLOY_CALIB_IMAGES,
    PolicyScorer,
    calibration_images,
)
from snnas.space import load_space  # noqa: E402
from snnas.train import Accelerator, default_config, train  # noqa: E402

LAMBDA = 0.1  # the penalized reward's default


def _proxies() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        "deployable": {"bn": "recalibrated", "calib": DEPLOY_CALIB_IMAGES}
    }
    for m in (180, 90, 64, 32):
        out[f"batch@{m}"] = {"bn": "batch", "batch_size": m}
    out["running"] = {"bn": "running"}
    for n in (32, 64, 128, 256):
        out[f"recal@{n}"] = {"bn": "recalibrated", "calib": n}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="search_spaces/quickstart.toml")
    parser.add_argument("--run", default="runs/proxies", help="folder for the supernet")
    parser.add_argument("--policies", type=int, default=60)
    parser.add_argument("--finetuned", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    accel = Accelerator.pick("cpu")
    space = load_space(ROOT / args.space)
    data = load_for_space("digits", space)
    trained = train(
        space,
        data,
        default_config("supernet", "digits", eval_policies=10),
        RunDir(ROOT / args.run / "supernet"),
        resume=True,
        accel=accel,
    )
    model = trained.model
    assert isinstance(model, SepResNeXt)
    images, labels = data.tensors["val"]
    rng = random.Random(args.seed)
    policies = [space.sample(rng) for _ in range(args.policies)]
    scores: dict[str, list[float]] = {}
    cost: dict[str, float] = {}
    calib_cache: dict[int, torch.Tensor] = {}
    ratios = []
    for name, spec in _proxies().items():
        calib = None
        if spec["bn"] == "recalibrated":
            n = spec["calib"]
            calib = calib_cache.setdefault(n, calibration_images(data, n))
        scorer = PolicyScorer(
            space,
            model,
            images,
            labels,
            accel,
            batch_size=spec.get("batch_size", len(labels)),
            bn=spec["bn"],
            calibration=calib,
        )
        tic = time.perf_counter()
        scores[name] = [scorer.accuracy(p) for p in policies]
        cost[name] = (time.perf_counter() - tic) / len(policies)
        if not ratios:
            ratios = [scorer.ratio(p) for p in policies]
    reference = scores["deployable"]
    reward = {
        k: [a - LAMBDA * r for a, r in zip(v, ratios, strict=True)] for k, v in scores.items()
    }

    def corr(a: list[float], b: list[float]) -> dict[str, float]:
        return {
            "kendall": float(stats.kendalltau(a, b).statistic),
            "spearman": float(stats.spearmanr(a, b).statistic),
        }

    table = {
        name: {
            "accuracy": corr(values, reference),
            "penalized": corr(reward[name], reward["deployable"]),
            "mean_acc": sum(values) / len(values),
            "ms_per_policy": 1000 * cost[name],
        }
        for name, values in scores.items()
    }
    # A handful of policies spread over the deployable ranking, fine-tuned.
    order = sorted(range(len(policies)), key=lambda i: reference[i])
    k = min(args.finetuned, len(policies))
    picks = [order[round(j * (len(order) - 1) / max(k - 1, 1))] for j in range(k)]
    finetuned = []
    for i in picks:
        result = finetune_policy(space, data, model, policies[i], accel=accel)
        finetuned.append({"index": i, **result})
    truth = [f["test_acc"] for f in finetuned]
    for name in table:
        table[name]["finetuned_test"] = corr([scores[name][i] for i in picks], truth)
    # The signal and the noise of the search's rewards, for the synthetic-reward test.
    signal = statistics_std(reward["deployable"])
    report = {
        "machine": f"{torch.get_num_threads()} threads, torch {torch.__version__}",
        "policies": len(policies),
        "validation_images": len(labels),
        "table": table,
        "finetuned": finetuned,
        "finetuned_vs_deployable": corr([reference[i] for i in picks], truth),
        "penalized_reward_std": signal,
        "noise_std": {
            name: statistics_std(
                [a - b for a, b in zip(reward[name], reward["deployable"], strict=True)]
            )
            for name in table
        },
        "ratio_mean": sum(ratios) / len(ratios),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['machine']}; {len(policies)} uniform policies, {len(labels)} val images")
    print(
        f"{'proxy':<12}{'tau acc':>9}{'rho acc':>9}{'tau pen':>9}{'rho pen':>9}"
        f"{'tau ft':>8}{'rho ft':>8}{'mean acc':>10}{'ms/policy':>11}"
    )
    for name, row in table.items():
        print(
            f"{name:<12}{row['accuracy']['kendall']:>9.3f}{row['accuracy']['spearman']:>9.3f}"
            f"{row['penalized']['kendall']:>9.3f}{row['penalized']['spearman']:>9.3f}"
            f"{row['finetuned_test']['kendall']:>8.3f}{row['finetuned_test']['spearman']:>8.3f}"
            f"{row['mean_acc']:>10.4f}{row['ms_per_policy']:>11.1f}"
        )
    print(f"penalized reward std (deployable) {signal:.4f}; noise std per proxy:")
    print("  " + ", ".join(f"{k} {v:.4f}" for k, v in report["noise_std"].items()))
    for f in finetuned:
        print(
            f"  fine-tuned policy {f['index']}: val {f['val_acc_before']:.4f} -> "
            f"{f['val_acc']:.4f}, test {f['test_acc']:.4f} ({f['time_s']:.1f} s)"
        )


def statistics_std(values: list[float]) -> float:
    """Sample standard deviation."""
    import statistics

    return statistics.stdev(values)


if __name__ == "__main__":
    main()
