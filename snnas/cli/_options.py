"""Options shared by the commands that load data and write run folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["data_options", "run_options"]

F = TypeVar("F", bound=Callable[..., Any])


def _stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(f: F) -> F:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


data_options = _stack(
    click.option(
        "--dataset",
        type=click.Choice(["digits", "cifar10", "cifar100"]),
        default="digits",
        show_default=True,
        help="digits is bundled; CIFAR needs --data-dir.",
    ),
    click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        help="Folder holding the CIFAR python batches (or its parent).",
    ),
)

run_options = _stack(
    click.option("--name", help="Run name (the folder under --runs-dir)."),
    click.option(
        "--runs-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("runs"),
        show_default=True,
    ),
    click.option("--device", help="cpu, cuda or cuda:N (default: a GPU when present)."),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
)
