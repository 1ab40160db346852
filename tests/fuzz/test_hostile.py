"""A scripted hostile pass over every command (issue 8): each case is a bad or edge-case
input, run through the real CLI in-process, with the exit code and the words of the message
it must give. Every case is also checked by :func:`tests.fuzz._cli.invoke` for the general
promises: exit code in {0, 1, 2}, no traceback, a one-line error, nothing written outside the
runs folder.

Classes (see ``CLASSES`` at the end for the counts): markup, space files, policies, device
profiles, search configs and ``--set``, command-line options, run names and escapes, run
folders and checkpoints.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SMALL_TOML, SPACES
from tests.fuzz._cli import invoke

TINY_LABELS = [f"t{p}.{k}" for p in range(3) for k in ("perm", "sparsity", "dtype")]
GOOD_POLICY = {
    **{f"t{p}.perm": [1, 0, 3, 2] for p in range(3)},
    **{f"t{p}.sparsity": 75.0 for p in range(3)},
    **{f"t{p}.dtype": "float16" for p in range(3)},
}
#: Stops a search or a comparison after its options are checked, before any training.
STOP = ["--dataset", "cifar10", "--data-dir", "no-such-folder"]


class Sandbox:
    """Input files for one case, in ``root/in``; runs go to ``root/runs``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inputs = root / "in"
        self.inputs.mkdir()
        self.runs = root / "runs"

    def file(self, name: str, content: str | bytes) -> str:
        path = self.inputs / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    def space(self, *edits: tuple[str, str], name: str = "space.toml") -> str:
        text = SMALL_TOML
        for old, new in edits:
            assert old in text, old
            text = text.replace(old, new, 1)
        return self.file(name, text)

    def policy(self, data: object) -> str:
        return self.file("policy.json", data if isinstance(data, str) else json.dumps(data))

    def run_dir(self, name: str = "r") -> Path:
        path = self.runs / name
        path.mkdir(parents=True)
        return path


@dataclass(frozen=True)
class Case:
    cls: str
    id: str
    build: Callable[[Sandbox], list[str]]
    code: int
    needles: tuple[str, ...] = ()


CASES: list[Case] = []


def case(cls: str, id: str, code: int, *needles: str):
    def register(build: Callable[[Sandbox], list[str]]) -> Callable[[Sandbox], list[str]]:
        CASES.append(Case(cls, id, build, code, needles))
        return build

    return register


def show(*edits: tuple[str, str]) -> Callable[[Sandbox], list[str]]:
    return lambda sb: ["space", "show", sb.space(*edits)]


def add(cls: str, id: str, build: Callable[[Sandbox], list[str]], code: int, *needles: str):
    CASES.append(Case(cls, id, build, code, needles))


# --------------------------------------------------------------------------- markup
MARKUP = ["[/x]", "[bold]b[/bold]", "[/]", "[red", ":smile:", "[link=http://x]y[/link]"]
for i, text in enumerate(MARKUP):
    add(
        "markup",
        f"description-{i}",
        show(('name = "tiny"', f'name = "tiny"\ndescription = {json.dumps(text)}')),
        0,
    )
    add(
        "markup",
        f"unknown-key-{i}",
        show(("[network]", f"[network]\n{json.dumps(text)} = 1")),
        1,
        f"unknown key {text!r}",
    )
    add(
        "markup",
        f"dtype-{i}",
        show(('choices = ["float32", "float16"]', f"choices = [{json.dumps(text)}]")),
        1,
        text,
    )
    add(
        "markup",
        f"set-key-{i}",
        lambda sb, t=text: ["search", sb.space(), "--set", f"{t}=1", *STOP],
        2,
        "--set",
        text,
    )
    add(
        "markup",
        f"policy-label-{i}",
        lambda sb, t=text: ["cost", sb.space(), "--policy", sb.policy({**GOOD_POLICY, t: 1})],
        1,
        f"{text!r} is not a decision",
    )
