"""Space files that say two things at once (issue 16, section 4), through the real CLI
(``snnas space show``, ``snnas cost``): a decision given a fixed value and an explicit list,
a fixed value outside the range of its own levels, sparsity levels that send the same number
of channels. Each is refused in one line naming the file, the line, the key and why; the
consistent variants next to them still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snnas.errors import ConfigError
from snnas.space import space_from_text
from tests.conftest import SMALL_TOML
from tests.fuzz._cli import invoke

PARITY = """
[parity]
r = 1

[decisions.encode]
values = [0, 50, 100]

[decisions.encoder]
choices = ["sum", "concat"]
"""
POLICY = {
    **{f"t{p}.perm": [1, 0, 3, 2] for p in range(3)},
    **{f"t{p}.sparsity": 75.0 for p in range(3)},
    **{f"t{p}.dtype": "float16" for p in range(3)},
}

#: (id, text, key the message names, words of why, the line of the key).
BAD = [
    (
        "perm-list-and-fixed",
        SMALL_TOML.replace('choices = "all"', "choices = [[1, 0, 3, 2]]\nfixed = [1, 0, 3, 2]"),
        "decisions.permutation.fixed",
        "either fixed or choices, not both",
    ),
    (
        "sparsity-values-and-fixed",
        SMALL_TOML.replace("p_min = 50\nlevels = 3", "values = [50, 100]\nfixed = 50"),
        "decisions.sparsity.fixed",
        "either fixed or values, not both",
    ),
    (
        "dtype-list-and-fixed",
        SMALL_TOML.replace(
            'choices = ["float32", "float16"]',
            'choices = ["float32", "float16"]\nfixed = "float16"',
        ),
        "decisions.dtype.fixed",
        "either fixed or choices, not both",
    ),
    (
        "encode-values-and-fixed",
        SMALL_TOML + PARITY.replace("values = [0, 50, 100]", "values = [0, 50]\nfixed = 50"),
        "decisions.encode.fixed",
        "either fixed or values, not both",
    ),
    (
        "encoder-choices-and-fixed",
        SMALL_TOML
        + PARITY.replace('choices = ["sum", "concat"]', 'choices = ["sum"]\nfixed = "sum"'),
        "decisions.encoder.fixed",
        "either fixed or choices, not both",
    ),
    (
        "sparsity-fixed-below-p-min",
        SMALL_TOML.replace("levels = 3", "levels = 3\nfixed = 25"),
        "decisions.sparsity.fixed",
        "a percent in [50, 100], the range of its own p_min and levels",
    ),
    (
        "sparsity-levels-same-channels",
        # the narrowest stream has 8 channels: 50% and 56.25% both send 4 of them
        SMALL_TOML.replace("levels = 3", "levels = 9"),
        "decisions.sparsity.levels",
        "both send 4 of the 8 channels",
    ),
    (
        "sparsity-values-same-channels",
        SMALL_TOML.replace("p_min = 50\nlevels = 3", "values = [50, 56, 100]"),
        "decisions.sparsity.values",
        "50% and 56% both send 4 of the 8 channels",
    ),
]
GOOD = [
    ("sparsity-fixed-in-range", SMALL_TOML.replace("levels = 3", "levels = 3\nfixed = 75")),
    (
        "perm-all-and-fixed",
        SMALL_TOML.replace('choices = "all"', 'choices = "all"\nfixed = [1, 0, 3, 2]'),
    ),
    (
        "sparsity-values-distinct",
        SMALL_TOML.replace("p_min = 50\nlevels = 3", "values = [50, 75, 100]"),
    ),
    # alpha = 3 puts no point in the 8-channel stage: 9 levels are distinct at 16 and 32
    (
        "levels-distinct-where-points-are",
        SMALL_TOML.replace("levels = 3", "levels = 9").replace("alpha = 1", "alpha = 3"),
    ),
]


@pytest.mark.parametrize(("id", "text", "key", "why"), BAD, ids=[b[0] for b in BAD])
def test_refused_in_one_line(tmp_path: Path, id: str, text: str, key: str, why: str) -> None:
    path = tmp_path / f"{id}.toml"
    path.write_text(text)
    line = next(n for n, ln in enumerate(text.splitlines(), 1) if ln.startswith(key.split(".")[-1]))
    for args in (
        ["space", "show", str(path)],
        ["cost", str(path), "--policy", str(_policy(tmp_path))],
    ):
        out = invoke(tmp_path, args)
        assert out.code == 1, (args, out.stdout)
        assert f"{path}:{line}" in out.error and key in out.error and why in out.error, out.error
    with pytest.raises(ConfigError, match="expected"):
        space_from_text(text, str(path))


@pytest.mark.parametrize(("id", "text"), GOOD, ids=[g[0] for g in GOOD])
def test_consistent_variants_still_load(tmp_path: Path, id: str, text: str) -> None:
    path = tmp_path / f"{id}.toml"
    path.write_text(text)
    out = invoke(tmp_path, ["space", "show", "--json", str(path)])
    assert out.code == 0, out.error
    assert json.loads(out.stdout)["name"] == "tiny"


def test_levels_count_is_exact_after_the_check() -> None:
    space = space_from_text(SMALL_TOML.replace("levels = 3", "levels = 3\nfixed = 75"))
    assert space.config.decisions[1].choices == (75.0,)
    assert space.config.decisions[1].fixed == 75.0


def _policy(folder: Path) -> Path:
    path = folder / "policy.json"
    path.write_text(json.dumps(POLICY))
    return path
