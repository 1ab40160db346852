"""Tune the REINFORCE controller: settings against random search under equal budgets.

Landscapes:
  quickstart  the quickstart's penalized rewards as ``snnas compare`` scores them (fixed
              supernet, batch statistics on the search half of validation); scores are
              cached in the run folder, so settings that revisit policies cost nothing
  synthetic   the same space with a reward of the same make-up and signal-to-noise ratio:
              a hidden additive "accuracy" term, minus 0.1 x the exact live communication
              ratio, plus fixed per-policy noise (tests/search/test_strategies.py uses it)

For each setting: median over seeds of the area under the best-so-far curve, the final
best, evaluations to the reference sample's top 1%, and the Wilcoxon p-value against random
search (paired by seed).

    python benchmarks/controller.py --landscape synthetic
    python benchmarks/controller.py --landscape quickstart --settings center tanh_constant=5
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnas.search._pareto import hypervolume  # noqa: E402
from snnas.search._stats import auc, best_so_far, first_reach, wilcoxon_p  # noqa: E402
from snnas.search.strategies import make_strategy  # noqa: E402
from snnas.space import SearchSpace, load_space  # noqa: E402

#: The defaults' neighbourhood: one change at a time from ``center``.
CENTER: dict[str, Any] = {}  # the defaults (lr 0.01, tanh 5 after two rounds)
VARIANTS: dict[str, dict[str, Any]] = {
    "center": {},
    "old": {  # the landed defaults: one reward per update, temperature 5
        "temperature": 5.0,
        "tanh_constant": 2.5,
        "lr": 1e-3,
        "batch": 1,
        "advantage": "ema",
    },
    "enas": {  # the official ENAS CIFAR micro-search script's settings
        "temperature": 1.0,
        "tanh_constant": 1.1,
        "lr": 3.5e-3,
        "batch": 10,
        "advantage": "ema",
        "baseline_decay": 0.99,
    },
    "lr=0.001": {"lr": 1e-3},
    "lr=0.003": {"lr": 3e-3},
    "lr=0.02": {"lr": 2e-2},
    "lr=0.03": {"lr": 3e-2},
    "temperature=5": {"temperature": 5.0},
    "temperature=2": {"temperature": 2.0},
    "tanh=1.5": {"tanh_constant": 1.5},
    "tanh=5": {"tanh_constant": 5.0},
    "entropy=0": {"entropy_weight": 0.0},
    "entropy=0.01": {"entropy_weight": 1e-2},
    "batch=5": {"batch": 5},
    "batch=20": {"batch": 20},
    "advantage=loo": {"advantage": "loo"},
    "advantage=ema": {"advantage": "ema"},
    "ppo=4": {"ppo_epochs": 4},
}


def synthetic(
    space: SearchSpace, snr: float, seed: int = 123
) -> Callable[[Any], tuple[float, float]]:
    """A reward of the quickstart's make-up: (noisy reward, noise-free reward)."""
    from snnas.cost import communication

    target = space.encode(space.sample(random.Random(seed)))
    sizes = [len(d) for d in space.decisions]
    # Additive accuracy term: 1 per decision equal to the target's, scaled to the measured
    # spread of accuracies (0.008), then the exact live ratio, then fixed noise.
    var = sum((1 / n) * (1 - 1 / n) for n in sizes)
    scale = ACC_STD / var**0.5
    cache: dict[tuple[int, ...], tuple[float, float]] = {}

    def reward(policy: Any) -> tuple[float, float]:
        code = space.encode(policy)
        if code not in cache:
            acc = scale * sum(a == b for a, b in zip(code, target, strict=True))
            clean = acc - 0.1 * communication(space, policy).live_ratio
            noise = random.Random(hash((seed, code))).gauss(0.0, REWARD_STD / snr)
            cache[code] = (clean + noise, clean)
        return cache[code]

    return reward


#: Measured on the quickstart (benchmarks/proxies.py, docs/search.md): spread of deployable
#: accuracies over uniform policies, of the penalized reward, and the compare proxy's SNR.
ACC_STD = 0.008
REWARD_STD = 0.011
SNR = 1.4


def run(
    space: SearchSpace,
    reward: Callable[[Any], tuple[float, float]],
    name: str,
    options: dict[str, Any],
    seeds: int,
    budget: int,
    pareto: Callable[[Any], tuple[float, float]] | None = None,
) -> list[dict[str, Any]]:
    """``pareto``: tell (accuracy, ratio) pairs instead and record the front's hypervolume
    after every evaluation as the "reward"."""
    out = []
    for seed in range(seeds):
        strategy = make_strategy(name, space, seed, **options)
        noisy: list[float] = []
        clean: list[float] = []
        points: list[tuple[float, float]] = []
        while len(noisy) < budget:
            for policy in strategy.ask_batch(min(strategy.batch_size, budget - len(noisy))):
                if pareto is None:
                    r, c = reward(policy)
                    strategy.tell(policy, r)
                else:
                    point = pareto(policy)
                    strategy.tell(policy, point)
                    points.append(point)
                    r = c = hypervolume(points, HV_REF)
                noisy.append(r)
                clean.append(c)
        out.append({"noisy": noisy, "clean": clean})
    return out


