"""Hostile device profiles and ``snnas profile`` options, through the real CLI in-process.

Every case is also checked by :func:`tests.fuzz._cli.invoke` for the general promises: exit
code in {0, 1, 2}, no traceback, a one-line error, nothing written outside the runs folder.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import SMALL_TOML
from tests.fuzz._cli import invoke
from tests.fuzz.test_fuzz_cli import FUZZ, TEXT, TOML_VALUES, sandbox, toml_value, write
from tests.fuzz.test_hostile import GOOD_POLICY, Sandbox

HEAD = "flops = 1e9\nbandwidth_bps = 1e8\n"
OP = '\n[[ops]]\nkey = "stem 3-16 32x32"\nseconds = 1e-3\n'


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Sandbox], list[str]]
    code: int
    needles: tuple[str, ...] = ()


CASES: list[Case] = []


def cost_with(text: str | bytes | None, name: str = "board.toml") -> Callable[[Sandbox], list[str]]:
    """``snnas cost`` of the tiny space with the profile file ``text`` (or the name ``name``)."""

    def build(sb: Sandbox) -> list[str]:
        profile = sb.file(name, text) if text is not None else name
        return ["cost", sb.space(), "--policy", sb.policy(GOOD_POLICY), "--profile", profile]

    return build


def add(id: str, text: str | bytes | None, code: int, *needles: str, name: str = "board.toml"):
    CASES.append(Case(id, cost_with(text, name), code, needles))


def op(**fields: object) -> str:
    return "\n[[ops]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items())


STEM = '"stem 3-16 32x32"'
# --------------------------------------------------------------------------- the top level
add("good-table", HEAD + OP, 0)
add("good-full", HEAD + "send_s = 1e-5\nrecv_s = 2e-5\ncores = 2\nop_overhead_s = 0\n" + OP, 0)
add("format-wrong", 'format = "snnas-profile-v0"\n' + HEAD, 1, "format", "snnas-profile-v1")
add("format-number", "format = 1\n" + HEAD, 1, "format", "a string")
add("duplicate-top-key", HEAD + "flops = 2e9\n", 1, ":3:", "valid TOML")
add("duplicate-table", HEAD + "[x]\n[x]\n", 1, "valid TOML")
add("send-negative", HEAD + "send_s = -1e-6\n", 1, "send_s", "[0, 3,600]")
add("recv-inf", HEAD + "recv_s = inf\n", 1, "recv_s", "finite")
add("recv-string", HEAD + 'recv_s = "1ms"\n', 1, "recv_s", "a string")
add("overhead-huge", HEAD + "op_overhead_s = 1e9\n", 1, "op_overhead_s")
add("cores-zero", HEAD + "cores = 0\n", 1, "cores", "an integer")
add("cores-float", HEAD + "cores = 2.0\n", 1, "cores", "an integer")
add("cores-bool", HEAD + "cores = true\n", 1, "cores")
add("cores-huge", HEAD + "cores = 99999999999999999999\n", 1, "cores")
add("unknown-key", HEAD + "latency = 1\n", 1, "latency", "unknown key")
add("source-control", HEAD + 'source = "a\\u001b[2Jb"\n', 1, "source", "control")
add("name-long", HEAD + f'name = "{"n" * 101}"\n', 1, "name", "at most 100")
add("empty", "", 1, "flops", "missing")
add("binary", b"\xff\xfe\x00garbage", 1, "UTF-8")
add("not-toml-suffix", HEAD, 2, "--profile", name="board.txt")
add("unknown-name", None, 2, "--profile", "rpi3b+", name="pi5")
add("markup-name", None, 2, "[/x]", name="[/x]")
# --------------------------------------------------------------------------- the ops table
add("ops-table", HEAD + "[ops]\nkey = 1\n", 1, "ops", "an array of tables")
add("ops-scalars", HEAD + "ops = [1, 2]\n", 1, "ops", "an array of tables")
add("ops-inline", HEAD + f"ops = [{{key = {STEM}, seconds = 1e-3}}]\n", 0)
add("ops-inline-bad", HEAD + f"ops = [{{key = {STEM}, seconds = -1}}]\n", 1, "ops[0].seconds")
add("op-no-key", HEAD + op(seconds="1e-3"), 1, ":4:", "ops[0].key", "missing")
add("op-key-number", HEAD + op(key="3", seconds="1e-3"), 1, ":5:", "ops[0].key", "an integer")
add("op-key-words", HEAD + op(key='"conv 3x3"', seconds="1e-3"), 1, "ops[0].key", "op shape")
add("op-key-zero", HEAD + op(key='"stem 0-16 32x32"', seconds="1"), 1, "ops[0].key")
add("op-key-groups", HEAD + op(key='"block 8-8 m6 g4 s1 8x8"', seconds="1"), 1, "ops[0].key")
add("op-key-spelling", HEAD + op(key='"stem 03-16 32x32"', seconds="1"), 1, "ops[0].key")
add("op-key-markup", HEAD + op(key='"[/x]"', seconds="1"), 1, "ops[0].key", "[/x]")
add("op-key-control", HEAD + op(key='"stem\\u0007"', seconds="1"), 1, "ops[0].key", "\\x07")
add("op-key-long", HEAD + op(key=json.dumps("x" * 5000), seconds="1"), 1, "ops[0].key")
add("op-duplicate", HEAD + OP + OP, 1, ":9:", "ops[1].key", "once (first at ops[0])")
add("op-duplicate-field", HEAD + OP + "seconds = 2e-3\n", 1, "valid TOML")
add("op-seconds-zero", HEAD + op(key=STEM, seconds="0"), 1, ":6:", "ops[0].seconds")
add("op-seconds-nan", HEAD + op(key=STEM, seconds="nan"), 1, "ops[0].seconds", "finite")
add("op-seconds-inf", HEAD + op(key=STEM, seconds="-inf"), 1, "ops[0].seconds", "finite")
add("op-seconds-bool", HEAD + op(key=STEM, seconds="true"), 1, "ops[0].seconds", "a boolean")
add("op-seconds-missing", HEAD + op(key=STEM, count="3"), 1, "ops[0].seconds", "missing")
add("op-seconds-date", HEAD + op(key=STEM, seconds="1979-05-27"), 1, "ops[0].seconds", "date")
add("op-count-zero", HEAD + op(key=STEM, seconds="1", count="0"), 1, "ops[0].count")
add("op-count-float", HEAD + op(key=STEM, seconds="1", count="2.5"), 1, "ops[0].count")
add("op-mean-neg", HEAD + op(key=STEM, seconds="1", mean="-1"), 1, "ops[0].mean")
add("op-std-nan", HEAD + op(key=STEM, seconds="1", std="nan"), 1, "ops[0].std", "finite")
add("op-unknown", HEAD + op(key=STEM, seconds="1", median="1"), 1, "ops[0].median", "unknown")
add("op-nested", HEAD + op(key=STEM, seconds="1") + "[ops.x]\ny = 1\n", 1, "ops[0].x")
add("ops-many", HEAD + "ops = [" + "1," * 100_001 + "]\n", 1, "ops")


# --------------------------------------------------------------------------- the files
def fifo(sb: Sandbox) -> list[str]:
    path = sb.inputs / "pipe.toml"
    os.mkfifo(path)
    return ["cost", sb.space(), "--policy", sb.policy(GOOD_POLICY), "--profile", str(path)]


def folder(sb: Sandbox) -> list[str]:
    (sb.inputs / "dir.toml").mkdir()
    return ["cost", sb.space(), "--policy", sb.policy(GOOD_POLICY), "--profile", "in/dir.toml"]


CASES.append(Case("fifo", fifo, 1, ("a device, pipe or socket",)))
CASES.append(Case("folder", folder, 1, ("a folder",)))
CASES.append(Case("device-alias", cost_with(None, "a57x4"), 0))


def both(sb: Sandbox) -> list[str]:
    return [*cost_with(None, "a57x4")(sb), "--device", "rpi3b+"]


CASES.append(Case("profile-and-device", both, 2, ("--device", "only --profile")))


# --------------------------------------------------------------------------- snnas profile
# Every case fails on its options, before anything is measured.
def measure(*extra: str) -> Callable[[Sandbox], list[str]]:
    return lambda sb: ["profile", "--space", sb.space(), "--out", "runs/p.toml", *extra]


def linked_out(sb: Sandbox) -> list[str]:
    victim = sb.file("victim.toml", "precious")
    sb.runs.mkdir()
    (sb.runs / "p.toml").symlink_to(victim)
    return ["profile", "--space", sb.space(), "--out", str(sb.runs / "p.toml")]


def folder_out(sb: Sandbox) -> list[str]:
    (sb.runs / "p.toml").mkdir(parents=True)
    return ["profile", "--space", sb.space(), "--out", str(sb.runs / "p.toml")]


PROFILE_OPTIONS = [
    ("repeats-zero", measure("--repeats", "0"), "--repeats", "an integer in [1, 100,000]"),
    ("repeats-nan", measure("--repeats", "nan"), "--repeats", ""),
    ("repeats-float", measure("--repeats", "2.5"), "--repeats", ""),
    ("repeats-huge", measure("--repeats", "1e9"), "--repeats", ""),
    ("out-suffix", lambda sb: ["profile", "--out", "runs/p.txt"], "--out", ".toml"),
    ("out-link", linked_out, "--out", "a link or a folder"),
    ("out-folder", folder_out, "--out", "a link or a folder"),
    ("peer-no-port", measure("--peer", "pi"), "--peer", "HOST:PORT"),
    ("peer-port-zero", measure("--peer", "pi:0"), "--peer", "[1, 65535]"),
    ("peer-port-huge", measure("--peer", "pi:70000"), "--peer", ""),
    ("peer-space", measure("--peer", "a b:80"), "--peer", "host name"),
    ("peer-markup", measure("--peer", "[/x]:80"), "--peer", "[/x]"),
    ("peer-control", measure("--peer", "\x1b[2J:80"), "--peer", ""),
    ("serve-zero", lambda sb: ["profile", "--serve", "0"], "--serve", ""),
    ("serve-text", lambda sb: ["profile", "--serve", "http"], "--serve", ""),
    ("serve-and-peer", lambda sb: ["profile", "--serve", "80", "--peer", "a:80"], "--serve", ""),
]
for id, build, *needles in PROFILE_OPTIONS:
    CASES.append(Case(f"profile-{id}", build, 2, tuple(n for n in needles if n)))
CASES.append(
    Case(
        "profile-space-missing",
        lambda sb: ["profile", "--space", "in/none.toml", "--out", "runs/p.toml"],
        1,
        ("none.toml",),
    )
)
CASES.append(
    Case(
        "profile-space-bad",
        lambda sb: [
            "profile",
            "--space",
            sb.space(("depth = 11", "depth = 12")),
            "--out",
            "r.toml",
        ],
        1,
        ("network.depth",),
    )
)


_HELD: list[socket.socket] = []


def port_in_use(sb: Sandbox) -> list[str]:
    """``--serve`` on a port another program listens on: one line, at once."""
    held = socket.socket()
    held.bind(("0.0.0.0", 0))
    held.listen()
    _HELD.append(held)  # open while the case runs; closed with the test session
    return ["profile", "--serve", str(held.getsockname()[1])]


CASES.append(Case("profile-serve-port-in-use", port_in_use, 1, ("--serve",)))


@pytest.mark.parametrize("item", CASES, ids=[c.id for c in CASES])
def test_hostile_profile(tmp_path, item: Case):
    sandbox = Sandbox(tmp_path)
    args = item.build(sandbox)
    outcome = invoke(tmp_path, args, runs=sandbox.runs)
    assert outcome.code == item.code, (args, outcome)
    said = outcome.error if item.code else outcome.stdout
    for needle in item.needles:
        assert needle in said, (needle, said)


def test_a_good_table_reaches_the_report(tmp_path):
    sandbox = Sandbox(tmp_path)
    args = cost_with(HEAD + "send_s = 1e-5\ncores = 2\n" + OP)(sandbox)
    outcome = invoke(tmp_path, [*args, "--json"], runs=sandbox.runs)
    profile = json.loads(outcome.stdout)["profile"]
    assert profile["table"] == {"stem 3-16 32x32": 1e-3}
    assert (profile["send_s"], profile["cores"], profile["name"]) == (1e-5, 2, "board")


# --------------------------------------------------------------------------- property-based
KEYS = st.one_of(
    TEXT,
    st.sampled_from(["stem 3-16 32x32", "block 16-64 m32 g2 s1 32x32", "head 256-100 8x8"]),
    st.builds(
        "block {}-{} m{} g{} s{} {}x{}".format,
        *[st.integers(-1, 5000)] * 7,
    ),
)


@FUZZ
@given(
    top=st.dictionaries(
        st.sampled_from(["send_s", "recv_s", "cores", "op_overhead_s", "format", "name", "x"]),
        TOML_VALUES,
        max_size=3,
    ),
    ops=st.lists(
        st.dictionaries(
            st.sampled_from(["key", "seconds", "count", "mean", "std", "y"]),
            st.one_of(TOML_VALUES, KEYS),
            max_size=5,
        ),
        max_size=4,
    ),
)
def test_random_profiles(top, ops):
    """Any profile file: an answer (exit 0) or one line naming the file (exit 1)."""
    with sandbox() as root:
        text = HEAD + "".join(f"{k} = {toml_value(v)}\n" for k, v in top.items())
        for entry in ops:
            text += "\n[[ops]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in entry.items())
        space = write(root, "space.toml", SMALL_TOML)
        policy = write(root, "p.json", json.dumps(GOOD_POLICY))
        profile = write(root, "board.toml", text)
        outcome = invoke(root, ["cost", space, "--policy", policy, "--profile", profile])
        assert outcome.code in (0, 1)
        if outcome.code:
            assert "board.toml" in outcome.error
