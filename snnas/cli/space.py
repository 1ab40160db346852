"""``snnas space``: inspect search-space files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from snnas.cli._terminal import Terminal, format_count, styled

__all__ = ["space"]


@click.group()
def space() -> None:
    """Inspect search spaces (TOML files, see docs/dsl.md)."""


@space.command("show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def show(terminal: Terminal, file: Path, as_json: bool) -> None:
    """Print a space's decisions, their cardinalities, its size and parameter counts."""
    from snnas.space import load_space

    s = load_space(file)
    arch = s.arch
    data = {
        "name": s.name,
        "file": str(file),
        "hash": s.hash,
        "description": s.config.description,
        "groups": s.groups,
        "alpha": s.alpha,
        "parity": s.parity.r,
        "points": s.num_points,
        "blocks": arch.num_blocks,
        "decisions": [d.to_json() for d in s.decisions],
        "fixed": s.to_json()["fixed"],
        "size": s.size,
        "params": arch.params(separable=True),
        "baseline_params": arch.params(separable=False),
        "params_per_device": list(arch.params_per_device()),
    }
    if as_json:
        terminal.json(data)
        return

    from rich.table import Table

    terminal.info(styled((s.name, "bold"), "  ", s.config.description))
    terminal.info(
        f"hash {s.hash} | depth {s.network.depth} ({arch.num_blocks} blocks) | "
        f"{s.network.cardinality}x{s.network.bottleneck_width}d | G={s.groups} | "
        f"alpha={s.alpha} | parity r={s.parity.r} | {s.num_points} transmission points"
    )
    table = Table("label", "kind", "choices", "points", "values")
    for d in s.decisions:
        shown = [
            "".join(map(str, c))
            if isinstance(c, tuple)
            else f"{c:g}"
            if isinstance(c, float)
            else str(c)
            for c in d.choices[:5]
        ]
        more = " ..." if len(d) > 5 else ""
        points = ",".join(map(str, d.points)) if len(d.points) < 6 else f"{len(d.points)} points"
        table.add_row(d.label, d.kind, str(len(d)), points, " ".join(shown) + more)
    terminal.print(table)
    for kind, value in data["fixed"].items():
        terminal.info(f"fixed {kind}: {value}")
    terminal.info(f"size: {s.size} (= {format_count(s.size)}) policies")
    p, b = data["params"], data["baseline_params"]
    terminal.info(
        f"parameters: {p:,} separable, {b:,} plain ResNeXt ({100 * (p / b - 1):+.2f}%); "
        f"per device {', '.join(f'{x:,}' for x in data['params_per_device'])}"
    )


@space.command("list")
@click.argument(
    "folder", type=click.Path(file_okay=False, path_type=Path), default=Path("search_spaces")
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def list_spaces(terminal: Terminal, folder: Path, as_json: bool) -> None:
    """List the search spaces in FOLDER (default: search_spaces/)."""
    from snnas.errors import ConfigError
    from snnas.space import load_space

    if not folder.is_dir():
        raise ConfigError(folder, "<folder>", "a folder of search-space TOML files", "<missing>")
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.toml")):
        s = load_space(path)
        rows.append(
            {
                "file": str(path),
                "name": s.name,
                "hash": s.hash,
                "size": s.size,
                "params": s.arch.params(True),
            }
        )
    if as_json:
        terminal.json(rows)
        return
    from rich.table import Table

    table = Table("file", "name", "hash", "size", "params")
    for r in rows:
        table.add_row(
            str(r["file"]),
            str(r["name"]),
            str(r["hash"]),
            format_count(r["size"]),
            f"{r['params']:,}",
        )
    terminal.print(table)
