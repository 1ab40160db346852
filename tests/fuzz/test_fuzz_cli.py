"""Property-based fuzzing of every command's inputs through the real CLI (issue 8).

Hypothesis generates space files, policies, device profiles, search configs, ``--set``
overrides, option values, run names, run folders and checkpoints; every run goes through
:func:`tests.fuzz._cli.invoke`, which asserts: exit code in {0, 1, 2}, no traceback, a
one-line error, nothing written outside the runs folder. Nothing here trains a model:
searches and comparisons are stopped after their inputs are checked (a CIFAR dataset whose
folder does not exist), so the suite takes seconds.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.conftest import SMALL_TOML
from tests.fuzz._cli import invoke
from tests.fuzz.test_hostile import GOOD_POLICY, STOP, TINY_LABELS

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------- generators
#: Text a hostile user types: markup, emoji codes, escapes, separators, NUL, long runs.
NASTY = st.sampled_from(
    [
        "[/x]",
        "[bold]",
        "[/]",
        ":smile:",
        "\x00",
        "\x1b[2J",
        "\u202e",
        "../",
        "/",
        "\\",
        "..",
        "~",
        "$HOME",
        "%s",
        "{0}",
        "\n",
        "\r",
        "\t",
        " ",
        "é",
        "\ufeff",
        "x" * 300,
    ]
)
TEXT = st.one_of(st.text(max_size=20), NASTY, st.lists(NASTY, max_size=4).map("".join))
NUMBERS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 1e308, -0.0, 1e-320]),
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(TEXT, inner, max_size=5)),
    max_leaves=20,
)


def toml_value(value: object) -> str:
    """A TOML literal for ``value`` (NaN and infinities included)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return '"?"'