#: pareto: the hypervolume's reference point (set from the no-communication policy)
HV_REF = (0.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landscape", choices=["synthetic", "quickstart"], default="synthetic")
    parser.add_argument("--settings", nargs="+", default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--run", default="runs/controller", help="quickstart: the folder")
    parser.add_argument("--pareto", action="store_true", help="quickstart: two objectives")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    space = load_space(ROOT / "search_spaces/quickstart.toml")
    pareto = None
    if args.landscape == "synthetic":
        reward = synthetic(space, SNR)
    else:
        reward, pareto = _quickstart(ROOT / args.run)
        if args.pareto:
            global HV_REF
            HV_REF = (pareto(space.no_communication_policy())[0], 1.0)
        else:
            pareto = None
    rng = random.Random(99_991)
    reference = sorted(reward(space.sample(rng))[0] for _ in range(2000))
    top = reference[int(0.99 * len(reference))]
    rows = {}
    tic = time.perf_counter()
    base = run(space, reward, "random", {}, args.seeds, args.budget, pareto)
    for label in ["random", *args.settings]:
        runs = base if label == "random" else run(
            space, reward, "reinforce", {**CENTER, **_setting(label)}, args.seeds, args.budget,
            pareto,
        )  # fmt: skip
        aucs = [auc(best_so_far(r["noisy"])) for r in runs]
        rows[label] = {
            "auc": statistics.median(aucs),
            "final": statistics.median(max(r["noisy"]) for r in runs),
            "to_top1pct": statistics.median(
                first_reach(r["noisy"], top) or args.budget + 1 for r in runs
            ),
            "late_clean": statistics.median(statistics.fmean(r["clean"][-50:]) for r in runs),
            "p_vs_random": wilcoxon_p(aucs, [auc(best_so_far(r["noisy"])) for r in base]),
            "half_vs_random_final": statistics.median(
                max(r["noisy"][: args.budget // 2]) for r in runs
            )
            - statistics.median(max(r["noisy"]) for r in base),
        }
        if not args.json:
            r = rows[label]
            print(
                f"{label:<16} auc {r['auc']:.5f} final {r['final']:.5f} "
                f"top1% {r['to_top1pct']:>6} late {r['late_clean']:.5f} "
                f"half-random {r['half_vs_random_final']:+.5f} p {r['p_vs_random']}",
                flush=True,
            )
    if args.json:
        print(json.dumps({"rows": rows, "time_s": time.perf_counter() - tic}, indent=2))


def _setting(label: str) -> dict[str, Any]:
    """A named variant, or options spelled out: ``tanh_constant=5,lr=0.02``."""
    if label in VARIANTS:
        return VARIANTS[label]
    out: dict[str, Any] = {}
    for item in label.split(","):
        key, _, value = item.partition("=")
        out[key] = value if key == "advantage" else float(value)
        if key in ("batch", "ppo_epochs", "hidden"):
            out[key] = int(out[key])
    return out


def _quickstart(
    folder: Path,
) -> tuple[Callable[[Any], tuple[float, float]], Callable[[Any], tuple[float, float]]]:
    """The quickstart's compare landscape: penalized rewards and (accuracy, ratio) pairs,
    scores cached on disk."""
    from snnas._run import RunDir
    from snnas.data import load_for_space
    from snnas.search import load_search_config
    from snnas.search._compare_fixed import FixedComparison
    from snnas.train import Accelerator

    space = load_space(ROOT / "search_spaces/quickstart.toml")
    data = load_for_space("digits", space)
    config = load_search_config("digits")
    fixed = FixedComparison(
        space, data, config, ["random"], 1, 200, RunDir(folder), Accelerator.pick("cpu"),
        None, ["penalized"], 2000,
    )  # fmt: skip
    fixed._setup(None)
    path = folder / "scores.json"
    if path.exists():
        for code, acc, ratio in json.loads(path.read_text()):
            fixed.cache[tuple(code)] = (acc, ratio)
    saved = [len(fixed.cache)]

    def reward(policy: Any) -> tuple[float, float]:
        acc, ratio = fixed.score(policy)
        if len(fixed.cache) >= saved[0] + 200:
            path.write_text(json.dumps([[list(k), a, r] for k, (a, r) in fixed.cache.items()]))
            saved[0] = len(fixed.cache)
        value = acc - config.reward_lambda * ratio
        return value, value

    def pair(policy: Any) -> tuple[float, float]:
        reward(policy)  # caches and saves
        return fixed.score(policy)

    return reward, pair


if __name__ == "__main__":
    main()
