"""The ``snnas`` command. A command's module is imported only when it is used and heavy
imports live inside the command bodies, so ``--help`` is instant.

Exit codes: 0 success; 1 a failure the user can fix (a :class:`snnas.errors.SnnasError`, a
file that cannot be read or written); 2 a usage error (click's own, or a
:class:`snnas.errors.UsageError`: an option value that makes no sense); 130 interrupted.
Every error is one red line on stderr; ``SNNAS_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
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

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(_load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their one-line help, without importing a command's module."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            command = self.commands.get(name)
            if command is None:
                text = click.Command(name, help=COMMANDS[name][2]).get_short_help_str(limit)
            elif command.hidden:
                continue
            else:
                text = command.get_short_help_str(limit)
            rows.append((name, text))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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


#: Every command: its name, the module and attribute that define it, and the line
#: ``snnas --help`` shows for it (the first paragraph of its docstring; a test checks they
#: agree). A command's module is imported only when that command is resolved (it runs, or
#: its own ``--help``), so ``snnas --help`` and ``import snnas.cli`` import neither torch nor
#: numpy, and Ctrl-C during an import is one line, not a traceback.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "space": ("snnas.cli.space", "space", "Inspect search spaces (TOML files, see docs/dsl.md)."),
    "cost": (
        "snnas.cli.cost",
        "cost",
        "Communication, compute and latency of POLICY on SPACE (see docs/cost-model.md).",
    ),
    "train": (
        "snnas.cli.train",
        "train",
        "Train on SPACE: the supernet (random policies), a fixed --policy, or the --plain ResNeXt.",
    ),
    "search": (
        "snnas.cli.search",
        "search",
        "Search SPACE for a communication policy; write runs/<name>/ (events, checkpoints, "
        "best_policy.json, summary.json, plots, an Optuna study).",
    ),
    "compare": (
        "snnas.cli.compare",
        "compare",
        "Compare search strategies on SPACE; write report.md, report.json and curves.png.",
    ),
    "finetune": (
        "snnas.cli.finetune",
        "finetune",
        "Fine-tune RUN's selected policy (or --policy) from the search's shared weights; "
        "write RUN/finetune/ (metrics, curves.png, last.pt, best.pt, final.json).",
    ),
    "export": (
        "snnas.cli.export",
        "export",
        "Export RUN's fine-tuned network (snnas finetune RUN) as a plan folder: plan.json, "
        "per-device safetensors weights, reference logits, and with --onnx the segments.",
    ),
    "plan": ("snnas.cli.plan", "plan", "Check deployment plans (docs/plan.md)."),
    "profile": (
        "snnas.cli.profile",
        "profile",
        "Measure this machine as a device profile TOML (read by --profile; docs/cost-model.md).",
    ),
    "run": (
        "snnas.cli.run",
        "run",
        "Run PLAN: --local starts every device here; on real machines run `snnas run PLAN "
        "--rank R --master HOST:PORT` on each (or torchrun, docs/runtime.md).",
    ),
    "list": (
        "snnas.cli.list_",
        "list_command",
        "List strategies, datasets, reward modes and device profiles.",
    ),
    "parity": (
        "snnas.cli.parity",
        "parity",
        "Parity devices: learned stand-ins that keep a split network answering.",
    ),
}


def _load(name: str) -> click.Command:
    """The command ``name`` of :data:`COMMANDS`, its module imported now."""
    module, attribute, _ = COMMANDS[name]
    command = getattr(importlib.import_module(module), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{module}.{attribute} is not a click command")
    return command


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="snnas")