add(
    "markup",
    "file-path",
    lambda sb: ["space", "show", str(sb.inputs / "[/x]" / "a[bold].toml")],
    1,
    "[/x]/a[bold].toml",
)
add(
    "markup",
    "space-show-table",
    lambda sb: [
        "space",
        "show",
        sb.space(("[network]", 'description = "[/x] :smile: [bold]"\n[network]')),
    ],
    0,
)
add(
    "markup",
    "space-list-table-cell",
    lambda sb: (sb.space(name="a[bold]b :smile:.toml"), ["space", "list", "in"])[1],
    0,
    "a[bold]b :smile:.toml",
)
add(
    "markup",
    "cost-table-title",
    lambda sb: [
        "cost",
        sb.space(),
        "--policy",
        sb.file("p[bold]x[red].json", json.dumps(GOOD_POLICY)),
    ],
    0,
    "tiny: p[bold]x[red].json",
)
add("markup", "strategy-name", lambda sb: ["search", sb.space(), "--strategy", "[/x]"], 2, "[/x]")
add(
    "markup",
    "device-profile-name",
    lambda sb: [
        "cost",
        sb.space(),
        "--policy",
        sb.policy(GOOD_POLICY),
        "--device",
        sb.file("p.toml", 'name = "[/x] :smile:"\nflops = 1e9\nbandwidth_bps = 1e8\n'),
    ],
    0,
)

# --------------------------------------------------------------------------- space files
SPACE_BAD = [
    ("groups-huge", ("groups = 4", "groups = 1000000"), "split.groups", "[2, 16]"),
    ("levels-huge", ("levels = 3", "levels = 100000000"), "levels", "[1, 100]"),
    ("depth-2e9", ("depth = 11", "depth = 2000000000"), "network.depth", "1,001"),
    ("width-huge", ("stage_widths = [8, 16, 32]", "stage_widths = [8, 16, 99999]"), "stage", ""),
    ("stages-9", ("stage_widths = [8, 16, 32]", "stage_widths = [1,1,1,1,1,1,1,1,1]"), "", ""),
    ("cardinality-huge", ("cardinality = 4", "cardinality = 4096"), "cardinality", "1,024"),
    ("classes-huge", ("num_classes = 10", "num_classes = 10000000"), "num_classes", ""),
    ("input-huge", ("input_size = 8", "input_size = 65536"), "input_size", "1,024"),
    ("channels-huge", ("input_channels = 1", "input_channels = 100000"), "input_channels", ""),
    ("p-min-nan", ("p_min = 50", "p_min = nan"), "p_min", "finite"),
    ("p-min-inf", ("p_min = 50", "p_min = inf"), "p_min", "finite"),
    ("p-min-neg-inf", ("p_min = 50", "p_min = -inf"), "p_min", "finite"),
    ("p-min-bool", ("p_min = 50", "p_min = true"), "p_min", "a boolean"),
    ("levels-float", ("levels = 3", "levels = 3.0"), "levels", "a float"),
    ("groups-bool", ("groups = 4", "groups = true"), "split.groups", "a boolean"),
    ("alpha-huge", ("alpha = 1", "alpha = 99999999999999999"), "split.alpha", ""),
    ("depth-negative", ("depth = 11", "depth = -11"), "network.depth", ""),
    ("perm-bools", ('choices = "all"', "choices = [[true, false, 2, 3]]"), "permutation", ""),
    ("perm-floats", ('choices = "all"', "choices = [[1.0, 0.0, 2.0, 3.0]]"), "integers", ""),
    ("perm-fixed-bools", ('choices = "all"', "fixed = [false, true, 2, 3]"), "fixed", ""),
    ("perm-empty", ('choices = "all"', "choices = []"), "choices", ""),
    ("perm-nested", ('choices = "all"', "choices = [[[0]]]"), "choices", ""),
    ("dtype-nested", ('choices = ["float32", "float16"]', 'choices = [["float32"]]'), "dtype", ""),
    ("dtype-int", ('choices = ["float32", "float16"]', "choices = [1]"), "dtype", ""),
    ("values-nan", ("p_min = 50\nlevels = 3", "values = [50, nan]"), "values", "(0, 100]"),
    ("values-many", ("p_min = 50\nlevels = 3", f"values = {[*range(1, 101), 50.5]}"), "", ""),
    ("sparsity-fixed-inf", ("levels = 3", "levels = 3\nfixed = inf"), "sparsity.fixed", ""),
    ("name-5000", ('name = "tiny"', f'name = "{"x" * 5000}"'), "name", "at most 100"),
    ("name-nul", ('name = "tiny"', 'name = "ti\\u0000ny"'), "name", "control characters"),
    ("name-escape", ('name = "tiny"', 'name = "a\\u001b[2J"'), "name", "control"),
    ("name-slash", ('name = "tiny"', 'name = "../../x"'), "name", "letters, digits"),
    ("name-dotdot", ('name = "tiny"', 'name = ".."'), "name", "letters, digits"),
    ("name-empty", ('name = "tiny"', 'name = ""'), "name", ""),
    ("name-int", ('name = "tiny"', "name = 3"), "name", "an integer"),
    ("description-nul", ('name = "tiny"', 'name = "tiny"\ndescription = "a\\u0000"'), "desc", ""),
    ("description-huge", ('name = "tiny"', f'name = "t"\ndescription = "{"d" * 5000}"'), "", ""),
    ("network-array", ("[network]\n", "network = 3\n[networkx]\n"), "", ""),
    ("date-value", ("depth = 11", "depth = 1979-05-27"), "network.depth", "a date or time"),
    ("deep-nesting", ("depth = 11", "depth = " + "[" * 5000 + "]" * 5000), "", ""),
    ("parity-huge", ("alpha = 1", "alpha = 1\n[parity]\nr = 99"), "parity.r", ""),
]
for id, edit, key, words in SPACE_BAD:
    add("space", id, show(edit), 1, *(w for w in (key, words) if w))
