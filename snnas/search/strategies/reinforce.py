"""An LSTM controller trained with REINFORCE (Zoph & Le, 2017; Pham et al., 2018, ENAS).

One LSTM step per labelled decision, in the space's order: the input is the embedding of the
previous decision's choice (a learned start vector for the first), the output goes through
that decision's own softmax head, which has exactly the decision's number of choices (so no
choice is ever invalid). Logits are divided by a temperature and squashed by ``c * tanh``
(ENAS). One update per ``batch`` policies, all scored on the same minibatch: the policy
gradient with normalized advantages (batch mean and standard deviation, leave-one-out, or
ENAS's moving-average baseline), optionally PPO's clipped objective over a few epochs
(Schulman et al., 2017), an entropy bonus, Adam. Defaults, how they were measured and their
sources are in docs/search.md.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from snnas._numbers import Range
from snnas.errors import CheckpointError, shorten
from snnas.search._pareto import epsilon_gap, pareto_front
from snnas.search.strategies._base import Reward, Strategy, register_strategy
from snnas.space import Policy, SearchSpace

__all__ = ["Controller", "Reinforce"]


class Controller(nn.Module):
    """Autoregressive policy over a sequence of categorical decisions."""

    def __init__(
        self, sizes: list[int], hidden: int = 100, temperature: float = 1.0, tanh: float = 5.0
    ) -> None:
        super().__init__()
        self.sizes = sizes
        self.temperature = temperature
        self.tanh = tanh
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden) for n in sizes)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in sizes)
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)

    def _logits(self, step: int, h: Tensor) -> Tensor:
        logits = self.heads[step](h) / self.temperature
        if self.tanh > 0:
            logits = self.tanh * torch.tanh(logits)
        return logits

    def _steps(self, batch: int, choose: Any) -> tuple[Tensor, Tensor, Tensor]:
        """Run the decisions in order; ``choose(step, logits)`` picks each (batch,) choice."""
        h = c = torch.zeros(batch, self.start.shape[1])
        x = self.start.expand(batch, -1)
        picks, log_prob, entropy = [], torch.zeros(batch), torch.zeros(batch)
        for step in range(len(self.sizes)):
            h, c = self.lstm(x, (h, c))
            logits = self._logits(step, h)  # (B, n_step)
            log_p = torch.log_softmax(logits, dim=-1)
            choice = choose(step, logits)  # (B,)
            log_prob = log_prob + log_p.gather(1, choice[:, None]).squeeze(1)
            entropy = entropy - (log_p.exp() * log_p).sum(-1)
            picks.append(choice)
            x = self.embeddings[step](choice)
        return torch.stack(picks, 1), log_prob, entropy

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` index sequences drawn from the policy, ``(n, D)``."""
        with torch.no_grad():
            return self._steps(
                n,
                lambda s, logits: torch.multinomial(logits.softmax(-1), 1, generator=generator)[
                    :, 0
                ],
            )[0]

    def evaluate(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probabilities and entropies of given sequences (teacher forcing), ``(B,)``."""
        _, log_prob, entropy = self._steps(len(indices), lambda s, logits: indices[:, s])
        return log_prob, entropy

    def greedy(self) -> tuple[list[int], list[float]]:
        """The argmax sequence and the probability of each of its choices."""
        probs: list[float] = []

        def pick(step: int, logits: Tensor) -> Tensor:
            p = logits.softmax(-1)
            choice = p.argmax(-1)
            probs.append(float(p[0, choice[0]]))
            return choice

        with torch.no_grad():
            indices = self._steps(1, pick)[0][0].tolist()
        return indices, probs


ADVANTAGES = ("mean_std", "loo", "ema")


@register_strategy("reinforce")
class Reinforce(Strategy):
    """Policy gradient over a :class:`Controller`; one update every ``batch`` rewards.

    ``advantage``: ``"mean_std"`` (batch mean and standard deviation), ``"loo"`` (each reward
    minus the mean of the others, over a moving average of the batches' standard deviation)
    or ``"ema"`` (minus ENAS's moving-average baseline, in reward units). ``ppo_epochs`` > 1
    makes the update PPO's clipped objective (``ppo_clip``) over that many passes; 1 is
    plain REINFORCE. Two objectives (``pareto``): a policy's reward is minus its additive
    epsilon gap to the front of every policy told before its batch (positive when it
    extends the front).

    Within constraints, an infeasible policy's reward is replaced by the lowest reward of
    its batch minus its violation, so it ranks below every feasible policy of the batch
    (and infeasible ones by violation), and it never joins the front.
    """

    multi_objective = True
    option_ranges: ClassVar[dict[str, Range]] = {
        "hidden": Range(1, 1024, integer=True),
        "temperature": Range(0, 1000, low_open=True),
        "tanh_constant": Range(0, 1000),
        "entropy_weight": Range(0, 1000),
        "baseline_decay": Range(0, 1, high_open=True),
        "lr": Range(0, 10, low_open=True),
        "batch": Range(1, 100_000, integer=True),
        "grad_clip": Range(0, 1e6),
        "ppo_epochs": Range(1, 1000, integer=True),
        "ppo_clip": Range(0, 10, low_open=True),
    }

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        hidden: int = 100,
        temperature: float = 1.0,
        tanh_constant: float = 5.0,
        entropy_weight: float = 1e-4,
        baseline_decay: float = 0.95,
        lr: float = 1e-2,
        batch: int = 10,
        advantage: str = "mean_std",
        ppo_epochs: int = 1,
        ppo_clip: float = 0.2,
        grad_clip: float = 5.0,
    ) -> None:
        super().__init__(space, seed)
        numbers = {
            "temperature": temperature,
            "tanh_constant": tanh_constant,
            "entropy_weight": entropy_weight,
            "baseline_decay": baseline_decay,
            "lr": lr,
            "ppo_clip": ppo_clip,
            "grad_clip": grad_clip,
        }
        bad = {k: v for k, v in numbers.items() if not math.isfinite(v)}
        if bad:
            raise ValueError(f"options must be finite numbers, got {bad}")
        if tanh_constant < 0 or entropy_weight < 0 or grad_clip < 0 or hidden < 1:
            raise ValueError(
                "need tanh_constant, entropy_weight, grad_clip >= 0 and hidden >= 1; got "
                f"{tanh_constant}, {entropy_weight}, {grad_clip}, {hidden}"
            )
        if batch < 1 or not 0 <= baseline_decay < 1 or lr <= 0 or temperature <= 0:
            raise ValueError(
                "need batch >= 1, 0 <= baseline_decay < 1, lr > 0, temperature > 0; got "
                f"{batch}, {baseline_decay}, {lr}, {temperature}"
            )
        if advantage not in ADVANTAGES or ppo_epochs < 1 or ppo_clip <= 0:
            raise ValueError(
                f"need advantage in {ADVANTAGES}, ppo_epochs >= 1, ppo_clip > 0; got "
                f"{advantage!r}, {ppo_epochs}, {ppo_clip}"
            )
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.controller = Controller(
            [len(d) for d in space.decisions], hidden, temperature, tanh_constant
        )
        torch.random.set_rng_state(generator_state)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=lr)
        self.entropy_weight = entropy_weight
        self.baseline_decay = baseline_decay
        self.batch_size = batch
        self.advantage = advantage
        self.ppo_epochs = ppo_epochs
        self.ppo_clip = ppo_clip
        self.grad_clip = grad_clip
        self.baseline: float | None = None  # "ema": the moving average of rewards
        self.scale: float | None = None  # "loo": the moving average of the batches' std
        self.front: list[tuple[float, ...]] = []  # several objectives: the front so far
        self.buffer: list[tuple[list[int], Reward]] = []
        self.updates = 0
        self._stats: dict[str, Any] = {}

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.asked)

    def ask(self) -> Policy:
        indices = self.controller.sample(1, self._generator())[0].tolist()
        self.asked += 1
        return self.space.decode(indices)

    def ask_batch(self, n: int) -> list[Policy]:
        indices = self.controller.sample(n, self._generator()).tolist()
        self.asked += 1
        return [self.space.decode(i) for i in indices]

    def sample_for_training(self) -> Policy:
        return self.ask()  # the shared weights train under the controller's distribution

    def tell(self, policy: Policy, reward: Reward) -> None:
        self.check_reward(reward)
        self.buffer.append((list(self.space.encode(policy)), reward))
        self.told += 1
        if len(self.buffer) >= self.batch_size:
            self._update()

    def observe(self, policy: Policy, reward: Reward) -> None:
        """Phase 3 samples from the frozen controller (the paper): nothing is learned."""
        self.told += 1

    def _scalars(self, rewards: list[Reward], codes: list[list[int]] | None = None) -> list[float]:
        """Rewards as numbers; (accuracy, ratio) pairs against the front before the batch,
        which then takes in the feasible ones. Infeasible policies score below the batch."""
        violations = [
            self.violation(self.space.decode(code)) if codes else 0.0
            for code in (codes or [[]] * len(rewards))
        ]
        pairs = [r for r in rewards if isinstance(r, tuple)]
        if not pairs:
            out = [float(r) for r in rewards]  # type: ignore[arg-type]
        else:
            if len(pairs) != len(rewards) or len({len(p) for p in pairs + self.front}) != 1:
                raise ValueError("a batch mixes rewards of different numbers of objectives")
            out = [-epsilon_gap(p, self.front) for p in pairs]
            feasible = [p for p, v in zip(pairs, violations, strict=True) if v <= 0]
            points = [(*p, None) for p in self.front + feasible]
            self.front = [tuple(p[:-1]) for p in pareto_front(points)]
        lowest = min(out)
        return [r if v <= 0 else lowest - v for r, v in zip(out, violations, strict=True)]

    def _advantages(self, rewards: Tensor) -> Tensor:
        mean = float(rewards.mean())
        if self.advantage == "ema":
            if self.baseline is None:
                self.baseline = mean
            advantage = rewards - self.baseline  # before the baseline moves: unbiased
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * mean
            return advantage
        if len(rewards) < 2:
            return torch.zeros_like(rewards)
        std = float(rewards.std(unbiased=False))
        if self.advantage == "mean_std":
            return (rewards - mean) / std if std > 0 else torch.zeros_like(rewards)
        k = len(rewards)
        others = (rewards.sum() - rewards) / (k - 1)  # leave-one-out baseline: unbiased
        self.scale = std if self.scale is None else (
            self.baseline_decay * self.scale + (1 - self.baseline_decay) * std
        )  # fmt: skip
        return (rewards - others) / self.scale if self.scale > 0 else torch.zeros_like(rewards)

    def _update(self) -> None:
        indices = torch.tensor([code for code, _ in self.buffer])
        scalars = self._scalars([r for _, r in self.buffer], [c for c, _ in self.buffer])
        rewards = torch.tensor(scalars, dtype=torch.float64)
        self.buffer = []
        advantage = self._advantages(rewards).float()
        old_log_prob: Tensor | None = None
        kl = 0.0
        for _ in range(self.ppo_epochs):
            log_prob, entropy = self.controller.evaluate(indices)
            if old_log_prob is None:
                old_log_prob = log_prob.detach()
            ratio = torch.exp(log_prob - old_log_prob)  # 1 in the first pass: REINFORCE
            clipped = ratio.clamp(1 - self.ppo_clip, 1 + self.ppo_clip)
            objective = torch.minimum(ratio * advantage, clipped * advantage)
            loss = -objective.mean() - self.entropy_weight * entropy.mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = float(
                torch.nn.utils.clip_grad_norm_(
                    self.controller.parameters(), self.grad_clip or math.inf
                )
            )
            self.optimizer.step()
            kl = float((old_log_prob - log_prob.detach()).mean())
        self.updates += 1
        greedy, probs = self.controller.greedy()
        self._stats = {
            "update": self.updates,
            "mean_reward": float(rewards.mean()),
            "reward_std": float(rewards.std(unbiased=False)),
            "baseline": self.baseline,
            "advantage_abs": float(advantage.abs().mean()),
            "entropy": float(entropy.detach().mean()),
            "grad_norm": norm,
            "approx_kl": kl,  # of the last pass against the sampling controller (PPO)
            "argmax_probs": {d.label: p for d, p in zip(self.space.decisions, probs, strict=True)},
            "argmax_policy": greedy,
        }

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)

    def argmax_policy(self) -> Policy:
        """The controller's most likely policy."""
        return self.space.decode(self.controller.greedy()[0])

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "controller": self.controller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
            "scale": self.scale,
            "front": [list(p) for p in self.front],
            "buffer": [[code, list(r) if isinstance(r, tuple) else r] for code, r in self.buffer],
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; a state of another space or controller size
        (tensor shapes), or with entries of the wrong type, is a :class:`CheckpointError`
        naming the entry, and nothing is changed."""
        problem = _state_problem(self, state)
        if problem is not None:
            raise CheckpointError(f"the reinforce strategy's state: {problem}")
        if state["name"] != self.name:
            super().load_state_dict(state)  # refuses another strategy's state
        try:  # before anything changes: a mismatch raises before the optimizer is touched
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(
                f"the reinforce strategy's state: its optimizer state ({exc})"
            ) from None
        super().load_state_dict(state)
        self.controller.load_state_dict(state["controller"])
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        scale = state.get("scale")
        self.scale = None if scale is None else float(scale)
        self.front = [tuple(float(v) for v in p) for p in state.get("front", [])]
        self.buffer = [
            (list(code), tuple(float(v) for v in r) if isinstance(r, list) else float(r))
            for code, r in state["buffer"]
        ]
        self.updates = int(state["updates"])


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _state_problem(strategy: Reinforce, state: Any) -> str | None:
    """What is wrong with ``state`` for ``strategy`` (None when it fits)."""
    if not isinstance(state, dict):
        return f"expected a dict, found {type(state).__name__}"
    missing = [
        k
        for k in ("name", "seed", "asked", "told", "controller", "optimizer", "baseline")
        if k not in state
    ]
    if missing:
        return f"missing {', '.join(missing)}"
    if "buffer" not in state or "updates" not in state:
        return "missing buffer or updates"
    for key in ("seed", "asked", "told", "updates"):
        if isinstance(state[key], bool) or not isinstance(state[key], int) or state[key] < 0:
            return f"{key} is {shorten(state[key])}, not an integer >= 0"
    for key in ("baseline", "scale"):
        if state.get(key) is not None and not _finite(state[key]):
            return f"{key} is {shorten(state[key])}, not a finite number or None"
    own = strategy.controller.state_dict()
    saved = state["controller"]
    if not isinstance(saved, dict) or set(saved) != set(own):
        return "the controller's entries differ (another space or controller)"
    for name, tensor in own.items():
        value = saved[name]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            return f"controller {name} is {shape}, expected {tuple(tensor.shape)}"
        if value.dtype != tensor.dtype or not bool(torch.isfinite(value).all()):
            return f"controller {name} is not a finite {tensor.dtype} tensor"
    if not isinstance(state["optimizer"], dict):
        return "the optimizer state is not a dict"
    sizes = [len(d) for d in strategy.space.decisions]

    def code_ok(code: Any) -> bool:
        return (
            isinstance(code, list | tuple)
            and len(code) == len(sizes)
            and all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c < n
                for c, n in zip(code, sizes, strict=True)
            )
        )

    def reward_ok(r: Any) -> bool:
        if isinstance(r, list | tuple):
            return len(r) in (2, 3) and all(_finite(v) for v in r)
        return _finite(r)

    front = state.get("front", [])
    if not isinstance(front, list) or not all(
        isinstance(p, list | tuple) and reward_ok(list(p)) for p in front
    ):
        return "the front is not a list of finite objective tuples"
    buffer = state["buffer"]
    if not isinstance(buffer, list) or not all(
        isinstance(b, list | tuple) and len(b) == 2 and code_ok(b[0]) and reward_ok(b[1])
        for b in buffer
    ):
        return "the buffer is not a list of [policy code, finite reward] pairs of this space"
    return None
