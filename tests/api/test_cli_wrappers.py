"""The CLI commands over the API (issue 16, section 5): one word per count ("1 iteration"),
re-run advice that is true of the step, and nothing said about work that is then refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from snnas.cli import cli
from tests.conftest import SMALL_TOML

SEARCH = [
    "--strategy", "random", "--name", "s", "--device", "cpu",
    "--set", "search.iterations=1", "--set", "search.train_steps=4",
    "--set", "search.strategy_steps=1", "--set", "search.samples=2",
    "--set", "search.topk=2", "--set", "search.batch_size=64", "--set", "search.rescore=2",
]  # fmt: skip


def _snnas(cwd: Path, args: list[str]):
    here = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, args, catch_exceptions=False)
    finally:
        os.chdir(here)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wrappers")
    (folder / "tiny.toml").write_text(SMALL_TOML)
    return folder


def test_counts_read_as_words(root):
    search = _snnas(root, ["search", "tiny.toml", *SEARCH])
    assert search.exit_code == 0, search.output
    assert "random, 1 iteration, reward" in search.output
    tune = _snnas(root, ["finetune", "s", "--epochs", "1", "--device", "cpu"])
    assert tune.exit_code == 0, tune.output
    assert "(digits), 1 epoch at lr 0.03" in tune.output


def test_a_second_start_is_refused_before_anything_is_said(root):
    again = _snnas(root, ["search", "tiny.toml", *SEARCH])
    assert again.exit_code == 1
    assert again.stdout == ""
    assert "already holds a search: pass --resume to continue it, or use another --name" in (
        again.stderr
    )
    tune = _snnas(root, ["finetune", "s", "--epochs", "1", "--device", "cpu"])
    assert tune.exit_code == 1 and tune.stdout == ""
    assert "pass --resume to continue it, or remove that folder" in tune.stderr
    assert "--name" not in tune.stderr  # finetune has none


def test_export_table_lists_blocks_as_ranges(root):
    result = _snnas(root, ["export", "s"])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "device" in line)
    assert "blocks" in header and "skipped blocks" in header
    data = json.loads(_snnas(root, ["export", "s", "--json"]).stdout)
    plan = json.loads((root / "runs" / "s" / "plan" / "plan.json").read_text())
    for entry, device in zip(data["devices"], plan["devices"], strict=True):
        assert entry["blocks"] == device["blocks"]  # a list, like skipped_blocks
        assert entry["skipped_blocks"] == device["skipped_blocks"]


def test_export_refusal_says_nothing_first(root):
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("x")
    result = _snnas(root, ["export", "s", "--out", "mine"])
    assert result.exit_code == 1 and result.stdout == ""
    assert "non-empty folder that holds no plan" in result.stderr
