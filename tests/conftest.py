"""Shared fixtures: paths to the shipped spaces and a factory for small TOML spaces."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"
POLICIES = SPACES / "policies"

SMALL_TOML = """
name = "tiny"

[network]
depth = 11
cardinality = 4
bottleneck_width = 2
stage_widths = [8, 16, 32]
stem_width = 4
num_classes = 10
input_size = 8
input_channels = 1

[split]
groups = 4
alpha = 1

[decisions.permutation]
choices = "all"

[decisions.sparsity]
p_min = 50
levels = 3

[decisions.dtype]
choices = ["float32", "float16"]
"""


@pytest.fixture
def write_space(tmp_path: Path) -> Callable[[str], Path]:
    """Write TOML text to a file in a temporary folder and return its path."""

    def write(text: str, name: str = "space.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
