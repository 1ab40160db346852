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

import random
import time
from dataclasses import replace
from typing import Any

import torch

from snnas._run import Progress, RunDir
from snnas.data import DataSplits
from snnas.errors import CheckpointError, UsageError
from snnas.models import SepResNeXt
from snnas.models.parity import CodedNetwork, ParityStreams
from snnas.search._compare_report import full_report, markdown
from snnas.search._config import REWARD_MODES, SearchConfig
from snnas.search._ledger import Ledger
from snnas.search._loop import run_search
from snnas.search._pareto import epsilon_gap, hypervolume, pareto_front
from snnas.search._plots import plot_compare
from snnas.search._reward import (
    DEPLOY_CALIB_IMAGES,
    PolicyScorer,
    calibration_images,
    make_reward,
    parity_ratio,
    split_tensors,
)
from snnas.search._stats import auc, best_so_far, first_reach, mean_se, summary, wilcoxon_p
from snnas.search.strategies import make_strategy
from snnas.search.strategies._base import parse_names
from snnas.space import Policy, SearchSpace, policy_json
from snnas.train import (
    Accelerator,
    ParityTrainConfig,
    default_config,
    degraded_accuracy,
    load_parity,
    train,
    train_parity,
)

__all__ = ["DEFAULT_REWARDS", "REFERENCE", "compare"]

#: Reward modes a comparison reports by default; the first is the headline.
DEFAULT_REWARDS = ("penalized", "pareto", "accuracy")
#: Uniform random policies in the reference sample.
REFERENCE = 2_000
#: The search half of the validation split holds at most this many images.
EVAL_IMAGES = 1_024
FRACTIONS = (0.25, 0.5, 1.0)
_REFERENCE_SEED = 99_991
_SPLIT_SEED = 0
#: pareto mode: hypervolume counts policies up to the ring all-reduce's bytes (ratio 1).
RATIO_REF = 1.0


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
        make_strategy(name, space, 0, **_options(config, name))
    run.create()
    if mode == "fixed":
        report = _Fixed(
            space, data, config, strategies, seeds, budget or 200, run, accel, progress, rewards,
            reference, parity_epochs,
        ).run(supernet_epochs)  # fmt: skip
    else:
        report = _full(
            space, data, replace(config, reward=rewards[0]), strategies, seeds, budget, run,
            accel, progress,
        )  # fmt: skip
    report["time_s"]["total"] = time.perf_counter() - tic
    run.write_json("report.json", report)
    run.write_text("report.md", markdown(report))  # never in place, nor through a link
    return report


def _options(config: SearchConfig, name: str, objectives: int = 1) -> dict[str, Any]:
    """Strategy options of the config that apply to ``name`` ([strategy.<name>] tables)."""
    table = config.strategy.get(name.split(":")[0], {})
    options = dict(table) if isinstance(table, dict) else {}
    if objectives > 1 and name.startswith("optuna"):
        options.setdefault("objectives", objectives)
    return options


