"""The alternating search (Lin & Wang, Section 3.2): train the shared weights under the
strategy's policies, train the strategy on validation rewards, sample from the frozen
strategy; repeat; re-score the best candidates with the deployable score (batch norm
recalibrated per policy, eval mode) on the whole validation split and select the best.

Determinism: every random draw comes from the seed and a counter (the strategy's asks, the
global training step), so a run resumed from the checkpoint of iteration ``i`` repeats the
uninterrupted run exactly, down to ``best_policy.json``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from snnas import __version__
from snnas._run import Progress, RunDir
from snnas.data import DataSplits
from snnas.errors import CheckpointError, ConfigError, TrainingError
from snnas.models import SepResNeXt
from snnas.search._config import SearchConfig, with_defaults
from snnas.search._cost import CostTerm
from snnas.search._plots import plot_pareto, plot_search_curve
from snnas.search._protective import searched_space
from snnas.search._record import StudyRecorder
from snnas.search._reward import (
    DEPLOY_CALIB_IMAGES,
    Constraints,
    Objective,
    PolicyScorer,
    calibration_images,
    make_reward,
    pareto_front,
    split_tensors,
)
from snnas.search._selection import candidates_to_rescore, select_on_pareto_front
from snnas.search.strategies import Strategy, make_strategy
from snnas.search.strategies._base import strategy_base
from snnas.space import Policy, SearchSpace, policy_json
from snnas.train import Accelerator
from snnas.train._dist import global_batch_norm, setup
from snnas.train._trainer import StepSchedule

__all__ = ["SearchResult", "check_cost_mode", "check_no_degraded", "run_search"]

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


def build_strategy(
    space: SearchSpace,
    config: SearchConfig,
    strategy: str | Strategy | object,
    seed: int = 0,
    objective: Objective | None = None,
) -> Strategy:
    """The search's strategy: a registered name (its ``[strategy.<name>]`` options from
    ``config``), an object a registered strategy wraps (any Optuna sampler instance), or a
    ready :class:`Strategy`; with ``config``'s constraints set on it. In ``pareto`` mode an
    Optuna study gets 2 objectives, 3 with a user ``objective``."""
    multi = config.reward == "pareto"
    base = strategy_base(strategy)
    options = dict(config.strategy.get(base, {})) if isinstance(strategy, str) and base else {}
    if multi and base == "optuna":
        options.setdefault("objectives", 3 if objective is not None else 2)
    built = make_strategy(strategy, space, seed, **options)
    if multi and not built.multi_objective:
        raise ConfigError(
            None,
            "reward.mode",
            "a single-objective mode for strategy "
            f"{built.label!r} (pareto needs reinforce, optuna:nsga2, optuna:tpe or random)",
            "pareto",
        )
    constraints = Constraints.from_config(space, config)
    if constraints is not None:
        no_comm = space.no_communication_policy()
        if constraints.violation(no_comm) > 0:
            ratio, ms = constraints.measures(no_comm)
            raise ConfigError(
                None,
                "constraints",
                "budgets that at least the no-communication policy meets",
                f"<its ratio {ratio:g}, latency {ms if ms is None else round(ms, 4)} ms>",
            )
        built.set_constraint(constraints.violation)
    return built


def run_search(
    space: SearchSpace,
    data: DataSplits,
    config: SearchConfig,
    strategy_name: str | Strategy | object,
    run: RunDir,
    *,
    seed: int = 0,
    resume: bool = False,
    accel: Accelerator | None = None,
    storage: str | None = None,
    study: str | None = None,
    progress: Progress | None = None,
    objective: Objective | Callable[[Policy], float] | None = None,
) -> SearchResult:
    """Run (or resume) a search; write the run folder; return the summary.

    ``strategy_name`` is a registered name (``"optuna:tpe"``), any Optuna sampler instance,
    or a ready :class:`Strategy` of ``space``. ``objective`` is a user objective
    (:class:`Objective`, or a bare callable: minimised with weight 1), for the
    ``penalized`` and ``pareto`` modes. ``config``'s constraints make policies over a
    budget infeasible: never selected.

    Under torchrun (several processes, ``snnas.train._dist``) the shared-weight phase is
    data-parallel: each rank trains on its shard of every global batch, under the policy
    rank 0's strategy draws for that step (broadcast). Rank 0 alone runs the strategy,
    scores policies, writes the run and the study; every rank returns rank 0's result.
    """
    accel = accel or Accelerator.pick()
    ctx = setup(accel.device)
    ctx.check_batch(config.batch_size, "search.batch_size")
    seed = ctx.broadcast(seed)
    data.check_space(space)
    check_no_degraded(space, config)
    multi = config.reward == "pareto"
    if objective is not None and not isinstance(objective, Objective):
        objective = Objective(objective)
    # The reward never scores parity decisions here (check_no_degraded): they are fixed to
    # the most protective choice rather than sampled without signal.
    strategy = build_strategy(searched_space(space), config, strategy_name, seed, objective)
    constraints = Constraints.from_config(space, config)
    if config.strategy_steps % strategy.batch_size:
        raise ConfigError(
            None,
            "search.strategy_steps",
            f"a multiple of {strategy.label}'s batch ({strategy.batch_size}): every update's "
            "policies are scored on one minibatch",
            config.strategy_steps,
        )
    check_cost_mode(config)
    reward_of = make_reward(config, objective)
    cost = CostTerm.from_config(space, config)
    user_values: dict[tuple[int, ...], float] = {}

    def user_value(policy: Policy) -> float | None:
        """The user objective's value of ``policy`` (called once per distinct policy)."""
        if objective is None:
            return None
        key = space.encode(policy)
        if key not in user_values:
            user_values[key] = objective(policy)
        return user_values[key]

    torch.manual_seed(seed)
    model = accel.prepare(SepResNeXt(space))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    train_steps = config.train_steps or len(data.loader("train", config.batch_size))
    # Milestones in absolute steps, fixed when the run starts (stored in the checkpoint): a
    # run resumed with more iterations continues at the last rate.
    schedule = StepSchedule.from_fractions(
        config.lr, config.milestones, train_steps * config.iterations
    )
    identity = {
        "space_hash": space.hash,
        "strategy": strategy.label,
        "seed": seed,
        "dataset": data.name,
        "config": config.to_json(),
    }
    if objective is not None:  # only then: older checkpoints keep their identity
        identity["objective"] = objective.to_json()
    if cost.latency:  # the reference too: a profile file edited in between is refused
        identity["cost"] = cost.to_json()
    state: dict[str, Any] = {
        "iteration": 0,
        "events": [],
        "strategy_log": [],
        "train_log": [],
        "elapsed_s": 0.0,
        "minibatches": 0,  # validation minibatches used: one per update or phase-3 draw
    }
    if ctx.main:
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
        state = {k: saved.get(k, len(saved["events"])) for k in state}
        # One line when the strategy does not continue as the uninterrupted search would
        # have (an Optuna sampler whose whole state is not saved, an older checkpoint); kept
        # in later checkpoints, so summary.json says it however often the run resumed.
        note = saved.get("resume_note")
        note = note if isinstance(note, str) else getattr(strategy, "resume_note", None)
        if note is not None:
            state["resume_note"] = note
        if "schedule" in saved:
            schedule = StepSchedule.from_json(saved["schedule"])
        else:  # checkpoints of older versions: the iterations the run started with
            started = saved["identity"]["config"]["iterations"]
            schedule = StepSchedule.from_fractions(
                config.lr, config.milestones, train_steps * started
            )
    for event in state["events"]:  # values measured before the interruption
        if "objective" in event:
            user_values[space.encode(event["policy"])] = event["objective"]
    if ctx.main:
        run.write_json(
            "config.json",
            {
                **identity,
                "world_size": ctx.world_size,
                "versions": {"snnas": __version__, "torch": torch.__version__},
                "space": space.to_json(),
                # The space file itself, so fine-tuning and export rebuild the same space.
                "space_toml": space.config.source,
            },
        )
    trained = ctx.wrap(model, accel.device)  # rank 0's weights on every rank

    worker = f"{run.path.name}/s{seed}"
    recorder = (
        StudyRecorder(
            space, storage, run.path, study or run.path.name, worker, multi, cost.to_json()
        )
        if ctx.main
        else None
    )
    if recorder is not None:
        recorder.sync(state["events"])
    val_x, val_y = split_tensors(data, "val")
    scorer = PolicyScorer(
        space,
        model,
        val_x,
        val_y,
        accel,
        batch_size=config.eval_batch_size,
        bn=config.scoring,
        calibration=calibration_images(data, config.calib_images)
        if config.scoring == "recalibrated"
        else None,
    )
    events: list[dict[str, Any]] = state["events"]
    logged = {"update": None}

    def score(policies: list[Policy], iteration: int, phase: str) -> list[float]:
        """Score ``policies`` on one validation minibatch; phase 2 tells the strategy, phase
        3 lets it observe (the paper samples from the frozen controller)."""
        minibatch = state["minibatches"]
        state["minibatches"] += 1
        out = []
        for policy in policies:
            tic = time.perf_counter()
            acc = scorer.accuracy(policy, batch=minibatch)
            ratio = cost.ratio(policy)
            user = user_value(policy)
            reward = reward_of(acc, ratio, user=user)
            (strategy.tell if phase == "strategy" else strategy.observe)(policy, reward)
            scalar = acc if isinstance(reward, tuple) else reward
            event = {
                "index": len(events),
                "iteration": iteration,
                "phase": phase,
                "strategy": strategy.label,
                "policy": policy_json(policy),
                "reward": scalar,
                "accuracy": acc,
                **cost.measures(policy),
                "minibatch": minibatch % len(scorer.batches),
                "time_s": time.perf_counter() - tic,
            }
            if user is not None:
                event["objective"] = user
            if constraints is not None:
                event["violation"] = constraints.violation(policy)
            events.append(event)
            out.append(scalar)
        stats = strategy.stats()
        if stats and stats.get("update") != logged["update"]:
            logged["update"] = stats.get("update")
            state["strategy_log"].append({"iteration": iteration, **stats})
        return out

    for iteration in range(state["iteration"], config.iterations):
        started = time.perf_counter()
        # Phase 1: shared weights, policies from the (frozen) strategy.
        model.train()
        first = iteration * train_steps
        batches = _batches_from(data, config, seed, first, accel)
        loss_sum = torch.zeros((), device=accel.device)  # on the device: no sync per step
        for step in range(train_steps):
            for group in optimizer.param_groups:
                group["lr"] = schedule(first + step)
            x, y = next(batches)
            count = len(y)  # the global batch; this rank trains on its shard
            x, y = accel.batch(*ctx.shard(x, y))
            # Every rank trains the policy rank 0's strategy draws: one supernet.
            policy = ctx.broadcast(strategy.sample_for_training() if ctx.main else None)
            with global_batch_norm(model, ctx), accel.autocast():
                loss = ctx.loss(trained(x, policy), y, count)
            optimizer.zero_grad(set_to_none=True)
            with global_batch_norm(model, ctx):
                loss.backward()
            optimizer.step()
            loss_sum += loss.detach() / ctx.world_size  # summed over the ranks: the mean
            if progress and ctx.main and (step % 20 == 19 or step + 1 == train_steps):
                progress("train", step + 1, train_steps, {"iteration": iteration + 1})
        (loss_sum,) = ctx.sum(loss_sum)
        if not math.isfinite(float(loss_sum)):
            # One sync per iteration; the checkpoint of the iteration before stays as it was.
            raise TrainingError(
                f"the shared weights diverged in iteration {iteration + 1}: the training loss "
                f"is {float(loss_sum)} (learning rate {schedule(first):g}; try a lower "
                f"search.lr). {run.path} keeps the checkpoint of the iteration before."
            )
        state["train_log"].append(
            {
                "iteration": iteration + 1,
                "train_loss": float(loss_sum) / max(train_steps, 1),
                "lr": schedule(first + max(train_steps - 1, 0)),  # at the iteration's last step
            }
        )
        if not ctx.main:  # rank 0 alone: the strategy, the scores and the run's files
            continue
        # Phase 2: the strategy learns; each update's policies share one minibatch.
        chunk = strategy.batch_size
        for step in range(0, config.strategy_steps, chunk):
            score(strategy.ask_batch(chunk), iteration + 1, "strategy")
            if progress:
                stats = strategy.stats()
                info: dict[str, Any] = {"best": max(e["reward"] for e in events)}
                if "entropy" in stats:
                    info["entropy"] = stats["entropy"]
                progress("strategy", step + chunk, config.strategy_steps, info)
        # Phase 3: policies drawn at once from the frozen strategy, scored on one minibatch.
        rewards = score(strategy.ask_batch(config.samples), iteration + 1, "sample")
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
                "schedule": schedule.to_json(),
                **state,
            },
        )
        _write_logs(run, state)
        if recorder is not None:
            recorder.sync(events)
        best = max(e["reward"] for e in events)
        run.write_json(
            "progress.json",
            {"iteration": iteration + 1, "evaluations": len(events), "best_reward": best},
        )
        if progress:
            progress("iteration", iteration + 1, config.iterations, {"best": best})

    if recorder is None:  # not rank 0: its result, once it has finished
        result: SearchResult = ctx.broadcast(None)
        return result
    return ctx.broadcast(
        _finish(
            space, data, config, strategy, model, scorer, run, accel, state, recorder,
            progress, reward_of, user_value, constraints, objective, cost,
        )
    )  # fmt: skip


