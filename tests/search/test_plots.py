"""The search's PNG plots read well: stable colours per strategy, no one-value colour bar."""

from __future__ import annotations

from pathlib import Path

from snnas.search._plots import pareto_figure, plot_compare, strategy_colours


def test_one_colour_per_strategy_across_panels() -> None:
    curve = ([0.1, 0.2], [0.0, 0.0])
    panels = [
        {"random": curve, "reinforce": curve, "evolution": curve},
        {"reinforce": curve, "evolution": curve},  # random skipped in this panel
    ]
    colours = strategy_colours(panels)
    assert colours == {"random": "C0", "reinforce": "C1", "evolution": "C2"}


def test_compare_plot_uses_the_shared_colours(tmp_path: Path) -> None:
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    curve = ([0.1, 0.2, 0.3], [0.01, 0.01, 0.01])
    shown = []
    original = plt.Figure.savefig

    def spy(fig, *args, **kwargs):  # look at the figure as it is written
        shown.append(
            [{line.get_label(): mcolors.to_hex(line.get_color()) for line in ax.lines}
             for ax in fig.axes]
        )  # fmt: skip
        return original(fig, *args, **kwargs)

    plt.Figure.savefig = spy
    try:
        plot_compare(
            {"random": curve, "reinforce": curve}, tmp_path / "c.png", "t", "x", "a",
            panels={"b": {"reinforce": curve}},
        )  # fmt: skip
    finally:
        plt.Figure.savefig = original
    (first, second) = shown[0]
    assert second["reinforce"] == first["reinforce"] != first["random"]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _events(iterations: list[int]) -> list[dict[str, float]]:
    return [
        {"iteration": it, "comm_ratio": 0.1 * (i + 1), "accuracy": 0.5 + 0.01 * i}
        for i, it in enumerate(iterations)
    ]


def test_pareto_plot_has_a_colour_bar_only_for_several_iterations() -> None:
    import matplotlib.pyplot as plt

    one = pareto_figure(_events([0, 0, 0]), [], "one")
    assert len(one.axes) == 1  # no colour bar for a single value
    assert "iteration 0" in one.axes[0].get_legend().get_texts()[0].get_text()
    many = pareto_figure(_events([0, 1, 2]), [(0.5, 0.1, None)], "many")
    assert len(many.axes) == 2  # the plot and its colour bar
    plt.close("all")
