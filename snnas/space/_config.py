"""The search-space DSL: TOML -> frozen, validated configuration dataclasses.

See ``docs/dsl.md`` for every key with an example. Validation happens here, on load: unknown
keys, wrong types and out-of-range values are refused with the file, the line, the key, what
was expected and what was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snnas.space._permutations import Permutation, all_permutations, derangements, is_permutation
from snnas.space._toml import TomlSource, type_name

__all__ = [
    "DTYPES",
    "ENCODERS",
    "DecisionSpec",
    "NetworkConfig",
    "ParityConfig",
    "SpaceConfig",
    "SplitConfig",
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
    if (
        not isinstance(widths_raw, list)
        or not widths_raw
        or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths_raw)
    ):
        raise src.error(
            "network.stage_widths",
            "a non-empty array of positive integers",
            f"<{type_name(widths_raw)}: {widths_raw!r}>",
        )
    stages = len(widths_raw)
    depth = src.get_int(table, "network", "depth", minimum=3 * stages + 2)
    if (depth - 2) % (3 * stages) != 0:
        raise src.error(
            "network.depth",
            f"3 * blocks_per_stage * {stages} + 2 (e.g. {3 * stages + 2}, "
            f"{6 * stages + 2}, ...; 56 and 110 for 3 stages)",
            depth,
        )
    cardinality = src.get_int(table, "network", "cardinality", minimum=1)
    width = src.get_int(table, "network", "bottleneck_width", minimum=1)
    stem = src.get_int(table, "network", "stem_width", default=16, minimum=1)
    classes = src.get_int(table, "network", "num_classes", minimum=2)
    channels = src.get_int(table, "network", "input_channels", default=3, minimum=1)
    factor = 2 ** (stages - 1)
    size = src.get_int(table, "network", "input_size", minimum=factor)
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


def _parse_split(src: TomlSource, root: dict[str, Any], network: NetworkConfig) -> SplitConfig:
    if "split" not in root:
        raise src.error("split", "a [split] table", "<missing>")
    table = src.table(root, "split")
    src.check_keys(table, "split", SplitConfig.__dataclass_fields__)
    groups = src.get_int(table, "split", "groups", minimum=2)
    if network.cardinality % groups != 0:
        raise src.error(
            "network.cardinality",
            f"a multiple of split.groups = {groups} (each device owns C/G paths)",
            network.cardinality,
        )
    from snnas.arch import default_overlap  # arch imports this module: import at call time

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


def _parse_encode(src: TomlSource, table: dict[str, Any]) -> DecisionSpec:
    """Percent of each data device's stream channels sent to the parity devices at a point;
    0 sends nothing (the point is not protected). Default: 100 at every point."""
    key = "decisions.encode"
    src.check_keys(table, key, ("values", "tie", "fixed"))

    def percent(value: Any, where: str) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 100:
            raise src.error(where, "percents in [0, 100]", value)
        return float(value)

    raw = table.get("values", [100])
    if not isinstance(raw, list) or not raw:
        raise src.error(
            f"{key}.values", "a non-empty array of percents", f"<{type_name(raw)}: {raw!r}>"
        )
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
    raw = table.get("choices", ["concat"])
    if not isinstance(raw, list) or not raw:
        raise src.error(
            f"{key}.choices", "a non-empty array of encoder kinds", f"<{type_name(raw)}: {raw!r}>"
        )
    for v in raw:
        if v not in ENCODERS:
            raise src.error(f"{key}.choices", f"encoder kinds from {list(ENCODERS)}", v)
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
    raw = table.get("choices", "all")
    choices: tuple[Permutation, ...]
    if raw == "all":
        choices = all_permutations(groups)
    elif raw == "derangements":
        choices = derangements(groups)
    elif isinstance(raw, list) and raw:
        for item in raw:
            if not is_permutation(item, groups):
                raise src.error(
                    f"{key}.choices", f"permutations of 0..{groups - 1}", f"<entry {item!r}>"
                )
        choices = tuple(tuple(item) for item in raw)
        if len(set(choices)) != len(choices):
            raise src.error(f"{key}.choices", "distinct permutations", "<duplicates>")
    else:
        raise src.error(
            f"{key}.choices",
            '"all", "derangements" or a non-empty array of permutations',
            raw if isinstance(raw, str) else f"<{type_name(raw)}: {raw!r}>",
        )
    tie = src.get_bool(table, key, "tie", default=False)
    fixed = None
    if "fixed" in table:
        value = table["fixed"]
        if not is_permutation(value, groups):
            raise src.error(f"{key}.fixed", f"a permutation of 0..{groups - 1}", value)
        fixed = tuple(value)
        choices = (fixed,)
    return DecisionSpec("permutation", choices, tie, fixed)


def _parse_sparsity(src: TomlSource, table: dict[str, Any]) -> DecisionSpec:
    key = "decisions.sparsity"
    src.check_keys(table, key, ("p_min", "levels", "values", "tie", "fixed"))
    choices: tuple[float, ...]
    if "values" in table:
        if "p_min" in table or "levels" in table:
            raise src.error(f"{key}.values", "either values or p_min/levels, not both", "<both>")
        raw = table["values"]
        if not isinstance(raw, list) or not raw:
            raise src.error(
                f"{key}.values", "a non-empty array of percents", f"<{type_name(raw)}: {raw!r}>"
            )
        for v in raw:
            if not isinstance(v, int | float) or isinstance(v, bool) or not 0 < v <= 100:
                raise src.error(f"{key}.values", "percents in (0, 100]", v)
        choices = tuple(sorted({float(v) for v in raw}))
    else:
        p_min = src.get_number(table, key, "p_min", default=100.0)
        if not 0 < p_min <= 100:
            raise src.error(f"{key}.p_min", "a percent in (0, 100]", p_min)
        levels = src.get_int(table, key, "levels", default=1 if p_min == 100 else 9, minimum=1)
        if levels == 1 and p_min != 100:
            raise src.error(f"{key}.levels", "at least 2 levels when p_min < 100", levels)
        if levels > 1 and p_min == 100:
            raise src.error(f"{key}.levels", "1 level when p_min = 100", levels)
        # The paper's Table 4: K levels from Pmin to 100% in steps of (100 - Pmin) / (K - 1).
        step = (100.0 - p_min) / (levels - 1) if levels > 1 else 0.0
        choices = (*tuple(p_min + k * step for k in range(levels - 1)), 100.0)
    tie = src.get_bool(table, key, "tie", default=False)
    fixed = None
    if "fixed" in table:
        value = table["fixed"]
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 100:
            raise src.error(f"{key}.fixed", "a percent in (0, 100]", value)
        fixed = float(value)
        choices = (fixed,)
    return DecisionSpec("sparsity", choices, tie, fixed)


def _parse_dtype(src: TomlSource, table: dict[str, Any]) -> DecisionSpec:
    key = "decisions.dtype"
    src.check_keys(table, key, ("choices", "tie", "fixed"))
    raw = table.get("choices", ["float32"])
    if not isinstance(raw, list) or not raw:
        raise src.error(
            f"{key}.choices", "a non-empty array of dtype names", f"<{type_name(raw)}: {raw!r}>"
        )
    for v in raw:
        if v not in DTYPES:
            raise src.error(f"{key}.choices", f"dtype names from {sorted(DTYPES)}", v)
    if len(set(raw)) != len(raw):
        raise src.error(f"{key}.choices", "distinct dtype names", "<duplicates>")
    choices = tuple(raw)
    tie = src.get_bool(table, key, "tie", default=False)
    fixed = None
    if "fixed" in table:
        fixed = src.get_str(table, key, "fixed", choices=DTYPES)
        choices = (fixed,)
    return DecisionSpec("dtype", choices, tie, fixed)


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


def parse_space(src: TomlSource) -> SpaceConfig:
    """Validate a parsed TOML document as a search space."""
    root = src.data
    src.check_keys(root, "", ("name", "description", "network", "split", "parity", "decisions"))
    default_name = Path(src.path).stem if src.path else "space"
    name = src.get_str(root, "", "name", default=default_name)
    if not name or any(c.isspace() for c in name):
        raise src.error("name", "a non-empty name without spaces", name)
    description = src.get_str(root, "", "description", default="")
    network = _parse_network(src, root)
    split = _parse_split(src, root, network)
    parity = _parse_parity(src, root, split.groups)
    decisions = _parse_decisions(src, root, split.groups, parity)
    return SpaceConfig(name, description, network, split, parity, decisions, src.path, src.text)
