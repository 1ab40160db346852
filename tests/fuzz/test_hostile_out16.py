"""``snnas export RUN --out DIR`` (issue 16, section 4): a path the user gives is honoured
wherever it is, written atomically and never through a link; only names stay confined to
the runs folder. Each case runs the real CLI in a sandbox (one search, fine-tuned once per
module) and checks the exit code, the one error line and exactly what was written where."""

from __future__ import annotations

import json
import os
import shutil
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


def _snnas(cwd: Path, args: list[str]) -> tuple[int, str, str]:
    here = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    finally:
        os.chdir(here)
    assert "Traceback" not in result.output
    if result.exit_code:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return result.exit_code, result.stdout, result.stderr.strip().removeprefix("error: ")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("out16")
    (root / "tiny.toml").write_text(SMALL_TOML)
    assert _snnas(root, ["search", "tiny.toml", *SEARCH])[0] == 0
    assert _snnas(root, ["finetune", "s", "--epochs", "1", "--device", "cpu"])[0] == 0
    return root / "runs"


@pytest.fixture
def sandbox(tmp_path, tuned) -> Path:
    shutil.copytree(tuned, tmp_path / "runs", symlinks=True)
    return tmp_path


def _export(sandbox: Path, out: str) -> tuple[int, str, str]:
    return _snnas(sandbox, ["export", "s", "--out", out, "--json"])


def _plan_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("where", ["relative", "nested/deeper", "absolute", "../sibling"])
def test_out_is_honoured_anywhere(sandbox, where):
    target = sandbox / "x" / where if where != "absolute" else sandbox / "abs" / "plan"
    out = str(target) if where == "absolute" else f"x/{where}"
    code, stdout, err = _export(sandbox, out)
    assert code == 0, err
    resolved = (sandbox / out).resolve() if where != "absolute" else target
    assert json.loads(stdout)["plan"] == out
    assert _plan_files(resolved)[:2] == ["device0.safetensors", "device1.safetensors"]
    assert "plan.json" in _plan_files(resolved)
    assert not (sandbox / "runs" / "s" / "plan").exists()  # nothing at the default place
    leftovers = [p.name for p in resolved.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the staging folder was renamed into place


def test_an_older_plan_is_replaced_whole(sandbox):
    out = sandbox / "deploy"
    assert _export(sandbox, str(out))[0] == 0
    (out / "stale.txt").write_text("from before")
    inode = (out / "plan.json").stat().st_ino
    assert _export(sandbox, str(out))[0] == 0
    assert "stale.txt" not in _plan_files(out)  # a new folder, renamed over the old one
    assert (out / "plan.json").stat().st_ino != inode


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda sb: (sb / "mine").mkdir() or (sb / "mine" / "notes.txt").write_text("x"),
         "a non-empty folder that holds no plan"),
        (lambda sb: (sb / "mine").write_text("a file"), "exists and is not a plan folder"),
        (lambda sb: (sb / "elsewhere").mkdir() or (sb / "mine").symlink_to(sb / "elsewhere"),
         "is a symbolic link"),
    ],
    ids=["folder-of-other-things", "a-file", "a-link"],
)  # fmt: skip
def test_what_is_there_is_never_replaced_nor_written_through(sandbox, build, words):
    build(sandbox)
    before = {p: p.lstat().st_mtime_ns for p in sandbox.rglob("*")}
    code, _, err = _export(sandbox, str(sandbox / "mine"))
    assert code == 1 and words in err and str(sandbox / "mine") in err, err
    assert "--out" in err or "plan" in err
    assert {p: p.lstat().st_mtime_ns for p in sandbox.rglob("*")} == before


@pytest.mark.parametrize(
    "bad", ["", ".", "..", "x/..", "a\x00b", "a\nb", "a\x1b[31mb", "x" * 300, "y/" * 2100]
)
def test_paths_that_name_no_folder_are_usage_errors(sandbox, bad):
    before = sorted(str(p) for p in sandbox.rglob("*"))
    code, _, err = _export(sandbox, bad)
    assert code == 2 and err.startswith("--out: expected a folder path"), err
    assert sorted(str(p) for p in sandbox.rglob("*")) == before


def test_names_stay_confined(sandbox):
    """RUN is a name (or a path whose parent is the runs folder): still confined."""
    code, _, err = _snnas(sandbox, ["export", "../s", "--out", "p"])
    assert code == 2 and "RUN" in err
    code, _, err = _snnas(sandbox, ["export", "s", "--parity", "../x", "--out", "p"])
    assert code == 2 and "--parity" in err
    assert not (sandbox / "p").exists()
