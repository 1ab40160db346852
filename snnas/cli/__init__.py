"""The ``snnas`` command. Heavy imports live inside the commands so ``--help`` is instant.

A user error (:class:`snnas.errors.SnnasError`) is one red line and exit code 1; usage errors
exit with code 2 (click's convention); ``SNNAS_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from snnas import __version__
from snnas.cli._terminal import Terminal
from snnas.errors import SnnasError

__all__ = ["cli", "main"]


class _Group(click.Group):
    """A click group that turns project errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SnnasError as exc:
            if os.environ.get("SNNAS_DEBUG") == "1":
                raise
            terminal = ctx.obj if isinstance(ctx.obj, Terminal) else Terminal()
            terminal.error(str(exc))
            ctx.exit(1)
        except KeyboardInterrupt:
            Terminal().error("interrupted")
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="snnas")
@click.option("-q", "--quiet", is_flag=True, help="Only print results and errors.")
@click.option("-v", "--verbose", is_flag=True, help="Print debug details.")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """Search, train and deploy communication policies for split Sep-ResNeXt networks."""
    ctx.obj = Terminal(quiet=quiet, verbose=verbose)


def _register() -> None:
    from snnas.cli import compare, cost, list_, parity, search, space, train

    cli.add_command(space.space)
    cli.add_command(cost.cost)
    cli.add_command(train.train)
    cli.add_command(search.search)
    cli.add_command(compare.compare)
    cli.add_command(list_.list_command)
    cli.add_command(parity.parity)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="snnas")