def check_cost_mode(config: SearchConfig) -> None:
    """Refuse the latency cost where the reward has no cost term (``accuracy`` mode)."""
    if config.cost == "latency" and config.reward == "accuracy":
        raise ConfigError(
            None,
            "reward.mode",
            'penalized, budget or pareto with reward.cost = "latency" (the accuracy mode has '
            "no cost term)",
            config.reward,
        )


def check_no_degraded(space: SearchSpace, config: SearchConfig) -> None:
    """Refuse the degraded-accuracy objective where the shared weights keep training.

    A_degraded needs parity devices trained on the weights a policy is scored with; the
    alternating search changes those weights every iteration, so its scores would come from
    parity devices trained for other weights (or cost a parity training per iteration).
    ``snnas compare`` scores it in fixed mode, on a frozen supernet (docs/search.md)."""
    if space.parity.r >= 1 and config.degraded is True:
        raise ConfigError(
            None,
            "reward.degraded",
            "false or unset with snnas search (its shared weights keep training, so parity "
            "devices cannot be trained to score degraded accuracy; snnas compare scores it "
            "on a frozen supernet)",
            True,
        )


def _check_identity(saved: dict[str, Any], current: dict[str, Any], run: RunDir) -> None:
    diff = []
    for key in current:
        if key == "config":
            a, b = with_defaults(saved["config"]), current["config"]
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
    reward_of: Callable[..., Any],
    user_value: Callable[[Policy], float | None],
    constraints: Constraints | None,
    objective: Objective | None,
    cost: CostTerm,
) -> SearchResult:
    events = state["events"]
    _write_logs(run, state)
    # Candidates: the ``rescore`` distinct policies with the best search rewards. Each is
    # re-scored with the final shared weights and the deployable score (batch norm
    # recalibrated for the policy, eval mode) on the whole validation split; the top-k and
    # the selected policy come from those scores, not from single-minibatch maxima. Within
    # constraints, only feasible policies are candidates.
    multi = config.reward == "pareto"
    # pareto with a user objective: the selection has its three objectives too, the user
    # objective by its gain (minus the value when minimised), as the strategy had them.
    gain = objective.gain if multi and objective is not None else None
    feasible = [e for e in events if e.get("violation", 0.0) <= 0]
    if constraints is not None and not feasible:
        no_comm = space.no_communication_policy()
        raise TrainingError(
            f"no evaluated policy met the constraints {constraints.to_json()}; the "
            f"no-communication policy does ({policy_json(no_comm)}): raise the search's "
            "budget of evaluations or loosen the constraints"
        )
    candidates = candidates_to_rescore(
        space, feasible, config.rescore, multi, gain=gain, key=cost.key
    )
    calibration = calibration_images(data, DEPLOY_CALIB_IMAGES)
    deployable = PolicyScorer(
        space, model, *split_tensors(data, "val"), accel,
        batch_size=config.eval_batch_size, calibration=calibration,
    )  # fmt: skip
    rescored = []
    for i, event in enumerate(candidates):
        policy = space.validate(event["policy"])
        acc = deployable.accuracy(policy)
        ratio = cost.ratio(policy)
        user = user_value(policy)
        reward = reward_of(acc, ratio, user=user)
        record = {
            "policy": event["policy"],
            "val_acc": acc,
            **cost.measures(policy),
            "reward": acc if isinstance(reward, tuple) else reward,
            "search_reward": event["reward"],
            "event": event["index"],
        }
        if user is not None:
            record["objective"] = user
        rescored.append(record)
        if progress:
            progress("rescore", i + 1, len(candidates), {})
    rescored.sort(key=lambda r: (-r["reward"], r["event"]))
    selection = None
    if multi:
        rescored, selection = select_on_pareto_front(
            rescored, config.budget, gain=gain, key=cost.key
        )
        selection["cost"] = cost.to_json()
        run.write_json("front.json", selection)
        selection = {k: v for k, v in selection.items() if k not in ("members", "cost")}
    top = rescored[: config.topk]
    best = top[0]
    best_policy = space.validate(best["policy"])
    run.write_json("topk.json", top)
    run.write_json(
        "best_policy.json",
        {
            **space.policy_to_json(best_policy),
            "val_acc": best["val_acc"],
            **{k: best[k] for k in ("comm_ratio", "latency_ms", "latency_ratio") if k in best},
            "reward": best["reward"],
        },
    )
    # Reported once, never used to select: the selected policy's deployable test accuracy.
    test = PolicyScorer(
        space, model, *split_tensors(data, "test"), accel,
        batch_size=config.eval_batch_size, calibration=calibration,
    )  # fmt: skip
    test_acc = test.accuracy(best_policy)
    no_comm = space.no_communication_policy()
    # The front of the last iteration: its policies were all scored with the same weights.
    last = [e for e in feasible if e["iteration"] == state["iteration"]]
    front = pareto_front([(e["accuracy"], e[cost.key], e["index"]) for e in last])
    by_index = {e["index"]: e for e in last}
    summary = {
        "space": space.name,
        "space_hash": space.hash,
        "strategy": strategy.label,
        "dataset": data.name,
        "iterations": state["iteration"],
        "evaluations": len(events),
        "scoring": {
            "search": config.scoring,
            "calib_images": config.calib_images if config.scoring == "recalibrated" else None,
            "final": f"recalibrated on {len(calibration)} training images, eval mode",
        },
        "best_policy": best["policy"],
        "best_val_acc": best["val_acc"],
        "best_comm_ratio": best["comm_ratio"],
        "best_reward": best["reward"],
        "best_search_reward": best["search_reward"],
        "best_test_acc": test_acc,
        "no_comm_val_acc": deployable.accuracy(no_comm),
        "candidates_rescored": len(rescored),
        "reward_mode": config.reward,
        "cost": cost.to_json(),
        "selection": selection,  # pareto: the rule, budget and front size (front.json)
        "pareto_front": [
            {"accuracy": a, **cost.measures(by_index[i]["policy"]), "event": i} for a, _, i in front
        ],
        "search_time_s": state["elapsed_s"],
        "evaluation_time_s": sum(e["time_s"] for e in events),
        "storage": recorder.url,
    }
    if cost.latency:
        summary["best_latency_ms"] = best["latency_ms"]
        summary["best_latency_ratio"] = best["latency_ratio"]
    if constraints is not None:
        summary["constraints"] = constraints.to_json()
        summary["infeasible_evaluations"] = len(events) - len(feasible)
    if "objective" in best:
        summary["best_objective"] = best["objective"]
    if "resume_note" in state:
        summary["resume_note"] = state["resume_note"]
    run.write_json("summary.json", summary)
    plot_search_curve(events, run / "search_curve.png", f"{space.name}: {strategy.label}")
    plot_pareto(events, front, run / "pareto.png", f"{space.name}: {strategy.label}", cost)
    return SearchResult(summary, best_policy, events)