add(
    "space",
    "groups-12-all-perms",
    show(("cardinality = 4", "cardinality = 12"), ("groups = 4", "groups = 12")),
    1,
    "at most 8 groups",
)
add(
    "space",
    "groups-16-fixed-perm-works",
    show(
        ("cardinality = 4", "cardinality = 16"),
        ("groups = 4", "groups = 16"),
        ('choices = "all"', f"fixed = {[*range(1, 16), 0]}"),
    ),
    0,
)
add(
    "space",
    "too-many-choices",
    show(
        ("cardinality = 4", "cardinality = 8"),
        ("groups = 4", "groups = 8"),
        ("depth = 11", "depth = 110"),
    ),
    1,
    "at most 250,000 choices",
)
add(
    "space",
    "too-many-params",
    show(
        ("bottleneck_width = 2", "bottleneck_width = 1024"),
        ("cardinality = 4", "cardinality = 1024"),
        ("depth = 11", "depth = 101"),
    ),
    1,
    "parameters",
)
add("space", "bom", lambda sb: ["space", "show", sb.file("b.toml", "\ufeff" + SMALL_TOML)], 0)
add(
    "space",
    "not-utf8",
    lambda sb: ["space", "show", sb.file("b.toml", SMALL_TOML.encode() + b"\n# \xff\xfe")],
    1,
    "UTF-8",
)
add("space", "empty-file", lambda sb: ["space", "show", sb.file("e.toml", "")], 1, "network")
add("space", "folder", lambda sb: ["space", "show", str(sb.inputs)], 2, "is a directory")
add(
    "space",
    "folder-in-list",
    lambda sb: (sb.inputs.joinpath("d.toml").mkdir(), ["space", "list", str(sb.inputs)])[1],
    1,
    "a folder",
)
add(
    "space",
    "fifo",
    lambda sb: (os.mkfifo(sb.inputs / "f.toml"), ["space", "show", str(sb.inputs / "f.toml")])[1],
    1,
    "a device, pipe or socket",
)
add(
    "space",
    "huge-file",
    lambda sb: ["space", "show", sb.file("h.toml", "# " + "x" * (5 * 1024 * 1024))],
    1,
    "at most 4,194,304 bytes",
)
add("space", "missing", lambda sb: ["space", "show", "nope.toml"], 1, "no such file")
add(
    "space",
    "binary",
    lambda sb: ["space", "show", sb.file("b.toml", bytes(range(256)))],
    1,
    "UTF-8",
)
add(
    "space",
    "all-fixed-show-json",
    lambda sb: [
        "space",
        "show",
        "--json",
        sb.space(
            ('choices = "all"', "fixed = [1, 0, 3, 2]"),
            ("levels = 3", "levels = 3\nfixed = 50"),
            ('choices = ["float32", "float16"]', 'fixed = "float16"'),
        ),
    ],
    0,
)
add(
    "space",
    "all-fixed-search-refused",
    lambda sb: [
        "search",
        sb.space(
            ('choices = "all"', "fixed = [1, 0, 3, 2]"),
            ("levels = 3", "levels = 3\nfixed = 50"),
            ('choices = ["float32", "float16"]', 'fixed = "float16"'),
        ),
        "--runs-dir",
        str(sb.runs),
    ],
    1,
    "every decision is fixed",
)
add(
    "space",
    "list-with-bad-file",
    lambda sb: (
        sb.space(("groups = 4", "groups = 1"), name="bad.toml"),
        ["space", "list", str(sb.inputs)],
    )[1],
    1,
    "bad.toml",
)
add("space", "list-missing-folder", lambda sb: ["space", "list", "nope"], 1, "nope")
add("space", "list-shipped", lambda sb: ["space", "list", str(SPACES)], 0)


