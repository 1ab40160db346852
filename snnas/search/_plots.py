"""PNG plots written next to the JSON they illustrate (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_compare", "plot_pareto", "plot_search_curve"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    import io

    from snnas._io import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


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
    plt.close(fig)


def plot_pareto(
    events: list[dict[str, Any]], front: list[tuple[float, float, Any]], path: Path, title: str
) -> None:
    """Accuracy against communication ratio for every evaluation (coloured by iteration), and
    the Pareto front of the last iteration drawn."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    points = ax.scatter(
        [e["comm_ratio"] for e in events],
        [e["accuracy"] for e in events],
        c=[e["iteration"] for e in events],
        cmap="viridis",
        s=8,
        alpha=0.5,
        label="evaluated policies",
    )
    fig.colorbar(points, ax=ax, label="iteration")
    if front:
        ax.step(
            [f[1] for f in front],
            [f[0] for f in front],
            where="post",
            color="C3",
            label="Pareto front (last iteration)",
        )
        ax.scatter([f[1] for f in front], [f[0] for f in front], color="C3", s=18)
    ax.set_xlabel("communication ratio (policy bytes / ring all-reduce bytes)")
    ax.set_ylabel("validation accuracy (minibatch)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)
    plt.close(fig)


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
    for ax, (label, data) in zip(axes, all_panels.items(), strict=True):
        for name, (mean, err) in data.items():
            x = range(1, len(mean) + 1)
            ax.plot(x, mean, label=name)
            ax.fill_between(
                x,
                [m - e for m, e in zip(mean, err, strict=True)],
                [m + e for m, e in zip(mean, err, strict=True)],
                alpha=0.2,
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_title(title)
    _save(fig, path)
    plt.close(fig)