TOML_VALUES = st.recursive(
    st.one_of(st.booleans(), NUMBERS, TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=12,
)
SPACE_KEYS = st.sampled_from(
    [
        "name",
        "description",
        "family",
        "depth",
        "cardinality",
        "bottleneck_width",
        "stage_widths",
        "stem_width",
        "num_classes",
        "input_size",
        "input_channels",
        "groups",
        "alpha",
        "r",
        "p_min",
        "levels",
        "values",
        "choices",
        "fixed",
        "tie",
    ]
)


@contextmanager
def sandbox() -> Iterator[Path]:
    """A fresh folder per example (hypothesis cannot use function-scoped fixtures)."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "in").mkdir()
        yield root


def write(root: Path, name: str, content: str | bytes) -> str:
    path = root / "in" / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    return str(path)


def mutated_space(draw: st.DrawFn) -> str:
    """The tiny space with lines inserted, replaced or deleted."""
    lines = SMALL_TOML.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["insert", "replace", "delete"]))
        at = draw(st.integers(0, len(lines)))
        line = f"{draw(SPACE_KEYS)} = {toml_value(draw(TOML_VALUES))}"
        if action == "insert" or at >= len(lines):
            lines.insert(at, line)
        elif action == "replace" and "=" in lines[at]:
            key = lines[at].split("=")[0].strip()
            lines[at] = f"{key} = {toml_value(draw(TOML_VALUES))}"
        else:
            del lines[at]
    return "\n".join(lines) + "\n"


SPACES = st.composite(mutated_space)()


# --------------------------------------------------------------------------- space files
@FUZZ
@given(text=SPACES, as_json=st.booleans())
def test_space_files(text, as_json):
    with sandbox() as root:
        path = write(root, "space.toml", text)
        outcome = invoke(root, ["space", "show", path, *(["--json"] if as_json else [])])
        if outcome.code == 0 and as_json:
            json.loads(outcome.stdout)  # valid JSON, no NaN
        if outcome.code == 1:
            assert outcome.error.startswith(path), outcome.error
        # a space that loads also prices a policy, or refuses it in one line
        if outcome.code == 0:
            invoke(root, ["cost", path, "--policy", write(root, "p.json", json.dumps(GOOD_POLICY))])


@FUZZ
@given(data=st.binary(max_size=300), bom=st.booleans())
def test_space_files_of_random_bytes(data, bom):
    with sandbox() as root:
        path = write(root, "space.toml", (b"\xef\xbb\xbf" if bom else b"") + data)
        outcome = invoke(root, ["space", "show", path])
        assert outcome.code == 1


# --------------------------------------------------------------------------- policies
@FUZZ
@given(
    changes=st.dictionaries(st.one_of(st.sampled_from(TINY_LABELS), TEXT), JSON_VALUES, max_size=4),
    drop=st.lists(st.sampled_from(TINY_LABELS), max_size=2),
    wrap=st.booleans(),
)
def test_policies(changes, drop, wrap):
    policy = {k: v for k, v in {**GOOD_POLICY, **changes}.items() if k not in drop}
    data = {"space": "tiny", "policy": policy} if wrap else policy
    with sandbox() as root:
        space = write(root, "space.toml", SMALL_TOML)
        path = write(root, "p.json", json.dumps(data))
        outcome = invoke(root, ["cost", space, "--policy", path, "--json"])
        if outcome.code == 0:
            assert "NaN" not in outcome.stdout
            json.loads(outcome.stdout)
        else:
            assert outcome.code == 1 and outcome.error.startswith(path)


@FUZZ
@given(text=st.one_of(st.text(max_size=200), JSON_VALUES.map(json.dumps)), twice=st.booleans())
def test_policy_text(text, twice):
    if twice:  # a label given twice in otherwise valid JSON
        body = json.dumps(GOOD_POLICY)
        text = body[:-1] + f', "t0.perm": {json.dumps(text)}' + "}"
    with sandbox() as root:
        space = write(root, "space.toml", SMALL_TOML)
        outcome = invoke(root, ["cost", space, "--policy", write(root, "p.json", text)])
        assert outcome.code == 1 if twice else outcome.code in (0, 1)


# --------------------------------------------------------------------------- profiles
@FUZZ
@given(
    values=st.dictionaries(
        st.sampled_from(["name", "flops", "bandwidth_bps", "link_latency_s", "source", "x"]),
        TOML_VALUES,
        max_size=5,
    ),
    name=st.one_of(TEXT, st.just("board.toml")),
)
def test_device_profiles(values, name):
    with sandbox() as root:
        space = write(root, "space.toml", SMALL_TOML)
        policy = write(root, "p.json", json.dumps(GOOD_POLICY))
        text = "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())
        device = write(root, "board.toml", text) if name == "board.toml" else name
        outcome = invoke(root, ["cost", space, "--policy", policy, "--device", device])
        if not name.endswith(".toml") and name not in ("rpi3b+", "a57x4"):
            assert outcome.code == 2  # an unknown profile name is a usage error


# --------------------------------------------------------------------------- configs
SET_KEYS = st.one_of(
    st.sampled_from(
        [
            "search.iterations",
            "search.lr",
            "search.momentum",
            "search.weight_decay",
            "search.milestones",
            "search.augment",
            "reward.mode",
            "reward.lambda",
            "reward.budget",
            "strategy.reinforce.lr",
            "strategy.reinforce.hidden",
            "strategy.evolution.population",
            "strategy.optuna.objectives",
            "strategy.random.x",
        ]
    ),
    st.lists(
        st.one_of(TEXT, st.sampled_from(["search", "reward", "strategy", ""])), max_size=4
    ).map(".".join),
)


@FUZZ
@given(
    items=st.lists(
        st.tuples(SET_KEYS, st.one_of(TOML_VALUES.map(toml_value), TEXT), st.booleans()),
        min_size=1,
        max_size=3,
    )
)
def test_set_overrides(items):
    args = []
    for key, value, with_equals in items:
        args += ["--set", f"{key}={value}" if with_equals else key]
    with sandbox() as root:
        space = write(root, "space.toml", SMALL_TOML)
        outcome = invoke(root, ["search", space, "--runs-dir", str(root / "runs"), *args, *STOP])
        # a bad override is a usage error; good ones reach the (missing) dataset
        assert outcome.code in (1, 2)
        if outcome.code == 1:
            assert "cifar10" in outcome.error, outcome.error


@FUZZ
@given(
    tables=st.dictionaries(
        st.sampled_from(["search", "reward", "strategy", "strategy.reinforce", "other"]),
        st.dictionaries(
            st.one_of(SET_KEYS.map(lambda k: k.split(".")[-1]), TEXT), TOML_VALUES, max_size=3
        ),
        max_size=3,
    )
)
def test_config_files(tables):
    text = ""
    for table, values in tables.items():
        text += f"[{table}]\n" + "".join(
            f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in values.items()
        )
    with sandbox() as root:
        space = write(root, "space.toml", SMALL_TOML)
        config = write(root, "c.toml", text)
        args = ["search", space, "--config", config, "--runs-dir", str(root / "runs"), *STOP]
        outcome = invoke(root, args)
        assert outcome.code == 1
        assert outcome.error.startswith(config) or "cifar10" in outcome.error, outcome.error


# --------------------------------------------------------------------------- options
OPTION_VALUES = st.one_of(
    NUMBERS.map(str), TEXT, st.sampled_from(["nan", "inf", "-inf", "1e999", ""])
)


@FUZZ
@given(
    command=st.sampled_from(["train", "search", "compare"]),
    option=st.sampled_from(
        [
            "--epochs",
            "--batch-size",
            "--lr",
            "--seed",
            "--eval-policies",
            "--workers",
            "--seeds",
            "--budget",
            "--supernet-epochs",
            "--strategy",
            "--strategies",
            "--device",
            "--name",
            "--study",
            "--mode",
            "--dataset",
        ]
    ),
    value=OPTION_VALUES,
)
def test_option_values(command, option, value):
    assume(not (option == "--dataset" and value == "digits"))  # would train for real
    with sandbox() as root:
        space = write(root, "space.toml", SMALL_TOML)
        args = [command, space, "--runs-dir", str(root / "runs"), *STOP, option, value]
        outcome = invoke(root, args)
        assert outcome.code in (1, 2)  # refused, or stopped at the missing dataset


# --------------------------------------------------------------------------- run names
@FUZZ
@given(
    name=st.one_of(TEXT, st.text(min_size=1, max_size=200)),
    command=st.sampled_from(["train", "search", "compare"]),
)
def test_run_names(name, command):
    with sandbox() as root:
        runs = root / "a" / "b" / "runs"  # room for ../../ to land inside the sandbox
        space = write(root, "space.toml", SMALL_TOML)
        outcome = invoke(
            root, [command, space, "--runs-dir", str(runs), "--name", name, *STOP], runs=runs
        )
        assert outcome.code in (1, 2)


@FUZZ
@given(name=st.one_of(TEXT, st.text(min_size=1, max_size=200)))
def test_accepted_run_names_write_inside(name):
    """What resolve_run accepts is written inside the runs folder, through the same RunDir
    calls a run makes."""
    from snnas._run import RunDir, resolve_run
    from snnas.errors import UsageError

    with sandbox() as root:
        runs = root / "a" / "runs"
        runs.mkdir(parents=True)
        try:
            path = resolve_run(runs, name)
        except UsageError:
            assert sorted(root.rglob("*")) == [root / "a", runs, root / "in"]
            return
        run = RunDir(path)
        run.create()
        run.write_json("x.json", {"ok": True})
        run.write_jsonl("e.jsonl", [{"a": 1}])
        created = [p for p in root.rglob("*") if p.is_file()]
        assert created and all(p.resolve().is_relative_to(runs.resolve()) for p in created)


# --------------------------------------------------------------------------- run folders
ENTRIES = st.sampled_from(["file", "folder", "link-loop", "link-out", "fifo", "empty"])


@settings(FUZZ, max_examples=25)
@given(kind=ENTRIES, data=st.binary(max_size=200), resume=st.booleans())
def test_run_folders(kind, data, resume):
    assume(resume or kind != "empty")  # a fresh start in an empty folder would train
    with sandbox() as root:
        space = write(root, "space.toml", SMALL_TOML)
        run = root / "runs" / "r"
        run.mkdir(parents=True)
        last = run / "last.pt"
        if kind == "file":
            last.write_bytes(data)
        elif kind == "folder":
            last.mkdir()
        elif kind == "link-loop":
            last.symlink_to(last)
        elif kind == "link-out":
            last.symlink_to(root / "in" / "space.toml")
        elif kind == "fifo":
            os.mkfifo(last)
        args = ["train", space, "--runs-dir", str(root / "runs"), "--name", "r"]
        args += ["--epochs", "2", "--batch-size", "2000", "--eval-policies", "1"]
        outcome = invoke(root, args + (["--resume"] if resume else []))
        assert outcome.code == 1, outcome
        assert "runs/r" in outcome.error, outcome.error


_BASE: dict = {}


def _base_state() -> dict:
    if not _BASE:
        from tests.fuzz.test_hostile import _state

        _BASE.update(_state())
    return _BASE


@settings(FUZZ, max_examples=25)
@given(
    key=st.sampled_from(
        ["config", "space_hash", "epoch", "model", "optimizer", "metrics", "format"]
    ),
    value=st.one_of(JSON_VALUES, st.integers(-(10**9), -1), st.integers(3, 10**9)),
    drop=st.booleans(),
)
def test_checkpoint_contents(key, value, drop):
    import torch

    assume(drop or not (key == "epoch" and type(value) is int and value == 1))  # still valid
    state = dict(_base_state())
    if drop:
        del state[key]
    else:
        state[key] = value
    with sandbox() as root:
        space = write(root, "space.toml", SMALL_TOML)
        run = root / "runs" / "r"
        run.mkdir(parents=True)
        torch.save(state, run / "last.pt")
        args = ["train", space, "--runs-dir", str(root / "runs"), "--name", "r", "--resume"]
        args += ["--epochs", "2", "--batch-size", "2000", "--eval-policies", "1"]
        outcome = invoke(root, args)
        assert outcome.code == 1, outcome
        assert "last.pt" in outcome.error or "runs/r" in outcome.error


@FUZZ
@given(
    lines=st.lists(
        st.one_of(st.binary(max_size=40), JSON_VALUES.map(lambda v: json.dumps(v).encode())),
        max_size=6,
    ),
    newline=st.booleans(),
)
def test_jsonl_files(lines, newline):
    """Any JSON-lines file is read, recovered (a torn last line) or refused with its line."""
    from snnas._run import RunDir
    from snnas.errors import CheckpointError

    with sandbox() as root:
        (root / "e.jsonl").write_bytes(b"\n".join(lines) + (b"\n" if newline else b""))
        try:
            records = RunDir(root).read_jsonl("e.jsonl")
        except CheckpointError as exc:
            assert "e.jsonl:" in str(exc)
        else:
            assert isinstance(records, list)
