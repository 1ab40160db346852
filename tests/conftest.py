"""Shared fixtures: paths to the shipped spaces and a factory for small TOML spaces."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"
POLICIES = SPACES / "policies"

#: A tiny space (depth 11, 8x8 inputs, G = 4, alpha = 1) for fast tests; also a file for
#: the tests that run the real command in a subprocess.
TINY_SPACE = Path(__file__).resolve().parent / "tiny.toml"
SMALL_TOML = TINY_SPACE.read_text()


@pytest.fixture
def write_space(tmp_path: Path) -> Callable[[str], Path]:
    """Write TOML text to a file in a temporary folder and return its path."""

    def write(text: str, name: str = "space.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def space():
    """The tiny space as a SearchSpace."""
    from snnas.space import space_from_text

    return space_from_text(SMALL_TOML)


@pytest.fixture(scope="session")
def digits():
    """The bundled digits at the tiny space's 8x8 input."""
    from snnas.data import load_dataset

    return load_dataset("digits", input_size=8, input_channels=1)
