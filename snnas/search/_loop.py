"""The alternating search (Lin & Wang, Section 3.2): train the shared weights under the
strategy's policies, train the strategy on validation rewards, sample and keep the best;
repeat; re-score the top-k on the whole validation split and select the best.

Determinism: every random draw comes from the seed and a counter (the strategy's asks, the
global training step), so a run resumed from the checkpoint of iteration ``i`` repeats the
uninterrupted run exactly, down to ``best_policy.json``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from snnas import __version__
from snnas._run import Progress, RunDir
from snnas.data import DataSplits
from snnas.errors import CheckpointError, ConfigError
from snnas.models import SepResNeXt
from snnas.search._config import SearchConfig
from snnas.search._plots import plot_pareto, plot_search_curve
from snnas.search._record import StudyRecorder
from snnas.search._reward import PolicyScorer, make_reward, pareto_front
from snnas.search.strategies import Strategy, make_strategy
from snnas.space import Policy, SearchSpace, policy_json
from snnas.train import Accelerator, evaluate
from snnas.train._trainer import step_schedule

__all__ = ["SearchResult", "run_search"]

CHECKPOINT = "last.pt"


@dataclass
class SearchResult:
    """What a finished search reports (also ``summary.json``)."""

    summary: dict[str, Any]
    best_policy: Policy
    events: list[dict[str, Any]]


def _batches_from(
    data: DataSplits, config: SearchConfig, seed: int, step: int, accel: Accelerator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches from global step ``step`` on: epoch ``e`` is shuffled by (seed, e)."""
    loader = data.loader(
        "train",
        config.batch_size,
        shuffle=True,
        seed=seed,
        augment=config.augment,
        pin_memory=accel.cuda,
    )
    per_epoch = len(loader)
    epoch, skip = divmod(step, per_epoch)
    while True:
        loader.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if i >= skip:
                yield batch
        epoch, skip = epoch + 1, 0


