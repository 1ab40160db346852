"""Options shared by the commands that load data and write run folders, and the checked
number type every numeric option uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from snnas._numbers import Range
from snnas.errors import shorten

__all__ = [
    "PROFILE_HELP",
    "SEED",
    "Number",
    "data_options",
    "profile_overrides",
    "run_options",
]

F = TypeVar("F", bound=Callable[..., Any])


class Number(click.ParamType):
    """A number checked against a :class:`~snnas._numbers.Range`: its type, finiteness
    (``nan``, ``inf`` refused) and range. A bad value is a usage error (exit code 2)."""

    def __init__(self, valid: Range) -> None:
        self.valid = valid
        self.name = "integer" if valid.integer else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number: int | float = value
        else:
            text = str(value).strip()
            try:
                number = int(text) if self.valid.integer else float(text)
            except ValueError:
                found = shorten(value, 100, quote=True)
                self.fail(f"expected {self.valid.describe()}, found {found}", param, ctx)
        problem = self.valid.problem(number)
        if problem is not None:
            self.fail(f"expected {problem}, found {shorten(value, 100, quote=True)}", param, ctx)
        return number

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.valid.describe().removeprefix("an ").removeprefix("a ").upper()


#: Seeds: they seed torch, Python and Optuna generators, whose ranges they must fit.
SEED = Number(Range(0, 2**31 - 1, integer=True))


def _stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(f: F) -> F:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


data_options = _stack(
    click.option(
        "--dataset",
        type=click.Choice(["digits", "fashion-mnist", "cifar10", "cifar100"]),
        default="digits",
        show_default=True,
        help="digits is bundled; fashion-mnist reads /usr/share/datasets/fashion-mnist "
        "(apt-get install dataset-fashion-mnist) unless --data-dir; CIFAR needs --data-dir.",
    ),
    click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        help="Folder holding the Fashion-MNIST IDX files or the CIFAR python batches (or "
        "its parent).",
    ),
    click.option(
        "--download",
        is_flag=True,
        help="fashion-mnist: fetch the files into --data-dir first (needs internet).",
    ),
)

run_options = _stack(
    click.option(
        "--name",
        help="Run name: one folder name under --runs-dir (not a path).",
    ),
    click.option(
        "--runs-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("runs"),
        show_default=True,
    ),
    click.option("--device", help="cpu, cuda or cuda:N (default: a GPU when present)."),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
)


#: ``--profile`` of ``snnas search`` and ``snnas compare``: the latency cost's device profile.
PROFILE_HELP = (
    "Optimise the simulated latency on this device profile instead of communication (a "
    "shipped name, rpi3b+ or a57x4, or a .toml file snnas profile wrote): sets "
    'reward.cost = "latency" and reward.profile (docs/search.md).'
)


def profile_overrides(profile: str | None, overrides: tuple[str, ...] | list[str]) -> list[str]:
    """``--set`` items with ``--profile``'s two settings added. An unknown profile name is a
    usage error naming ``--profile`` and the valid names (exit code 2), a bad profile file a
    configuration error naming the file; ``--profile`` beside ``--set reward.cost`` or
    ``reward.profile`` is refused (which one would win is not obvious)."""
    import json

    from snnas.cost import get_profile
    from snnas.errors import UsageError

    items = list(overrides)
    if profile is None:
        return items
    get_profile(profile, option="--profile")
    for item in items:
        key = item.partition("=")[0].strip()
        if key in ("reward.cost", "reward.profile"):
            raise UsageError("--profile", f"no --set {key} beside it (--profile sets it)", item)
    # A TOML basic string: JSON's escapes are TOML's, but not its surrogate pairs (a file
    # name outside the Basic Multilingual Plane), so those characters stay as they are; DEL
    # must be escaped (as snnas.cost._profile._toml_str writes strings).
    value = json.dumps(profile, ensure_ascii=False).replace("\x7f", "\\u007f")
    return [*items, 'reward.cost="latency"', f"reward.profile={value}"]