# --------------------------------------------------------------------------- policies
def cost(policy: object) -> Callable[[Sandbox], list[str]]:
    return lambda sb: ["cost", sb.space(), "--policy", sb.policy(policy)]


POLICY_BAD = [
    ("perm-bools", {**GOOD_POLICY, "t0.perm": [True, False, 3, 2]}, "a permutation (integers)"),
    ("perm-floats", {**GOOD_POLICY, "t0.perm": [1.0, 0.0, 3.0, 2.0]}, "t0.perm"),
    ("perm-strings", {**GOOD_POLICY, "t0.perm": "1032"}, "t0.perm"),
    ("perm-short", {**GOOD_POLICY, "t0.perm": [1, 0]}, "t0.perm"),
    ("perm-huge", {**GOOD_POLICY, "t0.perm": list(range(200_000))}, "more characters"),
    ("sparsity-bool", {**GOOD_POLICY, "t1.sparsity": True}, "t1.sparsity"),
    ("sparsity-string", {**GOOD_POLICY, "t1.sparsity": "75"}, "t1.sparsity"),
    ("sparsity-other", {**GOOD_POLICY, "t1.sparsity": 80}, "t1.sparsity"),
    ("dtype-other", {**GOOD_POLICY, "t2.dtype": "int8"}, "t2.dtype"),
    ("dtype-null", {**GOOD_POLICY, "t2.dtype": None}, "null"),
    ("missing-label", {k: v for k, v in GOOD_POLICY.items() if k != "t1.perm"}, "missing"),
    ("extra-label", {**GOOD_POLICY, "t9.perm": [0, 1, 2, 3]}, "'t9.perm' is not a decision"),
    ("huge-label", {**GOOD_POLICY, "x" * 100_000: 1}, "more characters"),
    ("array", [1, 2, 3], "found an array"),
    ("string", "just text", "not valid JSON"),
    ("null", "null", "found null"),
    ("policy-not-object", {"policy": [1]}, "'policy' must be a JSON object"),
    ("wrong-hash", {"space_hash": "0" * 5000, "policy": GOOD_POLICY}, "space hash"),
]
for id, data, needle in POLICY_BAD:
    add("policy", id, cost(data), 1, needle)
add(
    "policy",
    "label-twice",
    cost(
        "{"
        + ", ".join(f'"{k}": {json.dumps(v)}' for k, v in GOOD_POLICY.items())
        + ', "t0.dtype": "float32"}'
    ),
    1,
    "'t0.dtype' is given twice",
)
add("policy", "nan", cost(json.dumps(GOOD_POLICY).replace("75.0", "NaN", 1)), 1, "NaN is not a")
add("policy", "infinity", cost(json.dumps(GOOD_POLICY).replace("75.0", "Infinity", 1)), 1, "")
add("policy", "deep", cost("[" * 100_000 + "]" * 100_000), 1, "nested too deeply")
add("policy", "truncated", cost(json.dumps(GOOD_POLICY)[:50]), 1, "policy.json:1: not valid")
add("policy", "bom", cost("\ufeff" + json.dumps(GOOD_POLICY)), 0)
add("policy", "good", cost(GOOD_POLICY), 0)
add("policy", "good-wrapped", cost({"policy": GOOD_POLICY, "note": "[/x]"}), 0)
add(
    "policy", "missing-file", lambda sb: ["cost", sb.space(), "--policy", "nope.json"], 1, "no such"
)
add("policy", "folder", lambda sb: ["cost", sb.space(), "--policy", str(sb.inputs)], 2, "")


# --------------------------------------------------------------------------- device profiles
def profile(text: str | None, name: str = "board.toml") -> Callable[[Sandbox], list[str]]:
    def build(sb: Sandbox) -> list[str]:
        device = sb.file(name, text) if text is not None else name
        return ["cost", sb.space(), "--policy", sb.policy(GOOD_POLICY), "--device", device]

    return build


