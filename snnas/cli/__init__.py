"""The ``snnas`` command. Heavy imports live inside the commands so ``--help`` is instant.

Exit codes: 0 success; 1 a failure the user can fix (a :class:`snnas.errors.SnnasError`, a
file that cannot be read or written); 2 a usage error (click's own, or a
:class:`snnas.errors.UsageError`: an option value that makes no sense); 130 interrupted.
Every error is one red line on stderr; ``SNNAS_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from typing import Any, NoReturn

import click

from snnas import __version__
from snnas.cli._terminal import Terminal, TerminalLog
from snnas.errors import SnnasError, UsageError

__all__ = ["cli", "main"]

_LOG = TerminalLog()


def _debug() -> bool:
    return os.environ.get("SNNAS_DEBUG") == "1"


def _fail(ctx: click.Context | None, message: str, code: int) -> NoReturn:
    terminal = ctx.obj if ctx is not None and isinstance(ctx.obj, Terminal) else Terminal()
    terminal.error(message)
    raise click.exceptions.Exit(code)


def _usage_message(exc: click.ClickException) -> str:
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


class _Group(click.Group):
    """A click group that turns every error a user can cause into one line and an exit code
    (see the module docstring)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:  # the group's own options (snnas --bogus)
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # plain "snnas": the help, as click prints it
        except click.ClickException as exc:
            if _debug():
                raise
            _fail(None, _usage_message(exc), exc.exit_code)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.NoArgsIsHelpError):
            raise  # --help, --version, and "snnas space" alone (the help)
        except click.ClickException as exc:  # a sub-command's options or arguments
            if _debug():
                raise
            _fail(ctx, _usage_message(exc), exc.exit_code)
        except SnnasError as exc:
            if _debug():
                raise
            _fail(ctx, str(exc), 2 if isinstance(exc, UsageError) else 1)
        except OSError as exc:  # a folder that cannot be created, a full disk, ...
            if _debug():
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(ctx, f"{where}{exc.strerror or exc}", 1)
        except ValueError as exc:
            # os.stat and open refuse a path holding NUL (click's Path type, or ours) with a
            # ValueError: no file can be named so, hence a usage error.
            if _debug() or "null byte" not in str(exc):
                raise
            _fail(ctx, "a file or folder name holds a NUL character (\\x00)", 2)
        except KeyboardInterrupt:
            _fail(ctx, "interrupted", 130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="snnas")
@click.option("-q", "--quiet", is_flag=True, help="Only print results and errors.")
@click.option("-v", "--verbose", is_flag=True, help="Print debug details.")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """Search, train and deploy communication policies for split Sep-ResNeXt networks."""
    for stream in (sys.stdout, sys.stderr):
        # A terminal or pipe that cannot show a character (LANG=C, PYTHONIOENCODING=ascii)
        # gets an escape for it rather than a UnicodeEncodeError.
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    ctx.obj = Terminal(quiet=quiet, verbose=verbose)
    # The library logs through the "snnas" logger; its records reach this terminal.
    logger = logging.getLogger("snnas")
    logger.setLevel(logging.DEBUG)
    if _LOG not in logger.handlers:
        logger.addHandler(_LOG)
    _LOG.terminal = ctx.obj


def _register() -> None:
    from snnas.cli import (
        compare,
        cost,
        export,
        finetune,
        list_,
        parity,
        plan,
        profile,
        run,
        search,
        space,
        train,
    )

    cli.add_command(space.space)
    cli.add_command(cost.cost)
    cli.add_command(train.train)
    cli.add_command(search.search)
    cli.add_command(compare.compare)
    cli.add_command(finetune.finetune)
    cli.add_command(export.export)
    cli.add_command(plan.plan)
    cli.add_command(run.run)
    cli.add_command(list_.list_command)
    cli.add_command(parity.parity)
    cli.add_command(profile.profile)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="snnas")
