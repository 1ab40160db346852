"""Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted; always one line."""

import pytest
from click.testing import CliRunner

from snnas.cli import cli
from tests.conftest import TINY_SPACE


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)), catch_exceptions=False)


def test_interrupt_is_130(monkeypatch):
    import snnas.space

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(snnas.space, "load_space", interrupted)
    result = run("space", "show", TINY_SPACE)
    assert result.exit_code == 130 and result.stderr == "error: interrupted\n"


def test_os_errors_are_one_line_failures(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("train", TINY_SPACE, "--runs-dir", blocker / "sub", "--epochs", "1")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "Not a directory" in result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--bogus"], "No such option '--bogus'"),
        (["space", "show"], "Missing argument 'FILE'"),
        (["compare", TINY_SPACE, "--seeds", "0"], "expected an integer in [1, 1,000], found '0'"),
        (["train", TINY_SPACE, "--lr", "nan"], "expected a finite number in (0, 10], found 'nan'"),
    ],
)
def test_click_usage_errors_are_one_line(args, words):
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert words in result.stderr and "--help" in result.stderr


def test_help_and_bare_group_still_print_help():
    assert run("--help").exit_code == 0
    bare = run("space")
    assert "show" in bare.output and "list" in bare.output


def test_debug_shows_tracebacks(monkeypatch):
    monkeypatch.setenv("SNNAS_DEBUG", "1")
    from snnas.errors import UsageError

    with pytest.raises(UsageError):
        run("search", TINY_SPACE, "--strategy", "annealing")