PROFILE_BAD = [
    ("flops-nan", "flops = nan\nbandwidth_bps = 1e8\n", 1, "flops", "finite"),
    ("flops-inf", "flops = inf\nbandwidth_bps = 1e8\n", 1, "flops", "finite"),
    ("flops-zero", "flops = 0\nbandwidth_bps = 1e8\n", 1, "flops", "(0, 1e+18]"),
    ("flops-huge", "flops = 1e300\nbandwidth_bps = 1e8\n", 1, "flops", ""),
    ("flops-string", 'flops = "fast"\nbandwidth_bps = 1e8\n', 1, "flops", "a string"),
    ("bandwidth-nan", "flops = 1e9\nbandwidth_bps = nan\n", 1, "bandwidth_bps", "finite"),
    ("bandwidth-neg", "flops = 1e9\nbandwidth_bps = -1\n", 1, "bandwidth_bps", ""),
    ("latency-inf", "flops = 1e9\nbandwidth_bps = 1e8\nlink_latency_s = inf\n", 1, "link", ""),
    ("latency-neg", "flops = 1e9\nbandwidth_bps = 1e8\nlink_latency_s = -1\n", 1, "link", ""),
    ("missing-flops", "bandwidth_bps = 1e8\n", 1, "flops", "missing"),
    ("unknown-key", "flops = 1e9\nbandwidth_bps = 1e8\ncolor = 1\n", 1, "color", ""),
    ("name-control", 'name = "a\\u0007"\nflops = 1e9\nbandwidth_bps = 1e8\n', 1, "name", ""),
    ("not-toml", "flops == 1", 1, "valid TOML", ""),
    ("bom", "\ufeffflops = 1e9\nbandwidth_bps = 1e8\n", 0, "", ""),
]
for id, text, code, key, words in PROFILE_BAD:
    add("profile", id, profile(text), code, *(w for w in (key, words) if w))
add("profile", "unknown-name", profile(None, "tpu"), 2, "--device", "rpi3b+")
add("profile", "markup-name", profile(None, "[/x]"), 2, "[/x]")
add("profile", "missing-file", profile(None, "missing.toml"), 1, "no such file")
add("profile", "shipped", profile(None, "a57x4"), 0)


# --------------------------------------------------------------------------- configs, --set
def override(*items: str) -> Callable[[Sandbox], list[str]]:
    args = [a for item in items for a in ("--set", item)]
    return lambda sb: ["search", sb.space(), *args, "--runs-dir", str(sb.runs), *STOP]


SET_BAD = [
    ("no-equals", "search.iterations", "SECTION.KEY=VALUE"),
    ("no-section", "iterations=3", "SECTION.KEY=VALUE"),
    ("empty-key", "=3", "SECTION.KEY=VALUE"),
    ("leading-dot", ".search.iterations=3", "SECTION.KEY=VALUE"),
    ("trailing-dot", "search.iterations.=3", "SECTION.KEY=VALUE"),
    ("double-dot", "search..iterations=3", "SECTION.KEY=VALUE"),
    ("space-in-key", "search. iterations=3", "SECTION.KEY=VALUE"),
    ("unknown-section", "searchx.iterations=3", "did you mean 'search'"),
    ("unknown-key", "search.iteration=3", "did you mean 'iterations'"),
    ("iterations-zero", "search.iterations=0", "[1, 100,000]"),
    ("iterations-huge", "search.iterations=10000000000", "[1, 100,000]"),
    ("iterations-float", "search.iterations=2.5", "integer"),
    ("iterations-bool", "search.iterations=true", "integer"),
    ("iterations-word", "search.iterations=many", "a string"),
    ("lr-nan", "search.lr=nan", "finite"),
    ("lr-inf", "search.lr=inf", "finite"),
    ("lr-zero", "search.lr=0", "(0, 10]"),
    ("momentum-negative", "search.momentum=-0.9", "[0, 1)"),
    ("momentum-one", "search.momentum=1", "[0, 1)"),
    ("weight-decay-negative", "search.weight_decay=-5e-4", "[0, 1]"),
    ("milestones-nan", "search.milestones=[nan]", "fractions in [0, 1]"),
    ("milestones-string", "search.milestones=half", "an array"),
    ("augment-int", "search.augment=1", "a boolean"),
    ("batch-huge", "search.batch_size=100000000", "65,536"),
    ("reward-mode", "reward.mode=speed", "accuracy, penalized"),
    ("reward-lambda-nan", "reward.lambda=nan", "finite"),
    ("reward-budget-zero", "reward.budget=0", "(0, 100]"),
    ("reward-penalty-inf", "reward.penalty=-inf", "finite"),
    ("strategy-unknown", "strategy.annealing.x=1", "strategy.annealing"),
    ("strategy-option-unknown", "strategy.reinforce.speed=1", "an option of 'reinforce'"),
    ("strategy-lr-nan", "strategy.reinforce.lr=nan", "finite"),
    ("strategy-unused-nan", "strategy.evolution.population=nan", "strategy.evolution.population"),
    ("strategy-hidden-zero", "strategy.reinforce.hidden=0", "[1, 1,024]"),
    ("strategy-decay-one", "strategy.reinforce.baseline_decay=1", "[0, 1)"),
    ("strategy-objectives", "strategy.optuna.objectives=4", "[1, 3]"),
    ("strategy-sampler", "strategy.optuna.sampler=x", "unknown option"),
    ("strategy-table-value", "strategy.reinforce=3", "a table"),
    ("tournament-over-population", "strategy.evolution.tournament=50", "population"),
    ("huge-value", "search.lr=" + "9" * 5000, "more characters"),
    ("value-and-table", "search.lr.x=1", "a number"),
]
for id, item, needle in SET_BAD:
    add("config", f"set-{id}", override(item), 2, "--set", needle)
