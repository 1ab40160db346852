"""Fixed-mode comparison harness: one supernet with frozen weights, the validation split in a
search half and a held-out half, a reference sample of uniform random policies, and every
strategy's budgeted searches (resumable through the comparison's ledger)."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Any

import torch

from snnas._run import Progress, RunDir
from snnas.data import DataSplits
from snnas.models import SepResNeXt
from snnas.models.parity import CodedNetwork, ParityStreams
from snnas.search._compare_analysis import Analysis, curve_label, row_score, score_row
from snnas.search._config import SearchConfig
from snnas.search._cost import CostTerm
from snnas.search._ledger import Ledger
from snnas.search._plots import plot_compare
from snnas.search._reward import (
    DEPLOY_CALIB_IMAGES,
    PolicyScorer,
    calibration_images,
    make_reward,
    parity_ratio,
    split_tensors,
)
from snnas.search.strategies import make_strategy
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

__all__ = ["EVAL_IMAGES", "FixedComparison", "strategy_options"]

#: The search half of the validation split holds at most this many images.
EVAL_IMAGES = 1_024
_REFERENCE_SEED = 99_991
_SPLIT_SEED = 0


def strategy_options(config: SearchConfig, name: str, objectives: int = 1) -> dict[str, Any]:
    """Strategy options of the config that apply to ``name`` ([strategy.<name>] tables)."""
    table = config.strategy.get(name.split(":")[0], {})
    options = dict(table) if isinstance(table, dict) else {}
    if objectives > 1 and name.startswith("optuna"):
        options.setdefault("objectives", objectives)
    return options


class FixedComparison:
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
        #: The cost objective: the live communication ratio or the latency ratio.
        self.cost = CostTerm.from_config(space, config)
        self.cost_key = self.cost.key
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
        config = self.config
        # The validation split in two halves: one to search on, one held out.
        images, labels = split_tensors(self.data, "val")
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(_SPLIT_SEED))
        half = len(labels) // 2
        search, held = order[:half][:EVAL_IMAGES].sort().values, order[half:].sort().values
        identity = {
            "space_hash": self.space.hash,
            "budget": self.budget,
            "config": config.to_json(),
            "supernet": self.train_config.to_json(),
            "reference": self.reference_size,
            "split": [len(search), len(held)],
        }
        if self.cost.latency:  # the reference too: a profile file edited in between is refused
            identity["cost"] = self.cost.to_json()
        if self.degraded:
            identity["parity"] = self.parity_config.to_json()
        # Before the supernet: a comparison started with other settings (another number of
        # supernet epochs among them) is refused before its supernet is trained any further,
        # which would change the network its recorded evaluations were made on.
        self.records = Ledger(self.run_dir, identity)
        trained = train(
            self.space, self.data, self.train_config, RunDir(self.run_dir / "supernet"),
            resume=True, accel=self.accel, progress=self.progress,
        )  # fmt: skip
        assert isinstance(trained.model, SepResNeXt)
        self.supernet_metrics = trained.metrics
        self.times["supernet"] = time.perf_counter() - tic
        model = trained.model
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

    def comm_ratio(self, policy: Policy) -> float:
        """Live communication ratio; with the degraded objective, the parity devices'
        normal-operation bytes included."""
        return parity_ratio(self.space, policy) if self.degraded else self.cost.comm_ratio(policy)

    def ratio(self, policy: Policy) -> float:
        """The cost objective: :meth:`comm_ratio`, or the latency ratio (whose simulated
        device programs include the parity devices and their encodings)."""
        return self.cost.ratio(policy) if self.cost.latency else self.comm_ratio(policy)

    def row(self, policy: Policy) -> dict[str, float]:
        """The policy's score as the keys of a ledger record: the cost under its own key and,
        in latency mode, the communication ratio and the latency in ms beside it."""
        row = score_row(self.score(policy), self.cost_key)
        if self.cost.latency:
            row.update(comm_ratio=self.comm_ratio(policy), latency_ms=self.cost.latency_ms(policy))
        return row

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
            self.cache[self.space.encode(row["policy"])] = row_score(
                row, self.degraded, self.cost_key
            )
        pending: list[dict[str, Any]] = []
        for i in range(len(rows), self.reference_size):
            policy = self.space.sample(random.Random(_REFERENCE_SEED * 1_000_003 + i))
            pending.append({"policy": policy_json(policy), **self.row(policy)})
            if len(pending) == 100 or i + 1 == self.reference_size:
                self.records.add_reference(pending)
                rows += pending
                pending = []
                if self.progress:
                    self.progress("reference", i + 1, self.reference_size, {})
        self.times["reference"] = time.perf_counter() - tic
        return [row_score(r, self.degraded, self.cost_key) for r in rows[: self.reference_size]]

    # -- one search --------------------------------------------------------------------------

    def _search(self, reward: str, name: str, seed: int) -> list[dict[str, Any]]:
        multi = reward == "pareto"
        strategy = make_strategy(
            name,
            self.space,
            seed,
            **strategy_options(self.config, name, self.objectives if multi else 1),
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
                    "reward": None if multi else value, **self.row(policy),
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
                self.cache[self.space.encode(e["policy"])] = row_score(
                    e, self.degraded, self.cost_key
                )
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
                    name, self.space, 0, **strategy_options(self.config, name, self.objectives)
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
            analysis = Analysis(self, reward, ref_points, refs)
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
            curve_label(headline),
            panels={curve_label(r): curves[r] for r in self.rewards[1:]},
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
            "cost": self.cost.to_json(),
            "scoring": {
                "search": self.config.scoring,
                "calib_images": self.config.calib_images,
                "heldout": f"recalibrated on {DEPLOY_CALIB_IMAGES} training images, eval mode",
            },
            "split": {"search_images": self.scorer.images, "heldout_images": self.heldout.images},
            "objectives": ["accuracy", self.cost_key, "degraded_accuracy"][: self.objectives],
            "degraded": self._degraded_info(),
            "reference": references,
            "results": results,
            "skipped": skipped,
            "distinct_policies_scored": len(self.cache),
            "supernet": self.supernet_metrics,
            "time_s": dict(self.times),
        }
