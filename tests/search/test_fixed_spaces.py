"""A space whose decisions are all fixed has nothing to search and is refused clearly; a
space whose decisions each have one choice left is searched (one policy)."""

import json

import pytest
from click.testing import CliRunner

from snnas.cli import cli
from snnas.errors import ConfigError
from snnas.search import make_strategy
from snnas.space import space_from_text
from tests.conftest import SMALL_TOML

ALL_FIXED = (
    SMALL_TOML.replace('choices = "all"', "fixed = [1, 0, 3, 2]")
    .replace("levels = 3", "levels = 3\nfixed = 50")
    .replace('choices = ["float32", "float16"]', 'fixed = "float16"')
)
ONE_CHOICE = (
    SMALL_TOML.replace('choices = "all"', "choices = [[1, 0, 3, 2]]")
    .replace("p_min = 50\nlevels = 3", "values = [50]")
    .replace('choices = ["float32", "float16"]', 'choices = ["float16"]')
)


@pytest.mark.parametrize("name", ["reinforce", "random", "evolution", "optuna:tpe"])
def test_all_fixed_space_is_refused(name):
    space = space_from_text(ALL_FIXED, "fixed.toml")
    assert space.decisions == () and space.size == 1
    with pytest.raises(ConfigError, match="every decision is fixed") as info:
        make_strategy(name, space)
    assert str(info.value).startswith("fixed.toml: decisions:")


def test_one_choice_space_is_searched(tmp_path):
    path = tmp_path / "one.toml"
    path.write_text(ONE_CHOICE)
    args = ["search", str(path), "--strategy", "reinforce", "--runs-dir", str(tmp_path / "runs")]
    args += ["--name", "one", "--json"]
    for item in ("iterations=1", "train_steps=1", "strategy_steps=1", "samples=1", "topk=1"):
        args += ["--set", f"search.{item}"]
    args += ["--set", "strategy.reinforce.batch=1"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    best = json.loads((tmp_path / "runs" / "one" / "best_policy.json").read_text())
    assert best["policy"]["t0.perm"] == [1, 0, 3, 2] and best["policy"]["t2.sparsity"] == 50.0