add(
    "config",
    "set-key-twice-value-and-table",
    override("strategy.x=1", "strategy.x.y=2"),
    2,
    "--set",
)
add("config", "set-good-stops-at-data", override("search.iterations=2"), 1, "cifar10")


def config_file(text: str) -> Callable[[Sandbox], list[str]]:
    return lambda sb: [
        "search",
        sb.space(),
        "--config",
        sb.file("c.toml", text),
        "--runs-dir",
        str(sb.runs),
        *STOP,
    ]


CONFIG_BAD = [
    ("lr-nan", "[search]\nlr = nan\n", "c.toml:2: search.lr", "finite"),
    ("momentum-neg", "[search]\nmomentum = -1\n", "search.momentum", "[0, 1)"),
    ("milestones-tuple-words", "[search]\nmilestones = 3\n", "milestones", "an array of"),
    ("iterations-string", '[search]\niterations = "3"\n', "search.iterations", "a string"),
    ("unused-strategy", "[strategy.evolution]\npopulation = 1\n", "population", "[2, 100,000]"),
    ("strategy-array", "strategy = [1]\n", "strategy", "a table"),
    ("unknown-section", "[extra]\n", "extra", ""),
    ("bom", "\ufeff[search]\niterations = 2\n", "cifar10", ""),
]
for id, text, key, words in CONFIG_BAD:
    add("config", f"file-{id}", config_file(text), 1, *(w for w in (key, words) if w))
add(
    "config",
    "file-missing",
    lambda sb: ["search", sb.space(), "--config", "nope.toml", *STOP],
    1,
    "no such file",
)


# --------------------------------------------------------------------------- options
def train(*options: str) -> Callable[[Sandbox], list[str]]:
    return lambda sb: ["train", sb.space(), "--runs-dir", str(sb.runs), *options, *STOP]


def compare(*options: str) -> Callable[[Sandbox], list[str]]:
    return lambda sb: ["compare", sb.space(), "--runs-dir", str(sb.runs), *options, *STOP]


def search(*options: str) -> Callable[[Sandbox], list[str]]:
    return lambda sb: ["search", sb.space(), "--runs-dir", str(sb.runs), *options, *STOP]


OPTIONS_BAD = [
    ("train-epochs-neg", train("--epochs", "-1"), "--epochs"),
    ("train-epochs-zero", train("--epochs", "0"), "--epochs"),
    ("train-epochs-float", train("--epochs", "1.5"), "--epochs"),
    ("train-epochs-huge", train("--epochs", "10000000000"), "--epochs"),
    ("train-lr-nan", train("--lr", "nan"), "finite"),
    ("train-lr-inf", train("--lr", "inf"), "finite"),
    ("train-lr-neg", train("--lr", "-0.1"), "(0, 10]"),
    ("train-lr-word", train("--lr", "fast"), "--lr"),
    ("train-batch-zero", train("--batch-size", "0"), "--batch-size"),
    ("train-seed-neg", train("--seed", "-1"), "--seed"),
    ("train-seed-huge", train("--seed", str(2**64)), "--seed"),
    ("train-eval-policies-zero", train("--eval-policies", "0"), "--eval-policies"),
    ("train-workers-neg", train("--workers", "-1"), "--workers"),
    ("train-device-tpu", lambda sb: ["train", sb.space(), "--device", "tpu"], "--device"),
    ("train-device-markup", lambda sb: ["train", sb.space(), "--device", "[/x]"], "[/x]"),
    ("train-plain-and-policy", train("--plain", "--policy", "x.json"), "exclude"),
    ("train-dataset", lambda sb: ["train", sb.space(), "--dataset", "imagenet"], "--dataset"),
    ("search-strategy", search("--strategy", "annealing"), "annealing"),
    ("search-strategy-optuna-x", search("--strategy", "optuna:x"), "optuna:x"),
    ("search-strategy-colon", search("--strategy", "random:tpe"), "random:tpe"),
    ("search-seed-neg", search("--seed", "-5"), "--seed"),
    ("search-study-empty", search("--study", ""), "--study"),
    ("search-study-nul", search("--study", "a\x01b"), "--study"),
    ("search-device", lambda sb: ["search", sb.space(), "--device", "cuda:abc"], "--device"),
    ("compare-seeds-zero", compare("--seeds", "0"), "--seeds"),
    ("compare-seeds-neg", compare("--seeds", "-3"), "--seeds"),
    ("compare-budget-neg", compare("--budget", "-5"), "--budget"),
    ("compare-budget-nan", compare("--budget", "nan"), "--budget"),
    ("compare-strategies-empty", compare("--strategies", ""), "--strategies"),
    ("compare-strategies-commas", compare("--strategies", ",,,"), "--strategies"),
    ("compare-strategies-twice", compare("--strategies", "random,random"), "given twice"),
    ("compare-strategies-bad", compare("--strategies", "random,annealing"), "annealing"),
    ("compare-mode", compare("--mode", "half"), "--mode"),
    ("compare-supernet-epochs", compare("--supernet-epochs", "0"), "--supernet-epochs"),
    ("unknown-option", lambda sb: ["cost", "--bogus"], "--bogus"),
    ("unknown-command", lambda sb: ["nonsense"], "nonsense"),
    ("cost-no-policy", lambda sb: ["cost", sb.space()], "--policy"),
    ("runs-dir-is-file", lambda sb: ["train", sb.space(), "--runs-dir", sb.file("f", "x")], ""),
]
for id, build, needle in OPTIONS_BAD:
    add("options", id, build, 2, needle)
