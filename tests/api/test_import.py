"""``import snnas`` stays cheap: the API's names import torch on first use only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def test_import_snnas_and_its_api_do_not_import_torch():
    code = (
        "import json, sys, snnas, snnas.api\n"
        "names = sorted(snnas.__all__)\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'names': names}))"
    )
    result = _run(code)
    assert result["torch"] is False
    assert result["names"] == [
        "Cost", "FinetuneResult", "Plan", "SearchRun", "SearchSpace", "SnnasError",
        "VerifyResult", "__version__", "cost", "export", "finetune", "load_space", "search",
    ]  # fmt: skip


def test_every_public_name_resolves():
    import snnas

    for name in snnas.__all__:
        assert getattr(snnas, name) is not None, name
    assert set(snnas.__all__) <= set(dir(snnas))