def run_search(
    space: SearchSpace,
    data: DataSplits,
    config: SearchConfig,
    strategy_name: str,
    run: RunDir,
    *,
    seed: int = 0,
    resume: bool = False,
    accel: Accelerator | None = None,
    storage: str | None = None,
    study: str | None = None,
    progress: Progress | None = None,
) -> SearchResult:
    """Run (or resume) a search; write the run folder; return the summary."""
    accel = accel or Accelerator.pick()
    data.check_space(space)
    multi = config.reward == "pareto"
    options = dict(config.strategy.get(strategy_name.split(":")[0], {}))
    if multi and strategy_name.startswith("optuna"):
        options.setdefault("objectives", 2)
    strategy = make_strategy(strategy_name, space, seed, **options)
    if multi and not strategy.multi_objective:
        raise ConfigError(
            None,
            "reward.mode",
            "a single-objective mode for strategy "
            f"{strategy.label!r} (pareto needs optuna:nsga2, optuna:tpe or random)",
            "pareto",
        )
    reward_of = make_reward(config)

    torch.manual_seed(seed)
    model = accel.prepare(SepResNeXt(space))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    train_steps = config.train_steps or len(data.loader("train", config.batch_size))
    total_steps = train_steps * config.iterations
    identity = {
        "space_hash": space.hash,
        "strategy": strategy.label,
        "seed": seed,
        "dataset": data.name,
        "config": config.to_json(),
    }
    state: dict[str, Any] = {
        "iteration": 0,
        "events": [],
        "strategy_log": [],
        "train_log": [],
        "elapsed_s": 0.0,
    }
    run.create()
    if run.has_checkpoint(CHECKPOINT):
        if not resume:
            raise CheckpointError(
                f"{run.path} already holds a search: pass --resume to continue it, "
                "or another --name"
            )
        saved = run.load_checkpoint(CHECKPOINT)
        _check_identity(saved["identity"], identity, run)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        strategy.load_state_dict(saved["strategy"])
        state = {k: saved[k] for k in state}
    run.write_json(
        "config.json",
        {
            **identity,
            "versions": {"snnas": __version__, "torch": torch.__version__},
            "space": space.to_json(),
            # The space file itself, so fine-tuning and export rebuild the same space.
            "space_toml": space.config.source,
        },
    )

    worker = f"{run.path.name}/s{seed}"
    recorder = StudyRecorder(space, storage, run.path, study or run.path.name, worker, multi)
    recorder.sync(state["events"])
    val_batches = list(data.loader("val", config.eval_batch_size))
    scorer = PolicyScorer(space, model, val_batches, accel)
    events: list[dict[str, Any]] = state["events"]

    def score(policy: Policy, iteration: int, phase: str) -> float:
        tic = time.perf_counter()
        index = len(events)
        acc = scorer.accuracy(policy, batch=index)
        ratio = scorer.ratio(policy)
        reward = reward_of(acc, ratio)
        strategy.tell(policy, reward)
        scalar = acc if isinstance(reward, tuple) else reward
        events.append(
            {
                "index": index,
                "iteration": iteration,
                "phase": phase,
                "strategy": strategy.label,
                "policy": policy_json(policy),
                "reward": scalar,
                "accuracy": acc,
                "comm_ratio": ratio,
                "time_s": time.perf_counter() - tic,
            }
        )
        return scalar

    for iteration in range(state["iteration"], config.iterations):
        started = time.perf_counter()
        # Phase 1: shared weights, policies from the (frozen) strategy.
        model.train()
        first = iteration * train_steps
        batches = _batches_from(data, config, seed, first, accel)
        loss_sum = torch.zeros((), device=accel.device)  # on the device: no sync per step
        for step in range(train_steps):
            for group in optimizer.param_groups:
                group["lr"] = step_schedule(config.lr, config.milestones, first + step, total_steps)
            x, y = accel.batch(*next(batches))
            with accel.autocast():
                loss = F.cross_entropy(model(x, strategy.sample_for_training()), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            if progress and (step % 20 == 19 or step + 1 == train_steps):
                progress("train", step + 1, train_steps, {"iteration": iteration + 1})
        state["train_log"].append(
            {"iteration": iteration + 1, "train_loss": float(loss_sum) / max(train_steps, 1)}
        )
        # Phase 2: the strategy learns from validation minibatches.
        for step in range(config.strategy_steps):
            score(strategy.ask(), iteration + 1, "strategy")
            stats = strategy.stats()
            if stats:
                state["strategy_log"].append(
                    {"iteration": iteration + 1, "step": step + 1, **stats}
                )
            if progress:
                progress(
                    "strategy",
                    step + 1,
                    config.strategy_steps,
                    {"best": max(e["reward"] for e in events), "entropy": stats.get("entropy")}
                    if stats
                    else {"best": max(e["reward"] for e in events)},
                )
        # Phase 3: sample policies and score each.
        sampled = strategy.ask_batch(config.samples)
        rewards = [score(p, iteration + 1, "sample") for p in sampled]
        state["train_log"][-1]["mean_sampled_reward"] = sum(rewards) / len(rewards)
        state["train_log"][-1]["mean_sampled_accuracy"] = sum(
            e["accuracy"] for e in events[-len(rewards) :]
        ) / len(rewards)
        state["iteration"] = iteration + 1
        state["elapsed_s"] += time.perf_counter() - started
        run.save_checkpoint(
            CHECKPOINT,
            {
                "identity": identity,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "strategy": strategy.state_dict(),
                **state,
            },
        )
        _write_logs(run, state)
        recorder.sync(events)
        best = max(e["reward"] for e in events)
        run.write_json(
            "progress.json",
            {"iteration": iteration + 1, "evaluations": len(events), "best_reward": best},
        )
        if progress:
            progress("iteration", iteration + 1, config.iterations, {"best": best})

    return _finish(
        space, data, config, strategy, model, scorer, run, accel, state, recorder, progress
    )


def _check_identity(saved: dict[str, Any], current: dict[str, Any], run: RunDir) -> None:
    diff = []
    for key in current:
        if key == "config":
            a, b = saved["config"], current["config"]
            diff += [
                f"{k}: {a.get(k)!r} != {b.get(k)!r}"
                for k in b
                if a.get(k) != b.get(k) and k != "iterations"
            ]
        elif saved.get(key) != current[key]:
            diff.append(f"{key}: {saved.get(key)!r} != {current[key]!r}")
    if diff:
        raise CheckpointError(f"{run.path}: cannot resume a different search ({'; '.join(diff)})")


def _write_logs(run: RunDir, state: dict[str, Any]) -> None:
    run.write_jsonl("events.jsonl", state["events"])
    run.write_jsonl("strategy.jsonl", state["strategy_log"])
    run.write_jsonl("iterations.jsonl", state["train_log"])


def _finish(
    space: SearchSpace,
    data: DataSplits,
    config: SearchConfig,
    strategy: Strategy,
    model: torch.nn.Module,
    scorer: PolicyScorer,
    run: RunDir,
    accel: Accelerator,
    state: dict[str, Any],
    recorder: StudyRecorder,
    progress: Progress | None,
) -> SearchResult:
    events = state["events"]
    _write_logs(run, state)
    # The top-k distinct policies by reward, re-scored on the whole validation split with the
    # final shared weights (rewards of earlier iterations came from other weights).
    seen: set[tuple[int, ...]] = set()
    top: list[dict[str, Any]] = []
    for event in sorted(events, key=lambda e: (-e["reward"], e["index"])):
        code = space.encode(event["policy"])
        if code not in seen:
            seen.add(code)
            top.append(event)
        if len(top) == config.topk:
            break
    reward_of = make_reward(config)
    rescored = []
    for i, event in enumerate(top):
        policy = space.validate(event["policy"])
        acc = scorer.accuracy(policy)  # every validation minibatch
        ratio = scorer.ratio(policy)
        reward = reward_of(acc, ratio)
        rescored.append(
            {
                "policy": event["policy"],
                "val_acc": acc,
                "comm_ratio": ratio,
                "reward": acc if isinstance(reward, tuple) else reward,
                "search_reward": event["reward"],
                "event": event["index"],
            }
        )
        if progress:
            progress("rescore", i + 1, len(top), {})
    rescored.sort(key=lambda r: (-r["reward"], r["event"]))
    best = rescored[0]
    best_policy = space.validate(best["policy"])
    run.write_json("topk.json", rescored)
    run.write_json(
        "best_policy.json",
        {
            **space.policy_to_json(best_policy),
            "val_acc": best["val_acc"],
            "comm_ratio": best["comm_ratio"],
            "reward": best["reward"],
        },
    )
    # Reported once, never used to select: the test accuracy of the selected policy.
    test_batches = list(data.loader("test", config.eval_batch_size))
    test_acc = evaluate(
        model, [accel.batch(x, y) for x, y in test_batches], accel, best_policy, bn="batch"
    )
    no_comm = space.no_communication_policy()
    # The front of the last iteration: its policies were all scored with the same weights.
    last = [e for e in events if e["iteration"] == state["iteration"]]
    front = pareto_front([(e["accuracy"], e["comm_ratio"], e["index"]) for e in last])
    summary = {
        "space": space.name,
        "space_hash": space.hash,
        "strategy": strategy.label,
        "dataset": data.name,
        "iterations": state["iteration"],
        "evaluations": len(events),
        "best_policy": best["policy"],
        "best_val_acc": best["val_acc"],
        "best_comm_ratio": best["comm_ratio"],
        "best_reward": best["reward"],
        "best_test_acc": test_acc,
        "no_comm_val_acc": scorer.accuracy(no_comm),
        "reward_mode": config.reward,
        "pareto_front": [{"accuracy": a, "comm_ratio": r, "event": i} for a, r, i in front],
        "search_time_s": state["elapsed_s"],
        "evaluation_time_s": sum(e["time_s"] for e in events),
        "storage": recorder.url,
    }
    run.write_json("summary.json", summary)
    plot_search_curve(events, run / "search_curve.png", f"{space.name}: {strategy.label}")
    plot_pareto(events, front, run / "pareto.png", f"{space.name}: {strategy.label}")
    return SearchResult(summary, best_policy, events)
