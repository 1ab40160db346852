"""``snnas list``: what can be named on the command line."""

from __future__ import annotations

import click

from snnas.cli._terminal import Terminal, styled

__all__ = ["list_command"]


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_command(terminal: Terminal, as_json: bool) -> None:
    """List strategies, datasets, reward modes and device profiles."""
    from snnas.cost import PROFILES
    from snnas.data import DATASETS
    from snnas.search import REWARD_MODES, strategy_names

    data = {
        "strategies": strategy_names(),
        "datasets": list(DATASETS),
        "reward_modes": list(REWARD_MODES),
        "device_profiles": list(PROFILES),
    }
    if as_json:
        terminal.json(data)
        return
    for key, values in data.items():
        terminal.info(styled((key.replace("_", " "), "bold"), ": ", ", ".join(values)))