class _Fixed:
    """One fixed-mode comparison: supernet, split, reference sample, searches, statistics."""

    def __init__(
        self,
        space: SearchSpace,
        data: DataSplits,
        config: SearchConfig,
        strategies: list[str],
        seeds: int,
        budget: int,
        run: RunDir,
        accel: Accelerator,
        progress: Progress | None,
        rewards: list[str],
        reference: int,
        parity_epochs: int | None = None,
    ) -> None:
        self.space, self.data, self.config = space, data, config
        self.strategies, self.seeds, self.budget = strategies, seeds, budget
        self.run_dir, self.accel, self.progress = run, accel, progress
        self.rewards, self.reference_size = rewards, reference
        #: A parity space scored for degraded accuracy: every score is a triple.
        self.degraded = space.parity.r >= 1 and config.degraded is not False
        self.parity_config = ParityTrainConfig()
        if parity_epochs is not None:
            self.parity_config = ParityTrainConfig(epochs=parity_epochs)
        self.objectives = 3 if self.degraded else 2
        # Search-half scores: (accuracy, ratio) or (accuracy, ratio, degraded accuracy).
        self.cache: dict[tuple[int, ...], tuple[float, ...]] = {}
        self.heldout_cache: dict[tuple[int, ...], tuple[float, ...]] = {}
        self.times: dict[str, float] = {}

    # -- set-up ------------------------------------------------------------------------------

    def _setup(self, supernet_epochs: int | None) -> None:
        tic = time.perf_counter()
        self.train_config = default_config(
            "supernet", self.data.name, epochs=supernet_epochs, eval_policies=10
        )
        trained = train(
            self.space, self.data, self.train_config, RunDir(self.run_dir / "supernet"),
            resume=True, accel=self.accel, progress=self.progress,
        )  # fmt: skip
        assert isinstance(trained.model, SepResNeXt)
        self.supernet_metrics = trained.metrics
        self.times["supernet"] = time.perf_counter() - tic
        model = trained.model
        # The validation split in two halves: one to search on, one held out.
        images, labels = split_tensors(self.data, "val")
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(_SPLIT_SEED))
        half = len(labels) // 2
        search, held = order[:half][:EVAL_IMAGES].sort().values, order[half:].sort().values
        config = self.config
        self.scorer = PolicyScorer(
            self.space, model, images[search], labels[search], self.accel,
            batch_size=config.eval_batch_size, bn=config.scoring,
            calibration=calibration_images(self.data, config.calib_images)
            if config.scoring == "recalibrated" else None,
        )  # fmt: skip
        self.heldout = PolicyScorer(
            self.space, model, images[held], labels[held], self.accel,
            batch_size=config.eval_batch_size,
            calibration=calibration_images(self.data, DEPLOY_CALIB_IMAGES),
        )  # fmt: skip
        identity = {
            "space_hash": self.space.hash,
            "budget": self.budget,
            "config": config.to_json(),
            "supernet": self.train_config.to_json(),
            "reference": self.reference_size,
            "split": [len(search), len(held)],
        }
        if self.degraded:
            identity["parity"] = self.parity_config.to_json()
        self.records = Ledger(self.run_dir, identity)
        self.coded: CodedNetwork | None = None
        if self.degraded:
            self.coded = self._train_parity(model)
            # Degraded accuracy with batch statistics on the held-out half too: recalibrating
            # the coded network per policy is not implemented (docs/search.md).
            held_batches = PolicyScorer(
                self.space, model, images[held], labels[held], self.accel,
                batch_size=config.eval_batch_size, bn="batch",
            ).batches  # fmt: skip
            self.heldout_degraded_batches = held_batches

    def _train_parity(self, model: SepResNeXt) -> CodedNetwork:
        """Parity devices trained on the frozen supernet (``parity/``, resumable); the
        checkpoint with the best validation A_degraded."""
        tic = time.perf_counter()
        folder = RunDir(self.run_dir / "parity")
        torch.manual_seed(self.parity_config.seed)
        net = CodedNetwork(model, ParityStreams(self.space))
        if not (folder.exists() and (folder / "final.json").exists()):
            train_parity(
                net, self.data, self.parity_config, folder, resume=True, accel=self.accel,
                progress=self.progress,
            )  # fmt: skip
        self.parity_metrics = folder.read_json("final.json")
        coded = load_parity(folder, model).to(self.accel.device)
        coded.eval()
        self.times["parity"] = time.perf_counter() - tic
        return coded

    def _degraded(self, policy: Policy, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        assert self.coded is not None
        return degraded_accuracy(self.coded, policy, batches, self.accel, bn="batch")

    def ratio(self, policy: Policy) -> float:
        """Live communication ratio; with the degraded objective, the parity devices'
        normal-operation bytes included."""
        return parity_ratio(self.space, policy) if self.degraded else self.scorer.ratio(policy)

    def score(self, policy: Policy) -> tuple[float, ...]:
        """(accuracy on the search half, communication ratio[, degraded accuracy on the
        search half]), cached per policy."""
        key = self.space.encode(policy)
        if key not in self.cache:
            score: tuple[float, ...] = (self.scorer.accuracy(policy), self.ratio(policy))
            if self.degraded:
                score += (self._degraded(policy, self.scorer.batches),)
            self.cache[key] = score
        return self.cache[key]

    def heldout_score(self, policy: Policy) -> tuple[float, ...]:
        """Deployable accuracy on the held-out half (and degraded accuracy there), cached."""
        key = self.space.encode(policy)
        if key not in self.heldout_cache:
            score: tuple[float, ...] = (self.heldout.accuracy(policy),)
            if self.degraded:
                score += (self._degraded(policy, self.heldout_degraded_batches),)
            self.heldout_cache[key] = score
        return self.heldout_cache[key]

    def heldout_accuracy(self, policy: Policy) -> float:
        """Deployable accuracy on the held-out half, cached per policy."""
        return self.heldout_score(policy)[0]

    def _degraded_info(self) -> dict[str, Any] | None:
        """What the degraded objective was (None when it was not scored)."""
        if not self.degraded:
            return None
        return {
            "unavailability": self.config.unavailability,
            "scalarized": "(1 - f) acc + f A_degraded replaces acc in single-objective modes",
            "ratio": "live bytes plus the parity devices' normal-operation bytes over the "
            "all-reduce baseline",
            "scoring": "batch statistics on the search half; held-out: batch statistics",
            "parity_training": {**self.parity_config.to_json(), **self.parity_metrics},
        }

    # -- the reference sample ----------------------------------------------------------------

    def _reference(self) -> list[tuple[float, ...]]:
        tic = time.perf_counter()
        rows = self.records.reference()
        for row in rows:
            self.cache[self.space.encode(row["policy"])] = _row_score(row, self.degraded)
        pending: list[dict[str, Any]] = []
        for i in range(len(rows), self.reference_size):
            policy = self.space.sample(random.Random(_REFERENCE_SEED * 1_000_003 + i))
            pending.append({"policy": policy_json(policy), **_score_row(self.score(policy))})
            if len(pending) == 100 or i + 1 == self.reference_size:
                self.records.add_reference(pending)
                rows += pending
                pending = []
                if self.progress:
                    self.progress("reference", i + 1, self.reference_size, {})
        self.times["reference"] = time.perf_counter() - tic
        return [_row_score(r, self.degraded) for r in rows[: self.reference_size]]

    # -- one search --------------------------------------------------------------------------

    def _search(self, reward: str, name: str, seed: int) -> list[dict[str, Any]]:
        multi = reward == "pareto"
        strategy = make_strategy(
            name, self.space, seed, **_options(self.config, name, self.objectives if multi else 1)
        )
        reward_of = make_reward(replace(self.config, reward=reward))
        records: list[dict[str, Any]] = []
        while len(records) < self.budget:
            policies = strategy.ask_batch(min(strategy.batch_size, self.budget - len(records)))
            for policy in policies:
                score = self.score(policy)
                value = reward_of(*score)
                strategy.tell(policy, value)
                records.append({
                    "reward_mode": reward, "strategy": name, "seed": seed,
                    "evaluation": len(records) + 1, "policy": policy_json(policy),
                    "reward": None if multi else value, **_score_row(score),
                })  # fmt: skip
        return records

    # -- everything --------------------------------------------------------------------------

    def run(self, supernet_epochs: int | None) -> dict[str, Any]:
        self._setup(supernet_epochs)
        ref_points = self._reference()
        no_comm = self.space.no_communication_policy()
        # The hypervolume's reference point: the no-communication policy's accuracy (and, with
        # the degraded objective, its degraded accuracy: no protection, nothing sent).
        refs = (self.score(no_comm)[::2], self.heldout_score(no_comm))
        done = self.records.evaluations(self.budget)
        for records in done.values():
            for e in records:
                self.cache[self.space.encode(e["policy"])] = _row_score(e, self.degraded)
        tic = time.perf_counter()
        results: dict[str, Any] = {}
        references: dict[str, Any] = {}
        skipped: dict[str, list[str]] = {}
        curves: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
        runs = [(r, n, s) for r in self.rewards for n in self.strategies for s in range(self.seeds)]
        for count, (reward, name, seed) in enumerate(runs):
            key = (reward, name, seed)
            if key in done:
                continue
            if (
                reward == "pareto"
                and not make_strategy(
                    name, self.space, 0, **_options(self.config, name, self.objectives)
                ).multi_objective
            ):
                continue  # reported as skipped
            if self.progress:
                self.progress(
                    "compare", count, len(runs), {"reward": reward, "strategy": name, "seed": seed}
                )
            done[key] = self._search(reward, name, seed)
            self.records.add_evaluations(done[key])
        self.times["searches"] = time.perf_counter() - tic
        tic = time.perf_counter()
        for reward in self.rewards:
            analysis = _Analysis(self, reward, ref_points, refs)
            references[reward] = analysis.reference
            results[reward], curves[reward] = {}, {}
            for name in self.strategies:
                seeds = [done.get((reward, name, s)) for s in range(self.seeds)]
                if any(s is None for s in seeds):
                    skipped.setdefault(reward, []).append(name)
                    continue
                results[reward][name], curves[reward][name] = analysis.strategy(seeds)  # type: ignore[arg-type]
            analysis.paired_tests(results[reward])
        self.times["heldout_and_statistics"] = time.perf_counter() - tic
        headline = self.rewards[0]
        plot_compare(
            curves[headline],
            self.run_dir / "curves.png",
            f"{self.space.name}: mean ± s.e. over {self.seeds} seeds",
            "evaluations",
            _curve_label(headline),
            panels={_curve_label(r): curves[r] for r in self.rewards[1:]},
        )
        return {
            "mode": "fixed",
            "space": self.space.name,
            "space_hash": self.space.hash,
            "dataset": self.data.name,
            "strategies": self.strategies,
            "seeds": self.seeds,
            "budget": self.budget,
            "rewards": self.rewards,
            "headline": headline,
            "reward_lambda": self.config.reward_lambda,
            "scoring": {
                "search": self.config.scoring,
                "calib_images": self.config.calib_images,
                "heldout": f"recalibrated on {DEPLOY_CALIB_IMAGES} training images, eval mode",
            },
            "split": {"search_images": self.scorer.images, "heldout_images": self.heldout.images},
            "objectives": ["accuracy", "comm_ratio", "degraded_accuracy"][: self.objectives],
            "degraded": self._degraded_info(),
            "reference": references,
            "results": results,
            "skipped": skipped,
            "distinct_policies_scored": len(self.cache),
            "supernet": self.supernet_metrics,
            "time_s": dict(self.times),
        }


def _point_json(point: tuple[float, ...]) -> dict[str, float]:
    out = {"accuracy": point[0], "comm_ratio": point[1]}
    if len(point) == 3:
        out["degraded_accuracy"] = point[2]
    return out


def _score_row(score: tuple[float, ...]) -> dict[str, float]:
    """A score as the keys of a ledger record."""
    row = {"accuracy": score[0], "comm_ratio": score[1]}
    if len(score) == 3:
        row["degraded_accuracy"] = score[2]
    return row


def _row_score(row: dict[str, Any], degraded: bool) -> tuple[float, ...]:
    """A ledger record's score; a record without the degraded accuracy a comparison scores
    is refused (the ledger's identity makes that a damaged file)."""
    score: tuple[float, ...] = (row["accuracy"], row["comm_ratio"])
    if degraded:
        value = row.get("degraded_accuracy")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise CheckpointError(
                f"a comparison record without a degraded accuracy in [0, 1]: {value!r}"
            )
        score += (float(value),)
    return score


def _curve_label(reward: str) -> str:
    return "hypervolume so far (pareto)" if reward == "pareto" else f"best {reward} reward so far"


class _Analysis:
    """The statistics of one reward mode."""

    def __init__(
        self,
        fixed: _Fixed,
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
            point = _point_json(self.hv_ref)
            held = _point_json(self.held_hv_ref)
            self.reference.update({
                "hypervolume": best,
                "reference_point": point,
                "heldout_reference_point": held,
                "front_size": len(self.ref_front),
                "top1pct_means": "minus the additive epsilon gap to the reference front",
            })  # fmt: skip

    def _seed(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        degraded = self.fixed.degraded
        points = [_row_score(e, degraded) for e in records]
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
