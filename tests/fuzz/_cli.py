"""Run the real ``snnas`` command in-process and check what every run must satisfy.

:func:`invoke` runs the CLI with click's runner (exceptions not caught, so a traceback fails
the test with the exception) inside a sandbox folder, and checks the promises of issue 8:
an exit code in {0, 1, 2}; no traceback; an error is one line on stderr; and nothing written
outside the sandbox's ``runs`` folder (the whole sandbox is compared before and after, so
an escape by ``../`` anywhere up to the sandbox is caught).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from snnas.cli import cli


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """The one error line (without ``error: ``), or ``""``."""
        return self.stderr.strip().removeprefix("error: ")


def _tree(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``root`` but ``skip``: its size and modification time."""
    out: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        if here == skip:
            dirs[:] = []
            continue
        for name in dirs + files:
            path = here / name
            if path == skip:
                continue
            info = path.lstat()
            out[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return out


def invoke(sandbox: Path, args: list[str], runs: Path | None = None) -> Outcome:
    """Run ``snnas ARGS`` with the sandbox as working folder; check the promises."""
    runs = runs or sandbox / "runs"
    before = _tree(sandbox, runs)
    cwd = os.getcwd()
    os.chdir(sandbox)
    try:
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    finally:
        os.chdir(cwd)
    stderr = result.stderr
    stdout = result.stdout
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output)
    assert "Traceback" not in result.output, (args, result.output)
    if result.exit_code != 0:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, stderr)
        assert len(lines[0]) <= 1100, (args, len(lines[0]))
    after = _tree(sandbox, runs)
    assert after == before, (args, set(after) ^ set(before))
    return Outcome(result.exit_code, stdout, stderr)
