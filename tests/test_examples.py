"""The examples run as written (CI executes them through this test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pipeline_example(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pipeline.py"), "--keep", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0].split()[0] for line in lines] == [
        "space", "search", "finetune", "export", "forward", "verify",
    ]  # fmt: skip
    assert "forward: (100, 10) logits" in result.stdout
    assert "top-1 agreement 1.0000" in result.stdout and "passed True" in result.stdout
    assert result.stderr == ""
    assert (tmp_path / "deploy" / "plan" / "plan.json").is_file()
    assert (tmp_path / "runs" / "demo" / "finetune" / "final.json").is_file()