add("options", "list", lambda sb: ["list"], 0)
add("options", "list-json", lambda sb: ["list", "--json"], 0)
add("options", "version", lambda sb: ["--version"], 0)
add("options", "search-device-cuda-no-gpu", search("--device", "cuda:7"), 1, "--device")

# --------------------------------------------------------------------------- run names
NAMES_BAD = [
    "../../x",
    "../x",
    "..",
    ".",
    "/abs/path",
    "a/b",
    "a\\b",
    ".hidden",
    "x" * 129,
    "a\x00b",
    "a\nb",
    "",
    "\x1b[2J",
]
for i, bad in enumerate(NAMES_BAD):
    add("names", f"train-{i}", train("--name", bad), 2, "--name")
    add("names", f"search-{i}", search("--name", bad), 2, "--name")
    add("names", f"compare-{i}", compare("--name", bad), 2, "--name")


def linked_run(sb: Sandbox) -> list[str]:
    outside = sb.root / "outside"
    outside.mkdir()
    sb.runs.mkdir()
    (sb.runs / "r").symlink_to(outside)
    return ["search", sb.space(), "--runs-dir", str(sb.runs), "--name", "r", *STOP]


add("names", "link-outside", linked_run, 2, "link to")
add("names", "absolute-in-sandbox", lambda sb: train("--name", str(sb.root / "abs"))(sb), 2, "")


# --------------------------------------------------------------------------- checkpoints
def _state(**changes: object) -> dict:
    """A training checkpoint of the tiny space, valid unless ``changes`` break it."""
    import torch

    from snnas.models import SepResNeXt
    from snnas.space import space_from_text
    from snnas.train import default_config

    space = space_from_text(SMALL_TOML)
    model = SepResNeXt(space)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    config = default_config("supernet", "digits", epochs=2, batch_size=2000, eval_policies=1)
    state = {
        "format": "snnas-checkpoint-v1",
        "config": config.to_json(),
        "space_hash": space.hash,
        "epoch": 1,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "metrics": [{"epoch": 1, "time_s": 0.1}],
    }
    state.update(changes)
    return {k: v for k, v in state.items() if v is not _DROP}


_DROP = object()
RESUME = ["--epochs", "2", "--batch-size", "2000", "--eval-policies", "1", "--resume"]


def resume_with(make: Callable[[Path], object], *extra: str) -> Callable[[Sandbox], list[str]]:
    def build(sb: Sandbox) -> list[str]:
        make(sb.run_dir() / "last.pt")
        return ["train", sb.space(), "--runs-dir", str(sb.runs), "--name", "r", *RESUME, *extra]

    return build


def saved(**changes: object) -> Callable[[Path], object]:
    import torch

    return lambda path: torch.save(_state(**changes), path)


def _bad_model() -> dict:
    state = _state()["model"]
    key = next(iter(state))
    return {**state, key: state[key][..., :1]}


