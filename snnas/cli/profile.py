"""``snnas profile``: measure this machine as a device profile (docs/cost-model.md)."""

from __future__ import annotations

from pathlib import Path

import click

from snnas._numbers import Range
from snnas.cli._options import Number
from snnas.cli._terminal import Terminal, styled

__all__ = ["profile"]

#: Seconds ``--serve`` waits for the measuring side.
SERVE_S = 600.0
#: Where the shipped spaces are, in a source checkout.
_SHIPPED = Path(__file__).resolve().parents[2] / "search_spaces"


def _default_spaces() -> list[Path]:
    from snnas.errors import UsageError

    for folder in (_SHIPPED, Path("search_spaces")):
        files = sorted(folder.glob("*.toml")) if folder.is_dir() else []
        if files:
            return files
    raise UsageError("--space", "a space file (no search_spaces/ folder here to default to)", "")


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/profile.toml"),
    show_default=True,
    metavar="FILE",
    help="The profile file to write (.toml; replaced atomically).",
)
@click.option(
    "--space",
    "space_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Time the op shapes of this space (repeatable; default: every shipped space).",
)
@click.option(
    "--peer",
    metavar="HOST:PORT",
    help="Measure the link to 'snnas profile --serve PORT' there (default: between two "
    "processes on this machine).",
)
@click.option(
    "--serve",
    "serve_port",
    metavar="PORT",
    type=Number(Range(1, 65535, integer=True)),
    help="Be the other end of one link measurement (for --peer on another machine), then exit.",
)
@click.option(
    "--repeats",
    metavar="N",
    type=Number(Range(1, 100_000, integer=True)),
    default=30,
    show_default=True,
    help="Timed runs per op shape and per message size (the median is kept).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON; no progress bars.")
@click.pass_obj
def profile(
    terminal: Terminal,
    out: Path,
    space_files: tuple[Path, ...],
    peer: str | None,
    serve_port: int | None,
    repeats: int,
    as_json: bool,
) -> None:
    """Measure this machine as a device profile TOML (read by --profile; docs/cost-model.md).

    A latency table per op shape at batch 1, the send and receive costs, link latency and
    bandwidth (gloo ping-pong), and FLOP/s fitted to the table."""
    from snnas.errors import UsageError

    if serve_port is not None:
        if peer is not None or space_files:
            raise UsageError("--serve", "no --peer or --space with it", serve_port)
        from snnas.runtime._profiler import serve_link

        terminal.info(
            f"waiting up to {SERVE_S:g} s for 'snnas profile --peer HOST:{serve_port}' "
            "(one measurement)"
        )
        serve_link("0.0.0.0", serve_port, master=True, join_s=SERVE_S)
        terminal.info("done")
        return
    if out.suffix != ".toml":
        raise UsageError("--out", "a file name ending in .toml", out)
    if out.is_symlink() or (out.exists() and not out.is_file()):
        found = f"{out} (a link or a folder)"
        raise UsageError("--out", "a regular file to replace, or a new one", found)
    if peer is not None:
        from snnas.runtime._profiler import parse_peer

        parse_peer(peer)
    from snnas.space import load_space

    spaces = [load_space(f) for f in (space_files or _default_spaces())]

    from snnas._io import atomic_write_text
    from snnas.cli._progress import progress_bars
    from snnas.cost._profile import profile_name, profile_toml
    from snnas.runtime._profiler import measure_profile

    name = profile_name(out.stem)
    with progress_bars(terminal if not as_json else Terminal(quiet=True), "profile") as bars:
        result, link = measure_profile(spaces, name=name, repeats=repeats, peer=peer,
                                       progress=bars)  # fmt: skip
    spaces_text = ", ".join(s.name for s in spaces)
    atomic_write_text(out, profile_toml(result, f"snnas profile of {spaces_text}"))
    if as_json:
        terminal.json(
            {
                "out": str(out),
                "spaces": [s.name for s in spaces],
                "profile": result.to_json(),
                "link_one_way_s": {str(k): v for k, v in link.one_way_s.items()},
            }
        )
        return
    seconds = [s for _, s in result.table]
    terminal.info(
        f"{len(seconds)} op shapes: {1e3 * min(seconds):.3f}-{1e3 * max(seconds):.3f} ms at "
        f"batch 1; fitted {result.flops:.3g} FLOP/s + {1e6 * result.op_overhead_s:.1f} us per op"
    )
    sizes = ", ".join(f"{k:,} B {1e6 * v:.0f} us" for k, v in link.one_way_s.items())
    terminal.info(
        f"link ({link.peer}): one-way {sizes}; send {1e6 * result.send_s:.1f} us, receive "
        f"{1e6 * result.recv_s:.1f} us, latency {1e6 * result.link_latency_s:.1f} us, "
        f"{result.bandwidth_bps / 1e9:.3g} Gbit/s; {result.cores} cores"
    )
    terminal.success(styled("wrote ", (str(out), "bold")))
