"""The search-space DSL: TOML -> frozen, validated configuration dataclasses.

See ``docs/dsl.md`` for every key with an example. Validation happens here, on load: unknown
keys, wrong types and out-of-range values are refused with the file, the line, the key, what
was expected and what was found.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snnas._numbers import Range
from snnas.space._permutations import Permutation, all_permutations, derangements, is_permutation
from snnas.space._toml import TomlSource

__all__ = [
    "DTYPES",
    "ENCODERS",
    "LIMITS",
    "DecisionSpec",
    "NetworkConfig",
    "ParityConfig",
    "SpaceConfig",
    "SplitConfig",
    "default_overlap",
    "parse_space",
]

#: Wire dtypes a transmission may use, with their size in bytes.
DTYPES: dict[str, int] = {"float32": 4, "float16": 2}

#: Parity encoder kinds (docs/parity.md): what a parity stream reads from the encodings
#: ("mirror": only what its data device receives, from the devices that send it).
ENCODERS = ("sum", "concat", "mirror")

_FAMILIES = ("sep_resnext",)
_DECISION_KINDS = ("permutation", "sparsity", "dtype")
_PARITY_KINDS = ("encode", "encoder")  # decision kinds that exist only when parity.r >= 1

#: Upper bounds of the DSL's sizes (docs/dsl.md), checked before anything is enumerated or
#: allocated, so a typo cannot exhaust memory or time.
LIMITS: dict[str, int] = {
    "depth": 1001,  # ResNet-1001 (He et al., 2016); at most 333 blocks
    "stages": 8,
    "stage_width": 4096,
    "stem_width": 4096,
    "cardinality": 1024,
    "bottleneck_width": 1024,
    "num_classes": 100_000,
    "input_size": 1024,
    "input_channels": 64,
    "groups": 16,
    "enumerated_groups": 8,  # "all" / "derangements" list G! permutations: 40,320 for G = 8
    "permutation_choices": 40_320,  # an explicit list of permutations
    "sparsity_levels": 100,
    "name_length": 100,
}

#: A space's name: letters, digits and ``_ . + -``, starting with a letter, digit or ``_``
#: (it becomes part of run folder names and Optuna study names).
_NAME = re.compile(r"[^\W][\w.+-]*")


@dataclass(frozen=True)
class NetworkConfig:
    """The Sep-ResNeXt being split (the paper's Table 1)."""

    family: str  # architecture family; only "sep_resnext" for now
    depth: int  # 3 * blocks_per_stage * stages + 2 (56 and 110 in the paper)
    cardinality: int  # C, paths of every 3x3 grouped convolution
    bottleneck_width: int  # d, channels per path in the first stage (doubles per stage)
    stage_widths: tuple[int, ...]  # residual-stream width of each stage, per device
    stem_width: int  # output channels of the 3x3 stem convolution
    num_classes: int  # classifier outputs
    input_size: int  # input height = width in pixels
    input_channels: int  # input channels (3 for CIFAR, 1 for digits)

    @property
    def stages(self) -> int:
        """Number of stages (each halves the resolution after the first)."""
        return len(self.stage_widths)

    @property
    def blocks_per_stage(self) -> int:
        """Bottleneck blocks in each stage: ``(depth - 2) / (3 * stages)``."""
        return (self.depth - 2) // (3 * self.stages)

    @property
    def num_blocks(self) -> int:
        """Bottleneck blocks in the whole network."""
        return self.blocks_per_stage * self.stages


@dataclass(frozen=True)
class SplitConfig:
    """How the network is split over devices."""

    groups: int  # G, the number of data devices
    alpha: int  # staleness: one transmission point every alpha blocks
    overlap: int  # blocks computed between a send and its addition (default alpha - 1)


@dataclass(frozen=True)
class ParityConfig:
    """Parity (coded-computation) devices, docs/parity.md; r = 0 means none."""

    r: int  # number of parity devices
    bottleneck_scale: int = 1  # a parity stream's bottleneck width, in data devices' (C/G paths)

    def to_json(self) -> dict[str, Any]:
        """JSON form (what the space hash covers): only ``r`` when there is no parity, so
        spaces without parity keep the hash they had before parity existed."""
        if self.r == 0:
            return {"r": 0}
        return {"r": self.r, "bottleneck_scale": self.bottleneck_scale}


@dataclass(frozen=True)
class DecisionSpec:
    """One kind of decision taken at every transmission point."""

    kind: str  # "permutation", "sparsity" or "dtype"
    choices: tuple[Any, ...]  # permutations (tuples), sparsity percents (floats) or dtype names
    tie: bool  # one label shared by every point instead of one per point
    fixed: Any | None  # a single value used at every point (the decision is not searched)


@dataclass(frozen=True)
class SpaceConfig:
    """A whole search-space file."""

    name: str
    description: str
    network: NetworkConfig
    split: SplitConfig
    parity: ParityConfig
    # in the order permutation, sparsity, dtype, then encode, encoder when parity.r >= 1
    decisions: tuple[DecisionSpec, ...]
    path: str | None = None
    source: str | None = field(default=None, compare=False, repr=False)  # the TOML text


def _parse_network(src: TomlSource, root: dict[str, Any]) -> NetworkConfig:
    table = src.table(root, "network")
    if "network" not in root:
        raise src.error("network", "a [network] table", "<missing>")
    src.check_keys(table, "network", NetworkConfig.__dataclass_fields__)
    family = src.get_str(table, "network", "family", default="sep_resnext", choices=_FAMILIES)
    widths_raw = table.get("stage_widths", [64, 128, 256])
    widths_ok = Range(1, LIMITS["stage_width"], integer=True)
    if (
        not isinstance(widths_raw, list)
        or not 1 <= len(widths_raw) <= LIMITS["stages"]
        or any(widths_ok.problem(w) for w in widths_raw)
    ):
        raise src.error(
            "network.stage_widths",
            f"an array of 1 to {LIMITS['stages']} integers in [1, {LIMITS['stage_width']}]",
            src.found(widths_raw),
        )
    stages = len(widths_raw)
    depth = src.get_int(table, "network", "depth", minimum=3 * stages + 2, maximum=LIMITS["depth"])
    if (depth - 2) % (3 * stages) != 0:
        raise src.error(
            "network.depth",
            f"3 * blocks_per_stage * {stages} + 2 (e.g. {3 * stages + 2}, "
            f"{6 * stages + 2}, ...; 56 and 110 for 3 stages)",
            depth,
        )

    def bounded(name: str, minimum: int, default: int | None = None) -> int:
        return src.get_int(
            table, "network", name, default=default, minimum=minimum, maximum=LIMITS[name]
        )

    cardinality = bounded("cardinality", 1)
    width = bounded("bottleneck_width", 1)
    stem = bounded("stem_width", 1, default=16)
    classes = bounded("num_classes", 2)
    channels = bounded("input_channels", 1, default=3)
    factor = 2 ** (stages - 1)
    size = src.get_int(table, "network", "input_size", minimum=factor, maximum=LIMITS["input_size"])
    if size % factor != 0:
        raise src.error("network.input_size", f"a multiple of {factor} ({stages} stages)", size)
    return NetworkConfig(
        family=family,
        depth=depth,
        cardinality=cardinality,
        bottleneck_width=width,
        stage_widths=tuple(widths_raw),
        stem_width=stem,
        num_classes=classes,
        input_size=size,
        input_channels=channels,
    )


def default_overlap(network: NetworkConfig, alpha: int) -> int:
    """The paper's reading of alpha (Section 3.3, Fig. 3): ``alpha - 1`` blocks of compute
    between a send and the addition, never more than a stage holds."""
    return min(alpha - 1, network.blocks_per_stage - 1)


def _parse_split(src: TomlSource, root: dict[str, Any], network: NetworkConfig) -> SplitConfig:
    if "split" not in root:
        raise src.error("split", "a [split] table", "<missing>")
    table = src.table(root, "split")
    src.check_keys(table, "split", SplitConfig.__dataclass_fields__)
    groups = src.get_int(table, "split", "groups", minimum=2, maximum=LIMITS["groups"])
    if network.cardinality % groups != 0:
        raise src.error(
            "network.cardinality",
            f"a multiple of split.groups = {groups} (each device owns C/G paths)",
            network.cardinality,
        )
    alpha = src.get_int(table, "split", "alpha", default=1, minimum=1, maximum=network.num_blocks)
    # The paper's alpha = 1 is synchronous: a transfer is added right after the block that
    # sent it; alpha > 1 overlaps alpha - 1 blocks (docs/supernet.md). ``overlap`` overrides.
    overlap = src.get_int(
        table,
        "split",
        "overlap",
        default=default_overlap(network, alpha),
        minimum=0,
        maximum=network.blocks_per_stage - 1,
    )
    return SplitConfig(groups=groups, alpha=alpha, overlap=overlap)


def _parse_parity(src: TomlSource, root: dict[str, Any], groups: int) -> ParityConfig:
    table = src.table(root, "parity")
    src.check_keys(table, "parity", ParityConfig.__dataclass_fields__)
    r = src.get_int(table, "parity", "r", default=0, minimum=0, maximum=groups)
    scale = src.get_int(table, "parity", "bottleneck_scale", default=1, minimum=1, maximum=groups)
    if r == 0 and "bottleneck_scale" in table:
        raise src.error("parity.bottleneck_scale", "no parity keys when parity.r = 0", scale)
    return ParityConfig(r=r, bottleneck_scale=scale)


def _check_not_both(
    src: TomlSource, table: dict[str, Any], key: str, lists: tuple[str, ...]
) -> None:
    """Refuse a decision given a fixed value and an explicit list of choices: a fixed decision
    is not searched, so the list would be silently ignored."""
    given = [k for k in lists if k in table]
    if "fixed" in table and given:
        raise src.error(
            f"{key}.fixed",
            f"either fixed or {given[0]}, not both (a fixed decision is not searched: its "
            f"{given[0]} would be ignored)",
            f"<both fixed and {given[0]}>",
        )


def _parse_encode(src: TomlSource, table: dict[str, Any]) -> DecisionSpec:
    """Percent of each data device's stream channels sent to the parity devices at a point;
    0 sends nothing (the point is not protected). Default: 100 at every point."""
    key = "decisions.encode"
    src.check_keys(table, key, ("values", "tie", "fixed"))
    _check_not_both(src, table, key, ("values",))

    def percent(value: Any, where: str) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 100:
            raise src.error(where, "percents in [0, 100]", src.found(value))
        return float(value)

    raw = table.get("values", [100])
    if not isinstance(raw, list) or not 0 < len(raw) <= 101:
        raise src.error(f"{key}.values", "an array of 1 to 101 percents", src.found(raw))
    choices = tuple(sorted({percent(v, f"{key}.values") for v in raw}))
    tie = src.get_bool(table, key, "tie", default=False)
    fixed = None
    if "fixed" in table:
        fixed = percent(table["fixed"], f"{key}.fixed")
        choices = (fixed,)
    elif "values" not in table:
        fixed = 100.0  # like sparsity: a constant of the space unless values are given
    return DecisionSpec("encode", choices, tie, fixed)


def _parse_encoder(src: TomlSource, table: dict[str, Any]) -> DecisionSpec:
    """The parity encoder kind (docs/parity.md); tied across points unless ``tie = false``."""
    key = "decisions.encoder"
    src.check_keys(table, key, ("choices", "tie", "fixed"))
    _check_not_both(src, table, key, ("choices",))
    raw = table.get("choices", ["concat"])
    if not isinstance(raw, list) or not 0 < len(raw) <= len(ENCODERS):
        raise src.error(
            f"{key}.choices", f"an array of 1 to {len(ENCODERS)} encoder kinds", src.found(raw)
        )
    for v in raw:
        if not isinstance(v, str) or v not in ENCODERS:
            raise src.error(
                f"{key}.choices", f"encoder kinds from {', '.join(ENCODERS)}", src.found(v)
            )
    if len(set(raw)) != len(raw):
        raise src.error(f"{key}.choices", "distinct encoder kinds", "<duplicates>")
    choices = tuple(raw)
    tie = src.get_bool(table, key, "tie", default=True)
    fixed = None
    if "fixed" in table:
        fixed = src.get_str(table, key, "fixed", choices=ENCODERS)
        choices = (fixed,)
    elif "choices" not in table:
        fixed = choices[0]
    return DecisionSpec("encoder", choices, tie, fixed)


def _parse_permutation(src: TomlSource, table: dict[str, Any], groups: int) -> DecisionSpec:
    key = "decisions.permutation"
    src.check_keys(table, key, ("choices", "tie", "fixed"))
    if isinstance(table.get("choices"), list):  # "all" is the default: not a second answer
        _check_not_both(src, table, key, ("choices",))
    tie = src.get_bool(table, key, "tie", default=False)
    fixed: Permutation | None = None
    if "fixed" in table:
        value = table["fixed"]
        if not is_permutation(value, groups):
            raise src.error(
                f"{key}.fixed", f"a permutation of 0..{groups - 1} (integers)", src.found(value)
            )
        fixed = tuple(value)
    raw = table.get("choices", "all")
    choices: tuple[Permutation, ...]
    if raw in ("all", "derangements"):
        if fixed is not None:  # a fixed decision enumerates nothing
            return DecisionSpec("permutation", (fixed,), tie, fixed)
        if groups > LIMITS["enumerated_groups"]:
            raise src.error(
                f"{key}.choices",
                f'an explicit array or a fixed permutation: "{raw}" lists up to G! = '
                f"{math.factorial(groups):,} permutations; at most "
                f"{LIMITS['enumerated_groups']} groups for it",
                raw,
            )
        choices = all_permutations(groups) if raw == "all" else derangements(groups)
    elif isinstance(raw, list) and 0 < len(raw) <= LIMITS["permutation_choices"]:
        for item in raw:
            if not is_permutation(item, groups):
                raise src.error(
                    f"{key}.choices",
                    f"permutations of 0..{groups - 1} (integers)",
                    f"<entry {src.found(item)[1:-1]}>",
                )
        choices = tuple(tuple(item) for item in raw)
        if len(set(choices)) != len(choices):
            raise src.error(f"{key}.choices", "distinct permutations", "<duplicates>")
    else:
        raise src.error(
            f"{key}.choices",
            '"all", "derangements" or an array of 1 to '
            f"{LIMITS['permutation_choices']:,} permutations",
            raw if isinstance(raw, str) else src.found(raw),
        )
    if fixed is not None:
        return DecisionSpec("permutation", (fixed,), tie, fixed)
    return DecisionSpec("permutation", choices, tie, None)


_PERCENT = Range(0, 100, low_open=True)


def _parse_sparsity(src: TomlSource, table: dict[str, Any]) -> DecisionSpec:
    key = "decisions.sparsity"
    src.check_keys(table, key, ("p_min", "levels", "values", "tie", "fixed"))
    _check_not_both(src, table, key, ("values",))
    tie = src.get_bool(table, key, "tie", default=False)
    choices: tuple[float, ...]
    if "values" in table:
        if "p_min" in table or "levels" in table:
            raise src.error(f"{key}.values", "either values or p_min/levels, not both", "<both>")
        raw = table["values"]
        most = LIMITS["sparsity_levels"]
        if not isinstance(raw, list) or not 0 < len(raw) <= most:
            raise src.error(f"{key}.values", f"an array of 1 to {most} percents", src.found(raw))
        for v in raw:
            if _PERCENT.problem(v):
                raise src.error(f"{key}.values", "percents in (0, 100]", src.found(v))
        choices = tuple(sorted({float(v) for v in raw}))
    else:
        p_min = src.get_number(table, key, "p_min", default=100.0, valid=_PERCENT)
        levels = src.get_int(
            table,
            key,
            "levels",
            default=1 if p_min == 100 else 9,
            minimum=1,
            maximum=LIMITS["sparsity_levels"],
        )
        if levels == 1 and p_min != 100:
            raise src.error(f"{key}.levels", "at least 2 levels when p_min < 100", levels)
        if levels > 1 and p_min == 100:
            raise src.error(f"{key}.levels", "1 level when p_min = 100", levels)
        # The paper's Table 4: K levels from Pmin to 100% in steps of (100 - Pmin) / (K - 1).
        step = (100.0 - p_min) / (levels - 1) if levels > 1 else 0.0
        choices = (*tuple(p_min + k * step for k in range(levels - 1)), 100.0)
    if "fixed" in table:
        value = table["fixed"]
        if _PERCENT.problem(value):
            raise src.error(f"{key}.fixed", "a percent in (0, 100]", src.found(value))
        if ("p_min" in table or "levels" in table) and value < choices[0]:
            raise src.error(
                f"{key}.fixed",
                f"a percent in [{choices[0]:g}, 100], the range of its own p_min and levels",
                value,
            )
        return DecisionSpec("sparsity", (float(value),), tie, float(value))
    return DecisionSpec("sparsity", choices, tie, None)


def _parse_dtype(src: TomlSource, table: dict[str, Any]) -> DecisionSpec:
    key = "decisions.dtype"
    src.check_keys(table, key, ("choices", "tie", "fixed"))
    _check_not_both(src, table, key, ("choices",))
    tie = src.get_bool(table, key, "tie", default=False)
    raw = table.get("choices", ["float32"])
    if not isinstance(raw, list) or not raw:
        raise src.error(f"{key}.choices", "a non-empty array of dtype names", src.found(raw))
    for v in raw:
        if not isinstance(v, str) or v not in DTYPES:
            raise src.error(f"{key}.choices", f"dtype names from {sorted(DTYPES)}", v)
    if len(set(raw)) != len(raw):
        raise src.error(f"{key}.choices", "distinct dtype names", "<duplicates>")
    if "fixed" in table:
        fixed = src.get_str(table, key, "fixed", choices=DTYPES)
        return DecisionSpec("dtype", (fixed,), tie, fixed)
    return DecisionSpec("dtype", tuple(raw), tie, None)


def _parse_decisions(
    src: TomlSource, root: dict[str, Any], groups: int, parity: ParityConfig
) -> tuple[DecisionSpec, ...]:
    table = src.table(root, "decisions")
    src.check_keys(table, "decisions", _DECISION_KINDS + _PARITY_KINDS)
    specs = (
        _parse_permutation(src, src.table(table, "permutation", "decisions"), groups),
        _parse_sparsity(src, src.table(table, "sparsity", "decisions")),
        _parse_dtype(src, src.table(table, "dtype", "decisions")),
    )
    if parity.r == 0:
        for kind in _PARITY_KINDS:
            if kind in table:
                raise src.error(
                    f"decisions.{kind}",
                    "no parity decisions when parity.r = 0 (set [parity] r >= 1)",
                    "<a table>",
                )
        return specs
    return (
        *specs,
        _parse_encode(src, src.table(table, "encode", "decisions")),
        _parse_encoder(src, src.table(table, "encoder", "decisions")),
    )


def _check_distinct_channels(
    src: TomlSource, root: dict[str, Any], network: NetworkConfig, split: SplitConfig,
    sparsity: DecisionSpec,
) -> None:  # fmt: skip
    """Refuse sparsity levels that send the same number of channels at a transmission point
    (``floor(channels * level / 100)``, as ``PointPolicy.n_send``): the space's size would
    count the same policy twice. The points are ``snnas.arch``'s: after every alpha-th block,
    at the width of that block's stage."""
    if sparsity.fixed is not None or len(sparsity.choices) < 2:
        return
    per, blocks = network.blocks_per_stage, network.num_blocks
    widths = sorted(
        {
            network.stage_widths[((p + 1) * split.alpha - 1) // per]
            for p in range(blocks // split.alpha)
        }
    )
    table = src.table(src.table(root, "decisions"), "sparsity", "decisions")
    key = f"decisions.sparsity.{'values' if 'values' in table else 'levels'}"
    for width in widths:
        seen: dict[int, float] = {}
        for level in sparsity.choices:
            sent = min(width, math.floor(width * level / 100.0 + 1e-9))
            if sent in seen:
                raise src.error(
                    key,
                    "levels that send different numbers of channels (the space would count "
                    "the same policy twice)",
                    f"<{seen[sent]:g}% and {level:g}% both send {sent} of the {width} channels "
                    "at a transmission point>",
                )
            seen[sent] = level


def parse_space(src: TomlSource) -> SpaceConfig:
    """Validate a parsed TOML document as a search space."""
    root = src.data
    src.check_keys(root, "", ("name", "description", "network", "split", "parity", "decisions"))
    default_name = Path(src.path).stem if src.path else "space"
    name = src.get_str(root, "", "name", default=default_name, max_length=LIMITS["name_length"])
    if not _NAME.fullmatch(name):
        from_file = "" if "name" in root else " (the file's name, as the file sets none)"
        raise src.error(
            "name",
            "a name of letters, digits and _ . + -, starting with a letter, digit or _" + from_file,
            name,
        )
    description = src.get_str(root, "", "description", default="", multiline=True)
    network = _parse_network(src, root)
    split = _parse_split(src, root, network)
    parity = _parse_parity(src, root, split.groups)
    decisions = _parse_decisions(src, root, split.groups, parity)
    _check_distinct_channels(src, root, network, split, decisions[1])
    return SpaceConfig(name, description, network, split, parity, decisions, src.path, src.text)
