"""PNG plots written next to the JSON they illustrate (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from snnas._plot import pyplot as _pyplot
from snnas._plot import save_png

if TYPE_CHECKING:
    from snnas.search._cost import CostTerm

__all__ = ["pareto_figure", "plot_compare", "plot_pareto", "plot_search_curve", "strategy_colours"]


def _save(fig: Any, path: Path) -> None:
    save_png(fig, path)


def plot_search_curve(events: list[dict[str, Any]], path: Path, title: str) -> None:
    """Best-so-far reward and the running mean of sampled rewards over evaluations."""
    plt = _pyplot()
    rewards = [e["reward"] for e in events]
    best: list[float] = []
    running: list[float] = []
    total = 0.0
    for i, r in enumerate(rewards):
        best.append(max(r, best[-1]) if best else r)
        total += r
        window = rewards[max(0, i - 49) : i + 1]
        running.append(sum(window) / len(window))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(range(1, len(best) + 1), best, label="best so far")
    ax.plot(range(1, len(running) + 1), running, label="mean of the last 50 sampled", alpha=0.8)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("reward")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_pareto(
    events: list[dict[str, Any]],
    front: list[tuple[float, float, Any]],
    path: Path,
    title: str,
    cost: CostTerm | None = None,
) -> None:
    """Accuracy against the cost (the communication ratio, or the latency ratio with its
    milliseconds on a second axis) for every evaluation (coloured by iteration), and the
    Pareto front of the last iteration drawn."""
    _save(pareto_figure(events, front, title, cost), path)


def pareto_figure(
    events: list[dict[str, Any]],
    front: list[tuple[float, float, Any]],
    title: str,
    cost: CostTerm | None = None,
) -> Any:
    """The figure of :func:`plot_pareto`. With a single iteration there is nothing to colour
    by: one colour, and the iteration in the legend instead of a one-value colour bar."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    iterations = sorted({e["iteration"] for e in events})
    key = "comm_ratio" if cost is None else cost.key
    xs = [e[key] for e in events]
    ys = [e["accuracy"] for e in events]
    if len(iterations) > 1:
        points = ax.scatter(
            xs, ys, c=[e["iteration"] for e in events], cmap="viridis", s=8, alpha=0.5,
            label="evaluated policies",
        )  # fmt: skip
        fig.colorbar(points, ax=ax, label="iteration")
    else:
        where = f" (iteration {iterations[0]})" if iterations else ""
        ax.scatter(xs, ys, color="C0", s=8, alpha=0.5, label=f"evaluated policies{where}")
    if front:
        ax.step(
            [f[1] for f in front],
            [f[0] for f in front],
            where="post",
            color="C3",
            label="Pareto front (last iteration)",
        )
        ax.scatter([f[1] for f in front], [f[0] for f in front], color="C3", s=18)
    if cost is not None and cost.latency and cost.reference_ms:
        ref = cost.reference_ms
        ax.set_xlabel(f"latency ratio (of the densest policy's {ref:.4g} ms)")
        top = ax.secondary_xaxis("top", functions=(lambda r: r * ref, lambda ms: ms / ref))
        top.set_xlabel(f"simulated latency on {cost.profile.name} (ms)")
    else:
        ax.set_xlabel("communication ratio (policy bytes / ring all-reduce bytes)")
    ax.set_ylabel("validation accuracy (minibatch)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def strategy_colours(panels: list[dict[str, Any]]) -> dict[str, str]:
    """One colour per strategy, the same in every panel (in order of first appearance), so a
    strategy missing from one panel does not shift the others' colours."""
    names: list[str] = []
    for panel in panels:
        names += [n for n in panel if n not in names]
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def plot_compare(
    curves: dict[str, tuple[list[float], list[float]]],
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    panels: dict[str, dict[str, tuple[list[float], list[float]]]] | None = None,
) -> None:
    """One line per strategy (mean) with a shaded standard error; extra ``panels`` side by
    side, each {strategy: (mean, standard error)}."""
    plt = _pyplot()
    all_panels = {ylabel: curves, **(panels or {})}
    fig, axes = plt.subplots(1, len(all_panels), figsize=(7 * len(all_panels), 4.5))
    axes = [axes] if len(all_panels) == 1 else list(axes)
    colours = strategy_colours(list(all_panels.values()))
    for ax, (label, data) in zip(axes, all_panels.items(), strict=True):
        for name, (mean, err) in data.items():
            x = range(1, len(mean) + 1)
            ax.plot(x, mean, label=name, color=colours[name])
            ax.fill_between(
                x,
                [m - e for m, e in zip(mean, err, strict=True)],
                [m + e for m, e in zip(mean, err, strict=True)],
                color=colours[name],
                alpha=0.2,
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_title(title)
    _save(fig, path)
