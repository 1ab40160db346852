"""``snnas --help`` and ``import snnas.cli`` import no command module (issue 16, section 5):
torch is imported inside the command that needs it, so the help is instant and Ctrl-C during
an import is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from snnas.cli import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "numpy", "optuna", "matplotlib", "sklearn", "snnas.train", "snnas.models")


def _loaded_after(code: str) -> dict[str, bool]:
    """Which heavy modules a fresh interpreter holds after running ``code``."""
    report = f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    probe = f"{code}\nimport json, sys\n{report}"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    loaded: dict[str, bool] = json.loads(out.strip().splitlines()[-1])
    return loaded


def test_import_snnas_cli_imports_nothing_heavy():
    assert _loaded_after("import snnas, snnas.cli") == dict.fromkeys(HEAVY, False)


def test_help_imports_nothing_heavy():
    code = (
        "from snnas.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
    )
    assert _loaded_after(code) == dict.fromkeys(HEAVY, False)


def test_command_help_loads_only_that_command():
    code = (
        "from snnas.cli import main\n"
        "try:\n    main(['space', '--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
    )
    assert _loaded_after(code)["torch"] is False


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_table_matches_the_command(name):
    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.name == name
    for limit in (30, 45, 60, 80, 200):
        listed = click.Command(name, help=COMMANDS[name][2]).get_short_help_str(limit)
        assert listed == command.get_short_help_str(limit)


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = result.output.split("Commands:")[1].split()
    for name in COMMANDS:
        assert name in listed


def test_ctrl_c_while_a_command_is_imported(tmp_path, monkeypatch):
    (tmp_path / "snnas_interrupted_cmd.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(COMMANDS, "boom", ("snnas_interrupted_cmd", "boom", "Interrupted."))
    result = CliRunner().invoke(cli, ["boom"])
    assert result.exit_code == 130
    assert "interrupted" in result.output and "Traceback" not in result.output
    assert "boom" not in cli.commands