CHECKPOINTS_BAD = [
    ("folder", lambda p: p.mkdir(), "is a folder"),
    ("symlink-loop", lambda p: p.symlink_to(p), "symbolic link"),
    ("symlink-outside", lambda p: p.symlink_to("/etc/hostname"), "symbolic link"),
    ("fifo", lambda p: os.mkfifo(p), "pipe"),
    ("empty", lambda p: p.write_bytes(b""), "corrupt checkpoint"),
    ("garbage", lambda p: p.write_bytes(os.urandom(1000)), "corrupt checkpoint"),
    ("other-format", saved(format="x" * 5000), "not an snnas checkpoint"),
    ("no-model", saved(model=_DROP), "no 'model' entry"),
    ("epoch-negative", saved(epoch=-5), "epoch -5"),
    ("epoch-huge", saved(epoch=10**6), "epoch 1000000"),
    ("epoch-bool", saved(epoch=True), "'epoch' should be an integer"),
    ("epoch-float", saved(epoch=1.0), "'epoch' should be an integer"),
    ("metrics-short", saved(metrics=[]), "0 epochs of metrics"),
    ("metrics-not-records", saved(metrics=[1]), "not records"),
    ("metrics-nan-time", saved(metrics=[{"time_s": float("nan")}]), "finite number"),
    ("model-list", saved(model=[1, 2]), "'model' should be an object"),
    ("model-missing-keys", saved(model={}), "missing"),
    ("model-shapes", saved(model=_bad_model()), "does not match this network"),
    (
        "optimizer-bogus",
        saved(optimizer={"param_groups": [{"params": [0]}], "state": {}}),
        "optimizer",
    ),
    ("optimizer-missing", saved(optimizer=_DROP), "no 'optimizer' entry"),
    ("config-bogus", saved(config={"x": 1}), "'config' is not one"),
    ("config-nan-lr", saved(config={**_state()["config"], "lr": float("nan")}), "not one"),
    ("space-hash", saved(space_hash="f" * 16), "space hash"),
    ("space-hash-type", saved(space_hash=3), "'space_hash' should be a string"),
    ("other-lr", saved(config={**_state()["config"], "lr": 0.05}), "lr: 0.05 != 0.1"),
]
for id, make, needle in CHECKPOINTS_BAD:
    add("checkpoints", id, resume_with(make), 1, needle)
add(
    "checkpoints",
    "resume-missing-run",
    lambda sb: ["train", sb.space(), "--runs-dir", str(sb.runs), "--name", "nope", "--resume"],
    1,
    "no run to resume",
)
add(
    "checkpoints",
    "resume-no-checkpoint",
    lambda sb: (
        sb.run_dir(),
        ["train", sb.space(), "--runs-dir", str(sb.runs), "--name", "r", "--resume"],
    )[1],
    1,
    "no checkpoint (last.pt)",
)
add(
    "checkpoints",
    "search-resume-missing",
    lambda sb: ["search", sb.space(), "--runs-dir", str(sb.runs), "--name", "nope", "--resume"],
    1,
    "no search to resume",
)
add(
    "checkpoints",
    "search-resume-folder-checkpoint",
    lambda sb: (
        (sb.run_dir() / "last.pt").mkdir(),
        ["search", sb.space(), "--runs-dir", str(sb.runs), "--name", "r"],
    )[1],
    1,
    "already holds a search",
)


def compare_report_link(sb: Sandbox) -> list[str]:
    victim = sb.inputs / "victim"
    victim.write_text("precious")
    (sb.run_dir("c") / "report.md").symlink_to(victim)
    return ["compare", sb.space(), "--runs-dir", str(sb.runs), "--name", "c", *STOP]


add("checkpoints", "compare-report-link", compare_report_link, 1, "report.md", "link")


@pytest.mark.parametrize("item", CASES, ids=[f"{c.cls}-{c.id}" for c in CASES])
def test_hostile_input(tmp_path, item: Case):
    sandbox = Sandbox(tmp_path)
    args = item.build(sandbox)
    outcome = invoke(tmp_path, args, runs=sandbox.runs)
    assert outcome.code == item.code, (args, outcome)
    said = outcome.error if item.code else outcome.stdout  # the message, or the output
    for needle in item.needles:
        assert needle in said, (needle, said)


#: How many cases of each class this pass tries (reported in the closing note of issue 8).
CLASSES = {
    cls: sum(1 for c in CASES if c.cls == cls) for cls in dict.fromkeys(c.cls for c in CASES)
}


def test_the_pass_is_at_least_150_cases():
    assert len(CASES) >= 150, CLASSES
