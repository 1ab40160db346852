"""The statistics of a fixed-mode comparison, one reward mode at a time: best-so-far curves,
area under them, regret, evaluations to the reference sample's top 1%, held-out scores of
every seed's incumbent (or front), bootstrap summaries and paired Wilcoxon tests against
random search (docs/search.md)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Protocol

from snnas.errors import CheckpointError
from snnas.search._config import SearchConfig
from snnas.search._pareto import epsilon_gap, hypervolume, pareto_front
from snnas.search._reward import make_reward
from snnas.search._stats import auc, best_so_far, first_reach, mean_se, summary, wilcoxon_p
from snnas.space import Policy, SearchSpace

__all__ = ["FRACTIONS", "RATIO_REF", "AnalysisInputs", "curve_label", "row_score", "score_row"]

FRACTIONS = (0.25, 0.5, 1.0)
#: pareto mode: hypervolume counts policies up to the ring all-reduce's bytes (ratio 1), or
#: in latency mode up to the densest policy's latency (latency ratio 1).
RATIO_REF = 1.0


class AnalysisInputs(Protocol):
    """What the statistics read of a comparison harness."""

    space: SearchSpace
    config: SearchConfig
    degraded: bool
    budget: int
    cost_key: str  # comm_ratio or latency_ratio

    def heldout_score(self, policy: Policy) -> tuple[float, ...]: ...


def point_json(point: tuple[float, ...], key: str = "comm_ratio") -> dict[str, float]:
    out = {"accuracy": point[0], key: point[1]}
    if len(point) == 3:
        out["degraded_accuracy"] = point[2]
    return out


def score_row(score: tuple[float, ...], key: str = "comm_ratio") -> dict[str, float]:
    """A score as the keys of a ledger record (the cost under ``key``)."""
    row = {"accuracy": score[0], key: score[1]}
    if len(score) == 3:
        row["degraded_accuracy"] = score[2]
    return row


def row_score(row: dict[str, Any], degraded: bool, key: str = "comm_ratio") -> tuple[float, ...]:
    """A ledger record's score, its cost read from ``key``; a record without the cost or the
    degraded accuracy a comparison scores is refused (the ledger's identity makes that a
    damaged file)."""
    cost = row.get(key)
    if isinstance(cost, bool) or not isinstance(cost, int | float) or not math.isfinite(cost):
        raise CheckpointError(f"a comparison record without a finite {key}: {cost!r}")
    score: tuple[float, ...] = (row["accuracy"], float(cost))
    if degraded:
        value = row.get("degraded_accuracy")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise CheckpointError(
                f"a comparison record without a degraded accuracy in [0, 1]: {value!r}"
            )
        score += (float(value),)
    return score


def curve_label(reward: str) -> str:
    return "hypervolume so far (pareto)" if reward == "pareto" else f"best {reward} reward so far"


class Analysis:
    """The statistics of one reward mode."""

    def __init__(
        self,
        fixed: AnalysisInputs,
        reward: str,
        ref_points: list[tuple[float, ...]],
        refs: tuple[tuple[float, ...], tuple[float, ...]],
    ) -> None:
        self.fixed, self.reward = fixed, reward
        self.multi = reward == "pareto"
        self.reward_of = make_reward(replace(fixed.config, reward=reward))
        # (accuracy, ratio[, degraded]) below which nothing counts
        self.hv_ref = (refs[0][0], RATIO_REF, *refs[0][1:])
        self.held_hv_ref = (refs[1][0], RATIO_REF, *refs[1][1:])
        n = len(ref_points)
        if self.multi:
            self.ref_front = [p[:-1] for p in pareto_front([(*p, None) for p in ref_points])]
            scores = sorted(-epsilon_gap(p, self.ref_front) for p in ref_points)
            best = hypervolume(ref_points, self.hv_ref)
        else:
            scores = sorted(float(self.reward_of(*p)) for p in ref_points)  # type: ignore[arg-type]
            best = scores[-1]
        self.threshold = scores[min(n - 1, int(0.99 * n))]  # the top 1%
        self.best = best
        self.reference: dict[str, Any] = {
            "policies": n,
            "best": best,
            "top1pct_threshold": self.threshold,
            "median": scores[n // 2],
        }
        if self.multi:
            point = point_json(self.hv_ref, fixed.cost_key)
            held = point_json(self.held_hv_ref, fixed.cost_key)
            self.reference.update({
                "hypervolume": best,
                "reference_point": point,
                "heldout_reference_point": held,
                "front_size": len(self.ref_front),
                "top1pct_means": "minus the additive epsilon gap to the reference front",
            })  # fmt: skip

    def _seed(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        degraded = self.fixed.degraded
        points = [row_score(e, degraded, self.fixed.cost_key) for e in records]
        space = self.fixed.space
        if self.multi:
            curve: list[float] = []
            front: list[tuple[float, ...]] = []
            for p in points:
                front = [q[:-1] for q in pareto_front([(*q, None) for q in [*front, p]])]
                curve.append(hypervolume(front, self.hv_ref))
            hits = [-epsilon_gap(p, self.ref_front) for p in points]
            policies = {space.encode(e["policy"]): e["policy"] for e in records}
            final_front = pareto_front(
                [(*p, space.encode(e["policy"])) for p, e in zip(points, records, strict=True)]
            )
            held_points = []
            for p in final_front:
                code: tuple[int, ...] = p[-1]  # type: ignore[assignment]
                held = self.fixed.heldout_score(space.validate(policies[code]))
                held_points.append((held[0], p[1], *held[1:]))
            heldout = hypervolume(held_points, self.held_hv_ref)
            incumbent: Any = [policies[p[-1]] for p in final_front]
            front_points = [list(p[:-1]) for p in final_front]
        else:
            values = [float(e["reward"]) for e in records]
            curve, hits = best_so_far(values), values
            best = max(range(len(values)), key=lambda i: (values[i], -i))
            policy = space.validate(records[best]["policy"])
            held = self.fixed.heldout_score(policy)
            heldout = float(self.reward_of(held[0], points[best][1], *held[1:]))  # type: ignore[arg-type]
            incumbent = records[best]["policy"]
            front_points = []
        return {
            "curve": curve,
            "auc": auc(curve),
            "final": curve[-1],
            "regret": self.best - curve[-1],
            "to_top1pct": first_reach(hits, self.threshold),
            "heldout": heldout,
            "incumbent": incumbent,
            "front": front_points,
        }

    def strategy(
        self, runs: list[list[dict[str, Any]]]
    ) -> tuple[dict[str, Any], tuple[list[float], list[float]]]:
        seeds = [self._seed(r) for r in runs]
        budget = self.fixed.budget
        # Seeds that never reach the top 1% count as budget + 1 (censored) in the median.
        reach = [s["to_top1pct"] or budget + 1 for s in seeds]
        stats = {
            "auc": summary([s["auc"] for s in seeds]),
            "final": summary([s["final"] for s in seeds]),
            "regret": summary([s["regret"] for s in seeds]),
            "evals_to_top1pct": {
                **summary(reach, center="median"),
                "reached": sum(1 for s in seeds if s["to_top1pct"] is not None),
                "censored_at": budget + 1,
            },
            "heldout": summary([s["heldout"] for s in seeds]),
        }
        at = {}
        for f in FRACTIONS:
            k = max(1, round(f * budget))
            at[f"{int(100 * f)}%"] = mean_se([s["curve"][min(k, budget) - 1] for s in seeds])
        out: dict[str, Any] = {
            "auc": stats["auc"]["median"],
            "regret": stats["regret"]["median"],
            "evals_to_top1pct": stats["evals_to_top1pct"]["median"],
            "final": stats["final"]["median"],
            "heldout": stats["heldout"]["median"],
            "p_vs_random": None,
            "stats": stats,
            "best_so_far": at,
            "incumbents": [s["incumbent"] for s in seeds],
        }
        if self.multi:  # every seed's final front: (accuracy, ratio[, degraded]) per policy
            out["fronts"] = [s["front"] for s in seeds]
        if self.multi:
            out["hypervolume"] = stats["final"]["median"]
        columns = list(zip(*[s["curve"] for s in seeds], strict=True))
        curve = [mean_se(list(c)) for c in columns]
        return out, ([c["mean"] for c in curve], [c["se"] for c in curve])

    def paired_tests(self, results: dict[str, Any]) -> None:
        """Wilcoxon signed-rank over seeds (paired by seed index) of every strategy's area
        under the curve against random search's."""
        if "random" not in results:
            return
        base = results["random"]["stats"]["auc"]["per_seed"]
        for name, r in results.items():
            if name != "random":
                r["p_vs_random"] = wilcoxon_p(r["stats"]["auc"]["per_seed"], base)
