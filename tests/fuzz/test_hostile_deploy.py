"""A hostile pass over the deployment commands (issue 8, second pass): ``snnas finetune``,
``snnas export``, ``snnas plan verify``, ``snnas run`` (and ``python -m snnas.runtime``),
``snnas parity train`` / ``eval``, ``snnas compare``'s ``--rewards``/``--reference``/``--seeds``
and the ``[parity]`` keys and ``encode``/``encoder`` decisions of space files.

One real pipeline is built once (a tiny search, ``finetune``, ``export --onnx``, ``parity
train``); every case copies its run folder into a fresh sandbox, breaks something, runs the
real CLI in-process and checks, through :func:`tests.fuzz._cli.invoke`, the general promises
(exit code in {0, 1, 2}, no traceback, one error line, nothing written outside the runs
folder) and its own exit code and message words.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from snnas.cli import cli
from tests.conftest import SMALL_TOML, SPACES
from tests.fuzz._cli import invoke

SEARCH = [
    "--strategy",
    "random",
    "--name",
    "s",
    "--device",
    "cpu",
    "--set",
    "search.iterations=1",
    "--set",
    "search.train_steps=4",
    "--set",
    "search.strategy_steps=1",
    "--set",
    "search.samples=2",
    "--set",
    "search.topk=2",
    "--set",
    "search.batch_size=64",
    "--set",
    "search.rescore=2",
]
PARITY_TOML = (
    SMALL_TOML
    + """
[parity]
r = 1

[decisions.encode]
values = [0, 50, 100]

[decisions.encoder]
choices = ["sum", "concat"]
"""
)
MARKUP = "[/bold] [red]x[/red] :smile:"
#: Markup without a slash: a valid folder name.
MARKUP_NAME = "[bold]x[red] :smile: [link=x]"
HUGE = "x" * 5000


def _cli(cwd: Path, args: list[str]) -> None:
    """Run ``snnas ARGS`` in ``cwd`` (building the pipeline: it must succeed)."""
    here = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    finally:
        os.chdir(here)
    assert result.exit_code == 0, (args, result.output)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    """``runs/s``: a search, fine-tuned, exported with ONNX segments, with parity devices."""
    root = tmp_path_factory.mktemp("pipeline")
    (root / "tiny.toml").write_text(SMALL_TOML)
    (root / "parity.toml").write_text(PARITY_TOML)
    _cli(root, ["search", "tiny.toml", *SEARCH])
    _cli(root, ["finetune", "s", "--epochs", "1", "--device", "cpu"])
    _cli(root, ["export", "s", "--onnx"])
    _cli(
        root,
        [
            "parity",
            "train",
            "runs/s",
            "--space",
            "parity.toml",
            "--epochs",
            "1",
            "--batch-size",
            "256",
            "--device",
            "cpu",
        ],
    )
    return root / "runs"


class Sandbox:
    """A copy of the pipeline's runs folder (``runs/s``, its plan and parity run) and a folder
    of input files (``in``)."""

    def __init__(self, root: Path, runs: Path) -> None:
        self.root = root
        self.runs = root / "runs"
        shutil.copytree(runs, self.runs, symlinks=True)
        self.inputs = root / "in"
        self.inputs.mkdir()
        self.run = self.runs / "s"
        self.plan = self.run / "plan"

    def file(self, name: str, content: str | bytes) -> str:
        path = self.inputs / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    def space(self, *edits: tuple[str, str], base: str = PARITY_TOML) -> str:
        text = base
        for old, new in edits:
            assert old in text, old
            text = text.replace(old, new, 1)
        return self.file("space.toml", text)

    # -- plan folders
    def plan_data(self) -> dict:
        return json.loads((self.plan / "plan.json").read_text())

    def write_plan(self, data: dict | str | bytes) -> None:
        path = self.plan / "plan.json"
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data if isinstance(data, str) else json.dumps(data))

    def edit_plan(self, edit: Callable[[dict], object]) -> None:
        data = self.plan_data()
        edit(data)
        self.write_plan(data)

    def rehash(self, name: str) -> None:
        """Record ``name``'s new checksum in plan.json (a tamperer who covers their tracks)."""
        digest = hashlib.sha256((self.plan / name).read_bytes()).hexdigest()

        def edit(data: dict) -> None:
            entries = [data["reference"]] + [e["weights"] for e in data["devices"] if e["weights"]]
            entries += [s for e in data["devices"] for s in e.get("onnx", [])]
            for entry in entries:
                if entry["file"] == name:
                    entry["sha256"] = digest

        self.edit_plan(edit)

    def outside(self) -> Path:
        """A folder outside the runs folder (in the sandbox, so an escape is caught)."""
        path = self.root / "outside"
        path.mkdir(exist_ok=True)
        return path


@dataclass(frozen=True)
class Case:
    cls: str
    id: str
    build: Callable[[Sandbox], list[str]]
    code: int
    needles: tuple[str, ...] = ()


CASES: list[Case] = []


def add(cls: str, id: str, build: Callable[[Sandbox], list[str]], code: int, *needles: str):
    CASES.append(Case(cls, id, build, code, needles))


def then(*steps: Callable[[Sandbox], object], args: Callable[[Sandbox], list[str]]):
    """A build that first breaks the sandbox (``steps``), then gives the arguments."""

    def build(sb: Sandbox) -> list[str]:
        for step in steps:
            step(sb)
        return args(sb)

    return build


def fixed(*args: str) -> Callable[[Sandbox], list[str]]:
    return lambda sb: list(args)


def _torch_save(path: Path, state: object) -> None:
    import torch

    torch.save(state, path)


def _load(path: Path) -> dict:
    import torch

    return torch.load(path, weights_only=True)


def _resave(path: Path, edit: Callable[[dict], object]) -> None:
    state = _load(path)
    edit(state)
    _torch_save(path, state)


def _nan_first_tensor(model: dict) -> None:
    key = next(k for k, v in model.items() if v.is_floating_point())
    model[key] = model[key].clone().fill_(float("nan"))


def _shrink_first_tensor(model: dict) -> None:
    key = next(iter(model))
    model[key] = model[key][..., :1].clone()


TINY_POLICY = {
    **{f"t{p}.perm": [1, 0, 3, 2] for p in range(3)},
    **{f"t{p}.sparsity": 75.0 for p in range(3)},
    **{f"t{p}.dtype": "float16" for p in range(3)},
}
# Bad option values shared by several numeric options: (value, why).
NUMBERS_BAD = ["0", "-1", "nan", "inf", "-inf", "1e400", "abc", "", "99999999999999999999999"]

# --------------------------------------------------------------------------- finetune
FINETUNE = ["finetune", "s", "--device", "cpu"]
for option in ("--epochs", "--lr", "--batch-size", "--seed"):
    for i, bad in enumerate(NUMBERS_BAD):
        if option == "--seed" and bad == "0":
            continue
        add("finetune", f"{option}-{i}", fixed(*FINETUNE, option, bad), 2, option)
add("finetune", "epochs-float", fixed(*FINETUNE, "--epochs", "1.5"), 2, "--epochs")
add("finetune", "lr-huge", fixed(*FINETUNE, "--lr", "11"), 2, "--lr")
add("finetune", "device-tpu", fixed(*FINETUNE, "--device", "tpu"), 2, "--device")
add("finetune", "again-without-resume", fixed(*FINETUNE, "--epochs", "1"), 1, "--resume")
add("finetune", "no-such-run", fixed("finetune", "nope"), 1, "no such run")
add("finetune", "markup-run", fixed("finetune", MARKUP_NAME), 1, MARKUP_NAME)
add("finetune", "markup-path", fixed("finetune", MARKUP), 2, MARKUP)
for i, bad in enumerate(["../s", "/etc", "a\x00b", HUGE, "", ".", ".."]):
    add("finetune", f"run-name-{i}", fixed("finetune", bad), 2, "RUN")
add(
    "finetune",
    "resume-without-finetune",
    then(lambda sb: shutil.rmtree(sb.run / "finetune"), args=fixed(*FINETUNE, "--resume")),
    1,
    "no fine-tuning to resume",
)
add(
    "finetune",
    "resume-wrong-keys",
    then(
        lambda sb: _torch_save(
            sb.run / "finetune" / "last.pt", {"format": "snnas-checkpoint-v1", "epoch": "x"}
        ),
        args=fixed(*FINETUNE, "--epochs", "1", "--resume"),
    ),
    1,
    "last.pt",
    "corrupt checkpoint",
)
add(
    "finetune",
    "resume-nan-weights",
    then(
        lambda sb: _resave(
            sb.run / "finetune" / "last.pt", lambda s: _nan_first_tensor(s["model"])
        ),
        args=fixed(*FINETUNE, "--epochs", "1", "--resume"),
    ),
    1,
    "last.pt",
)
add(
    "finetune",
    "finetune-folder-is-link",
    then(
        lambda sb: shutil.rmtree(sb.run / "finetune"),
        lambda sb: (sb.run / "finetune").symlink_to(sb.outside()),
        args=fixed(*FINETUNE, "--epochs", "1"),
    ),
    1,
    "finetune",
    "link",
)
add(
    "finetune",
    "not-a-search-run",
    then(lambda sb: (sb.runs / "empty").mkdir(), args=fixed("finetune", "empty")),
    1,
    "empty",
)
add(
    "finetune",
    "search-weights-wrong-shapes",
    then(
        lambda sb: shutil.rmtree(sb.run / "finetune"),
        lambda sb: _resave(sb.run / "last.pt", lambda s: _shrink_first_tensor(s["model"])),
        args=fixed(*FINETUNE, "--epochs", "1"),
    ),
    1,
    "last.pt",
)
add(
    "finetune",
    "search-weights-nan",
    then(
        lambda sb: shutil.rmtree(sb.run / "finetune"),
        lambda sb: _resave(sb.run / "last.pt", lambda s: _nan_first_tensor(s["model"])),
        args=fixed(*FINETUNE, "--epochs", "1"),
    ),
    1,
    "last.pt",
)
add(
    "finetune",
    "best-policy-nan",
    then(
        lambda sb: shutil.rmtree(sb.run / "finetune"),
        lambda sb: (sb.run / "best_policy.json").write_text('{"policy": {"t0.sparsity": NaN}}'),
        args=fixed(*FINETUNE, "--epochs", "1"),
    ),
    1,
    "best_policy.json",
)
POLICY_FILES_BAD = [
    ("missing", None, 1, "no such file"),
    ("binary", b"\xff\xfe\x00garbage", 1, "UTF-8"),
    ("empty", "", 1, "not valid JSON"),
    ("nan", '{"t0.sparsity": NaN}', 1, "NaN"),
    ("list", "[1, 2]", 1, "policy.json"),
    ("markup-label", json.dumps({**TINY_POLICY, MARKUP: 1}), 1, MARKUP),
    ("parity-label", json.dumps({**TINY_POLICY, "t0.encode": 50}), 1, "t0.encode"),
    ("good", json.dumps(TINY_POLICY), 0, "validation accuracy"),
]
for id, content, code, needle in POLICY_FILES_BAD:

    def _policy_args(sb: Sandbox, content=content) -> list[str]:
        shutil.rmtree(sb.run / "finetune")
        path = sb.inputs / "policy.json"
        if content is not None:
            sb.file("policy.json", content)
        return [*FINETUNE, "--epochs", "1", "--policy", str(path)]

    add("finetune", f"policy-{id}", _policy_args, code, needle)
add(
    "finetune",
    "policy-folder",
    lambda sb: [*FINETUNE, "--policy", str(sb.inputs)],
    2,
    "--policy",
)

# --------------------------------------------------------------------------- export
EXPORT = ["export", "s"]
add("export", "again-over-plan", fixed(*EXPORT), 0)
add("export", "no-such-run", fixed("export", "nope"), 1, "no such run")
add(
    "export",
    "not-finetuned",
    then(lambda sb: shutil.rmtree(sb.run / "finetune"), args=fixed(*EXPORT)),
    1,
    "not fine-tuned",
)
# --out is a path, honoured wherever it is (issue 16; tests/fuzz/test_hostile_out16.py has
# the cases that write outside the runs folder); these stay inside it.
for i, bad in enumerate(["", ".", "..", "a\x00b", HUGE, "a/\n/b"]):
    add("export", f"out-{i}", fixed(*EXPORT, "--out", bad), 2, "--out")
add(
    "export",
    "out-markup",
    lambda sb: [*EXPORT, "--out", str(sb.runs / MARKUP_NAME)],
    0,
    MARKUP_NAME,
)
add("export", "out-the-run-itself", lambda sb: [*EXPORT, "--out", str(sb.run)], 1, "s")
add(
    "export",
    "out-existing-run",
    then(
        lambda sb: shutil.copytree(sb.run, sb.runs / "t"),
        args=lambda sb: [*EXPORT, "--out", str(sb.runs / "t")],
    ),
    1,
    "t",
)
add(
    "export",
    "out-link-outside",
    then(
        lambda sb: (sb.runs / "p").symlink_to(sb.outside()),
        args=lambda sb: [*EXPORT, "--out", str(sb.runs / "p")],
    ),
    1,
    "--out",
    "link",
)
add(
    "export",
    "plan-folder-is-link",
    then(
        lambda sb: shutil.rmtree(sb.plan),
        lambda sb: sb.plan.symlink_to(sb.outside()),
        args=fixed(*EXPORT),
    ),
    1,
    "plan",
    "link",
)
add(
    "export",
    "plan-file-is-link",
    then(
        lambda sb: (sb.plan / "plan.json").unlink(),
        lambda sb: (sb.plan / "plan.json").symlink_to(sb.outside() / "victim.json"),
        args=fixed(*EXPORT),
    ),
    1,
    "plan",
)
add(
    "export",
    "plan-folder-is-file",
    then(
        lambda sb: shutil.rmtree(sb.plan), lambda sb: sb.plan.write_text("x"), args=fixed(*EXPORT)
    ),
    1,
    "plan",
)
add("export", "profile-unknown", fixed(*EXPORT, "--profile", "tpu"), 2, "--profile")
add("export", "profile-markup", fixed(*EXPORT, "--profile", MARKUP), 2, "--profile", MARKUP)
add("export", "profile-missing-toml", fixed(*EXPORT, "--profile", "nope.toml"), 1, "nope.toml")
add(
    "export",
    "profile-nan",
    lambda sb: [*EXPORT, "--profile", sb.file("p.toml", "flops = nan\nbandwidth_bps = 1e6\n")],
    1,
    "flops",
)
add(
    "export",
    "profile-good",
    lambda sb: [*EXPORT, "--profile", sb.file("p.toml", "flops = 1e9\nbandwidth_bps = 1e6\n")],
    0,
)
add(
    "export",
    "best-nan-weights",
    then(
        lambda sb: _resave(
            sb.run / "finetune" / "best.pt", lambda s: _nan_first_tensor(s["model"])
        ),
        args=fixed(*EXPORT),
    ),
    1,
    "best.pt",
)
add(
    "export",
    "best-wrong-shapes",
    then(
        lambda sb: _resave(
            sb.run / "finetune" / "best.pt", lambda s: _shrink_first_tensor(s["model"])
        ),
        args=fixed(*EXPORT),
    ),
    1,
    "best.pt",
    "does not match",
)
add(
    "export",
    "best-wrong-keys",
    then(
        lambda sb: _torch_save(
            sb.run / "finetune" / "best.pt", {"format": "snnas-checkpoint-v1", "model": [1]}
        ),
        args=fixed(*EXPORT),
    ),
    1,
    "best.pt",
)
add(
    "export",
    "best-policy-tampered",
    then(
        lambda sb: _resave(
            sb.run / "finetune" / "best.pt",
            lambda s: s["identity"]["policy"].update({"t0.sparsity": 1e300}),
        ),
        args=fixed(*EXPORT),
    ),
    1,
    "best.pt",
)
FINAL_BAD = [
    ("not-json", "{", "final.json"),
    ("nan", '{"val_acc": NaN, "test_acc": 0.5, "selected_epoch": 1}', "final.json"),
    ("list", "[]", "final.json"),
    ("no-val", '{"test_acc": 0.5, "selected_epoch": 1}', "final.json"),
    ("string-acc", '{"val_acc": "high", "test_acc": 0.5, "selected_epoch": 1}', "final.json"),
    ("acc-2", '{"val_acc": 2.0, "test_acc": 0.5, "selected_epoch": 1}', "final.json"),
]
for id, text, needle in FINAL_BAD:
    add(
        "export",
        f"final-{id}",
        then(
            lambda sb, t=text: (sb.run / "finetune" / "final.json").write_text(t),
            args=fixed(*EXPORT),
        ),
        1,
        needle,
    )
add(
    "export",
    "final-link",
    then(
        lambda sb: shutil.copy(sb.run / "finetune" / "final.json", sb.outside() / "f.json"),
        lambda sb: (sb.run / "finetune" / "final.json").unlink(),
        lambda sb: (sb.run / "finetune" / "final.json").symlink_to(sb.outside() / "f.json"),
        args=fixed(*EXPORT),
    ),
    1,
    "final.json",
)
add(
    "export",
    "config-json-garbage",
    then(lambda sb: (sb.run / "config.json").write_bytes(b"\xff\x00"), args=fixed(*EXPORT)),
    1,
    "config.json",
)


# --------------------------------------------------------------------------- plan verify
def verify(*extra: str) -> Callable[[Sandbox], list[str]]:
    return lambda sb: ["plan", "verify", str(sb.plan), *extra]


add("verify", "good", verify(), 0, "frozen network")
add("verify", "good-json", verify("--json", "--split", "test"), 0, '"passed": true')
add(
    "verify",
    "reference-run",
    lambda sb: ["plan", "verify", str(sb.plan), "--reference-run", str(sb.run)],
    0,
    "finetune/best.pt",
)
add("verify", "missing-folder", fixed("plan", "verify", "nope"), 1, "nope")
add("verify", "markup-folder", fixed("plan", "verify", MARKUP), 1, MARKUP)
add("verify", "nul-folder", fixed("plan", "verify", "a\x00b"), 2, "NUL")
add("verify", "file-not-folder", lambda sb: ["plan", "verify", str(sb.plan / "plan.json")], 1)
add("verify", "run-not-plan", lambda sb: ["plan", "verify", str(sb.run)], 1, "plan.json")
add(
    "verify",
    "plan-json-missing",
    then(lambda sb: (sb.plan / "plan.json").unlink(), args=verify()),
    1,
    "plan.json",
    "missing",
)
add(
    "verify",
    "plan-json-folder",
    then(
        lambda sb: (sb.plan / "plan.json").unlink(),
        lambda sb: (sb.plan / "plan.json").mkdir(),
        args=verify(),
    ),
    1,
    "plan.json",
)
add(
    "verify",
    "plan-json-symlink",
    then(
        lambda sb: (sb.outside() / "p.json").write_bytes((sb.plan / "plan.json").read_bytes()),
        lambda sb: (sb.plan / "plan.json").unlink(),
        lambda sb: (sb.plan / "plan.json").symlink_to(sb.outside() / "p.json"),
        args=verify(),
    ),
    1,
    "plan.json",
    "link",
)
add(
    "verify",
    "plan-json-loop",
    then(
        lambda sb: (sb.plan / "plan.json").unlink(),
        lambda sb: (sb.plan / "plan.json").symlink_to(sb.plan / "plan.json"),
        args=verify(),
    ),
    1,
    "plan.json",
)
PLAN_TEXT_BAD = [
    ("empty", b"", "not valid JSON"),
    ("non-utf8", b'{"format": "\xff\xfe"}', "UTF-8"),
    ("utf16", json.dumps({"a": 1}).encode("utf-16"), "plan.json"),
    ("nan", b'{"schema_version": NaN}', "NaN"),
    ("infinity", b'{"schema_version": Infinity}', "Infinity"),
    ("duplicate-key", b'{"format": "snnas-plan", "format": "x"}', "given twice"),
    ("array", b"[]", "expected a JSON object"),
    ("deep", b"[" * 100_000 + b"]" * 100_000, "plan.json"),
    ("huge", b'{"x": "' + b"a" * 20_000_000 + b'"}', "bytes"),
    ("truncated", b'{"format": "snnas-plan", "sch', "not valid JSON"),
]
for id, raw, needle in PLAN_TEXT_BAD:
    add("verify", f"text-{id}", then(lambda sb, r=raw: sb.write_plan(r), args=verify()), 1, needle)


def _set(path: str, value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        keys = path.split("/")
        target = data
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = keys[-1]
        if value is _DROP:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return edit


_DROP = object()
PLAN_EDITS_BAD = [
    ("schema-newer", "schema_version", 2, "newer snnas"),
    ("schema-huge", "schema_version", 10**30, "newer snnas"),
    ("schema-string", "schema_version", "1", "schema_version"),
    ("schema-float", "schema_version", 1.0, "schema_version"),
    ("schema-bool", "schema_version", True, "schema_version"),
    ("schema-zero", "schema_version", 0, "schema_version"),
    ("schema-missing", "schema_version", _DROP, "schema_version"),
    ("format", "format", "other", "format"),
    ("extra-key", "extra", 1, "extra"),
    ("groups-string", "schedule/groups", "4", "groups"),
    ("groups-huge", "schedule/groups", 10**30, "plan.json"),
    ("groups-zero", "schedule/groups", 0, "groups"),
    ("groups-5", "schedule/groups", 5, "plan.json"),
    ("depth-huge", "network/depth", 2_000_000_000, "plan.json"),
    ("width-huge", "network/stage_widths", [10**9, 10**9, 10**9], "plan.json"),
    ("bytes-huge", "totals/bytes_per_image", 10**30, "bytes_per_image"),
    ("bytes-float", "totals/bytes_per_image", 6016.0, "bytes_per_image"),
    ("ratio-nan-string", "totals/live_ratio", "NaN", "live_ratio"),
    ("ratio-2", "totals/live_ratio", 2.0, "live_ratio"),
    ("weights-escape", "devices/0/weights/file", "../../finetune/best.pt", "weights"),
    ("weights-absolute", "devices/0/weights/file", "/etc/hostname", "weights"),
    ("weights-null", "devices/0/weights", None, "device 0"),
    ("space-file-escape", "space/file", "../config.json", "space"),
    ("space-hash", "space/hash", "0" * 16, "space hash"),
    ("policy-tampered", "policy/t0.sparsity", 1e300, "policy"),
    ("policy-markup", f"policy/{MARKUP_NAME}", 1, "policy"),
    ("groups-float", "schedule/groups", 4.0, "groups"),
    ("stage-widths-float", "network/stage_widths", [8.0, 16, 32], "stage_widths"),
    ("input-device-float", "input/devices", [0.0], "input"),
    ("send-dropped", "devices/0/sends", [], "plan.json"),
    ("send-to-self", "devices/0/sends/0/to", 0, "sends to device 0"),
    ("send-to-99", "devices/0/sends/0/to", 99, "sends to device 99"),
    ("device-order", "devices/0/device", 1, "devices must be listed"),
    ("input-devices-empty", "input/devices", [], "plan.json"),
    ("input-device-99", "input/devices", [99], "plan.json"),
    ("reference-splits-huge", "reference/splits/val", 10**30, "reference"),
]
for id, path, value, needle in PLAN_EDITS_BAD:
    add(
        "verify",
        f"edit-{id}",
        then(lambda sb, p=path, v=value: sb.edit_plan(_set(p, v)), args=verify()),
        1,
        needle,
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def _safetensors(path: Path, edit: Callable[[dict], object]) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


def _first_key(tensors: dict) -> str:
    return sorted(tensors)[0]


add(
    "verify",
    "weights-flipped",
    then(lambda sb: _flip_byte(sb.plan / "device1.safetensors"), args=verify()),
    1,
    "device1.safetensors",
    "checksum",
)
add(
    "verify",
    "weights-missing",
    then(lambda sb: (sb.plan / "device1.safetensors").unlink(), args=verify()),
    1,
    "device1.safetensors",
)
add(
    "verify",
    "weights-symlink",
    then(
        lambda sb: shutil.move(sb.plan / "device1.safetensors", sb.outside() / "w"),
        lambda sb: (sb.plan / "device1.safetensors").symlink_to(sb.outside() / "w"),
        args=verify(),
    ),
    1,
    "device1.safetensors",
)
add(
    "verify",
    "onnx-flipped",
    then(lambda sb: _flip_byte(sb.plan / "device1_segment0.onnx"), args=verify()),
    1,
    "device1_segment0.onnx",
)
add(
    "verify",
    "space-edited",
    then(
        lambda sb: (sb.plan / "space.toml").write_text(
            SMALL_TOML.replace("levels = 3", "levels = 4")
        ),
        args=verify(),
    ),
    1,
    "space",
)
add(
    "verify",
    "space-invalid",
    then(lambda sb: (sb.plan / "space.toml").write_bytes(b"\xff["), args=verify()),
    1,
    "space.toml",
)
add(
    "verify",
    "space-symlink",
    then(
        lambda sb: shutil.move(sb.plan / "space.toml", sb.outside() / "s.toml"),
        lambda sb: (sb.plan / "space.toml").symlink_to(sb.outside() / "s.toml"),
        args=verify(),
    ),
    1,
    "space.toml",
)
SAFETENSORS_BAD = [
    ("nan", lambda t: t[_first_key(t)].fill_(float("nan")), "NaN"),
    ("shape", lambda t: t.update({_first_key(t): t[_first_key(t)][..., :1].clone()}), "expected"),
    ("dtype", lambda t: t.update({_first_key(t): t[_first_key(t)].double()}), "expected float32"),
    ("extra", lambda t: t.update({"evil": t[_first_key(t)].clone()}), "evil"),
    ("missing", lambda t: t.pop(_first_key(t)), "missing"),
]
for id, edit, needle in SAFETENSORS_BAD:
    add(
        "verify",
        f"weights-{id}-rehashed",
        then(
            lambda sb, e=edit: _safetensors(sb.plan / "device1.safetensors", e),
            lambda sb: sb.rehash("device1.safetensors"),
            args=verify(),
        ),
        1,
        "device1.safetensors",
        needle,
    )
add(
    "verify",
    "weights-garbage-rehashed",
    then(
        lambda sb: (sb.plan / "device1.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}"),
        lambda sb: sb.rehash("device1.safetensors"),
        args=verify(),
    ),
    1,
    "device1.safetensors",
)
add(
    "verify",
    "weights-huge-header-rehashed",
    then(
        lambda sb: (sb.plan / "device1.safetensors").write_bytes(
            (2**62).to_bytes(8, "little") + b"{}"
        ),
        lambda sb: sb.rehash("device1.safetensors"),
        args=verify(),
    ),
    1,
    "device1.safetensors",
)
REFERENCE_BAD = [
    ("no-val", lambda t: t.pop("val.logits"), "reference"),
    ("labels-changed", lambda t: t["val.labels"].add_(1).remainder_(10), "split differs"),
    ("nan-logits", lambda t: t["val.logits"].fill_(float("nan")), "reference"),
    (
        "logits-shape",
        lambda t: t.update({"val.logits": t["val.logits"][:, :3].contiguous()}),
        "reference",
    ),
    ("labels-dtype", lambda t: t.update({"val.labels": t["val.labels"].float()}), "reference"),
]
for id, edit, needle in REFERENCE_BAD:
    add(
        "verify",
        f"reference-{id}-rehashed",
        then(
            lambda sb, e=edit: _safetensors(sb.plan / "reference.safetensors", e),
            lambda sb: sb.rehash("reference.safetensors"),
            lambda sb: shutil.rmtree(sb.run / "finetune"),  # compared with the stored logits
            args=verify(),
        ),
        1,
        needle,
    )
add(
    "verify",
    "source-checkpoint-other-network",
    then(
        lambda sb: _resave(
            sb.run / "finetune" / "best.pt", lambda s: _shrink_first_tensor(s["model"])
        ),
        lambda sb: sb.edit_plan(_set("source/sha256", _sha256(sb.run / "finetune" / "best.pt"))),
        args=lambda sb: ["plan", "verify", str(sb.plan), "--reference-run", str(sb.run)],
    ),
    1,
    "best.pt",
)


# --------------------------------------------------------------------------- run
def run(*extra: str) -> Callable[[Sandbox], list[str]]:
    return lambda sb: ["run", str(sb.plan), *extra]


LOCAL = ("--local", "--images", "4", "--warmup", "1", "--timeout", "2")
add("run", "neither", run(), 2, "--local")
add("run", "both", run("--local", "--rank", "0", "--master", "127.0.0.1:1"), 2, "--local")
add("run", "rank-without-master", run("--rank", "0"), 2, "--master")
for i, bad in enumerate(["x", ":80", "h:0", "h:65536", "h:abc", "h:-1", "", "h:", MARKUP, HUGE]):
    add("run", f"master-{i}", run("--rank", "0", "--master", bad), 2, "--master")
add("run", "rank-out-of-plan", run("--rank", "4", "--master", "127.0.0.1:1"), 2, "--rank")
add("run", "rank-negative", run("--rank", "-1", "--master", "127.0.0.1:1"), 2, "--rank")
for option in ("--timeout", "--images", "--warmup", "--delay-ms", "--fail-at", "--fail-device"):
    for i, bad in enumerate(["nan", "inf", "-1", "abc", "1e400"]):
        add("run", f"{option}-{i}", run(*LOCAL, option, bad), 2, option)
add("run", "timeout-zero", run(*LOCAL, "--timeout", "0"), 2, "--timeout")
add("run", "images-zero", run(*LOCAL, "--images", "0"), 2, "--images")
add("run", "fail-device-out-of-plan", run(*LOCAL, "--fail-device", "4"), 2, "--fail-device")
add("run", "slow-device-out-of-plan", run(*LOCAL, "--slow-device", "9"), 2, "--slow-device")
add(
    "run",
    "rank-fail-device-out-of-plan",
    run("--rank", "1", "--master", "127.0.0.1:1", "--fail-device", "4"),
    2,
    "--fail-device",
)
add("run", "fail-at-without-device", run(*LOCAL, "--fail-at", "2"), 2, "--fail-at")
add("run", "delay-without-device", run(*LOCAL, "--delay-ms", "5"), 2, "--delay-ms")
add(
    "run",
    "fail-at-beyond-images",
    run(*LOCAL, "--fail-device", "1", "--fail-at", "4"),
    2,
    "--fail-at",
)
for i, bad in enumerate(["../x", "/tmp/snnas-hostile-run", "a\x00b", HUGE, ".", ".."]):
    add("run", f"name-{i}", run(*LOCAL, "--name", bad), 2, "--name")
add("run", "missing-plan", fixed("run", "nope", *LOCAL), 1, "nope")
add(
    "run",
    "tampered-plan",
    then(lambda sb: _flip_byte(sb.plan / "device2.safetensors"), args=run(*LOCAL)),
    1,
    "checksum",
)
add(
    "run",
    "tampered-plan-rank",
    then(
        lambda sb: _flip_byte(sb.plan / "device2.safetensors"),
        args=run("--rank", "1", "--master", "127.0.0.1:1"),
    ),
    1,
    "checksum",
)
add(
    "run",
    "logs-folder-link",
    then(
        lambda sb: (sb.runs / "rt").mkdir(),
        lambda sb: (sb.runs / "rt" / "logs").symlink_to(sb.outside()),
        args=run(*LOCAL, "--name", "rt"),
    ),
    1,
    "logs",
    "link",
)
add(
    "run",
    "log-file-link",
    then(
        lambda sb: (sb.runs / "rt" / "logs").mkdir(parents=True),
        lambda sb: (sb.runs / "rt" / "logs" / "device0.log").symlink_to(sb.outside() / "v"),
        args=run(*LOCAL, "--name", "rt"),
    ),
    1,
    "device0.log",
    "link",
)
add(
    "run",
    "out-is-file",
    then(lambda sb: (sb.runs / "rt").write_text("x"), args=run(*LOCAL, "--name", "rt")),
    1,
    "rt",
)

for i, bad in enumerate(["0", "-1", "nan", "inf", "abc", "5000"]):
    add("run", f"join-timeout-{i}", run(*LOCAL, "--join-timeout", bad), 2, "--join-timeout")
add(
    "run",
    "rank-unreachable-master",
    run("--rank", "1", "--master", "127.0.0.1:1", "--join-timeout", "1"),
    1,
    "could not join",
)
add(
    "run",
    "rank0-cannot-host",
    run("--rank", "0", "--master", "192.0.2.1:29500", "--join-timeout", "1"),
    1,
    "could not join",
)

PTRAIN_BASE = ["parity", "train", "runs/s", "--device", "cpu"]

# ------------------------------------------------------------- python -m snnas.runtime
WORKER = ["--world", "4", "--rendezvous", "master", "--address", "127.0.0.1:1"]
RUNTIME_CASES = [
    ("timeout-nan", ["--rank", "1", *WORKER, "--timeout", "nan"], 2, "--timeout"),
    ("timeout-zero", ["--rank", "1", *WORKER, "--timeout", "0"], 2, "--timeout"),
    ("join-inf", ["--rank", "1", *WORKER, "--join-timeout", "inf"], 2, "--join-timeout"),
    ("images-negative", ["--rank", "1", *WORKER, "--images", "-1"], 2, "--images"),
    ("warmup-string", ["--rank", "1", *WORKER, "--warmup", "x"], 2, "--warmup"),
    ("delay-nan", ["--rank", "1", *WORKER, "--delay-ms", "nan"], 2, "--delay-ms"),
    ("rank-negative", ["--rank", "-1", *WORKER], 2, "--rank"),
    ("rank-beyond-world", ["--rank", "4", *WORKER], 2, "--rank"),
    ("world-zero", ["--rank", "0", "--world", "0"], 2, "--world"),
    ("fail-device-string", ["--rank", "1", *WORKER, "--fail-device", "x"], 2, "--fail-device"),
    ("no-address", ["--rank", "1", "--world", "4", "--rendezvous", "master"], 2, "--address"),
    ("name-escape", ["--rank", "0", *WORKER, "--name", "../x"], 2, "--name"),
    ("name-absolute", ["--rank", "0", *WORKER, "--name", "/tmp/snnas-hostile-rt"], 2, "--name"),
    ("world-mismatch", ["--rank", "0", "--world", "3", "--rendezvous", "env"], 1, "3"),
    (
        "unreachable",
        ["--rank", "1", *WORKER, "--join-timeout", "1"],
        1,
        "could not join",
    ),
]


add("run", "name-is-a-search-run", run(*LOCAL, "--name", "s"), 1, "not a runtime folder")
add("parity", "train-name-plan", fixed(*PTRAIN_BASE, "--name", "plan"), 1, "not a parity run")
add("parity", "train-name-finetune", fixed(*PTRAIN_BASE, "--name", "finetune"), 1, "not a parity")
add(
    "parity",
    "eval-name-plan",
    fixed("parity", "eval", "runs/s", "--name", "plan"),
    1,
    "config.json",
)

NUL_PATHS = [
    ("finetune-policy", ["finetune", "s", "--policy", "a\x00b.json"]),
    ("export-profile", ["export", "s", "--profile", "a\x00b.toml"]),
    ("export-data-dir", ["export", "s", "--data-dir", "a\x00b"]),
    ("run-plan", ["run", "a\x00b", "--local"]),
    ("run-runs-dir", ["run", "runs/s/plan", "--local", "--runs-dir", "a\x00b"]),
    ("parity-run", ["parity", "train", "a\x00b"]),
    ("parity-space", ["parity", "train", "runs/s", "--space", "a\x00b.toml"]),
    ("parity-choices", ["parity", "train", "runs/s", "--choices", "a\x00b.json"]),
    ("parity-eval-run", ["parity", "eval", "a\x00b"]),
    ("space-show", ["space", "show", "a\x00b.toml"]),
]
for id, args in NUL_PATHS:
    add(
        "run" if id.startswith("run") else id.split("-")[0].replace("space", "spaces"),
        f"nul-{id}",
        fixed(*args),
        2,
        "NUL",
    )

# --------------------------------------------------------------------------- parity
PTRAIN = ["parity", "train", "runs/s", "--device", "cpu", "--batch-size", "256"]

PEVAL = ["parity", "eval", "runs/s", "--device", "cpu"]
for option in ("--epochs", "--batch-size", "--lr", "--seed", "--joint-epochs"):
    for i, bad in enumerate(["-1", "nan", "inf", "abc", "1e400", "99999999999999999999999"]):
        add("parity", f"train{option}-{i}", fixed(*PTRAIN, option, bad), 2, option)
add("parity", "train-epochs-zero", fixed(*PTRAIN, "--epochs", "0"), 2, "--epochs")
add("parity", "train-lr-zero", fixed(*PTRAIN, "--lr", "0"), 2, "--lr")
for i, bad in enumerate(["../../x", "/tmp/snnas-hostile-parity", ".", "..", "a/b", "a\x00b", HUGE]):
    add("parity", f"train-name-{i}", fixed(*PTRAIN, "--name", bad), 2, "--name")
    add("parity", f"eval-name-{i}", fixed(*PEVAL, "--name", bad), 2, "--name")
add("parity", "train-again", fixed(*PTRAIN, "--epochs", "1"), 1, "--resume")
add("parity", "train-resume-nothing", fixed(*PTRAIN, "--name", "p2", "--resume"), 1, "resume")
add("parity", "train-no-parity-space", fixed(*PTRAIN, "--name", "p2"), 1, "parity.r")
add("parity", "train-missing-run", fixed("parity", "train", "runs/nope"), 1, "nope")
add("parity", "train-run-markup", fixed("parity", "train", MARKUP), 1, MARKUP)
add(
    "parity",
    "train-not-finetuned",
    then(lambda sb: shutil.rmtree(sb.run / "finetune"), args=fixed(*PTRAIN, "--name", "p2")),
    1,
    "best.pt",
)
add(
    "parity",
    "train-space-missing",
    fixed(*PTRAIN, "--name", "p2", "--space", "nope.toml"),
    1,
    "nope.toml",
)
add(
    "parity",
    "train-space-other-network",
    lambda sb: [*PTRAIN, "--name", "p2", "--space", sb.space(("depth = 11", "depth = 20"))],
    1,
    "differs",
)
add(
    "parity",
    "train-supernet-choices",
    lambda sb: [*PTRAIN, "--supernet", "--choices", sb.file("c.json", "{}")],
    2,
    "--choices",
)
add(
    "parity",
    "train-supernet-bad-last",
    then(
        lambda sb: _resave(sb.run / "last.pt", lambda s: _shrink_first_tensor(s["model"])),
        args=lambda sb: [*PTRAIN, "--supernet", "--space", sb.space(), "--epochs", "1"],
    ),
    1,
    "last.pt",
)
CHOICES_BAD = [
    ("binary", b"\xff\xfe", "c.json"),
    ("nan", '{"t0.encode": NaN}', "NaN"),
    ("list", "[]", "c.json"),
    ("markup", json.dumps({MARKUP: 1}), MARKUP),
    ("data-label", json.dumps({"t0.perm": [0, 1, 2, 3]}), "not a parity decision"),
    ("encode-150", json.dumps({"t0.encode": 150}), "t0.encode"),
    ("encoder-bogus", json.dumps({"encoder": "bogus"}), "bogus"),
    ("duplicate", '{"t0.encode": 0, "t0.encode": 50}', "twice"),
]
for id, content, needle in CHOICES_BAD:
    add(
        "parity",
        f"train-choices-{id}",
        lambda sb, c=content: [
            *PTRAIN,
            "--name",
            "p2",
            "--space",
            sb.space(),
            "--choices",
            sb.file("c.json", c),
        ],
        1,
        needle,
    )
LAST_BAD = [
    ("wrong-keys", lambda s: s.pop("optimizer"), "last.pt"),
    ("epoch-string", lambda s: s.update({"epoch": "x"}), "last.pt"),
    ("epoch-huge", lambda s: s.update({"epoch": 10**6}), "last.pt"),
    ("model-shapes", lambda s: _shrink_first_tensor(s["model"]), "last.pt"),
    ("model-nan", lambda s: _nan_first_tensor(s["model"]), "last.pt"),
    ("config-list", lambda s: s.update({"config": [1]}), "last.pt"),
    ("metrics-bogus", lambda s: s.update({"metrics": "x"}), "last.pt"),
]
for id, edit, needle in LAST_BAD:
    add(
        "parity",
        f"train-resume-{id}",
        then(
            lambda sb, e=edit: _resave(sb.run / "parity" / "last.pt", e),
            args=lambda sb: [*PTRAIN, "--space", sb.space(), "--epochs", "2", "--resume"],
        ),
        1,
        needle,
    )
for i, bad in enumerate(["-1", "nan", "abc", "99999999999999999999999"]):
    add(
        "parity",
        f"eval-backup-epochs-{i}",
        fixed(*PEVAL, "--backup-epochs", bad),
        2,
        "--backup-epochs",
    )
add("parity", "eval-no-parity", fixed(*PEVAL, "--name", "nope"), 1, "nope")
add("parity", "eval-missing-run", fixed("parity", "eval", "runs/nope"), 1, "nope")
PARITY_RUN_BAD = [
    ("config-list", "config.json", lambda p: p.write_text("[]"), "config.json"),
    (
        "config-no-policy",
        "config.json",
        lambda p: p.write_text(
            json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != "policy"})
        ),
        "config.json",
    ),
    (
        "config-bad-policy",
        "config.json",
        lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "policy": {"x": 1}})),
        "config.json",
    ),
    (
        "config-space-markup",
        "config.json",
        lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "space_toml": MARKUP})),
        "config.json",
    ),
    (
        "best-shapes",
        "best.pt",
        lambda p: _resave(p, lambda s: _shrink_first_tensor(s["model"])),
        "best.pt",
    ),
    (
        "best-nan",
        "best.pt",
        lambda p: _resave(p, lambda s: _nan_first_tensor(s["model"])),
        "best.pt",
    ),
    ("best-no-model", "best.pt", lambda p: _resave(p, lambda s: s.pop("model")), "best.pt"),
    ("best-folder", "best.pt", lambda p: (p.unlink(), p.mkdir()), "best.pt"),
    ("eval-json-link", "eval.json", lambda p: p.symlink_to(p.parent / "final.json"), "eval.json"),
]
for id, name, edit, needle in PARITY_RUN_BAD:
    add(
        "parity",
        f"eval-{id}",
        then(
            lambda sb, n=name, e=edit: e(sb.run / "parity" / n),
            args=fixed(*PEVAL, "--backup-epochs", "1"),
        ),
        1,
        needle,
    )

# --------------------------------------------------------------------------- compare
STOP = ["--dataset", "cifar10", "--data-dir", "no-such-folder"]


def compare(*extra: str) -> Callable[[Sandbox], list[str]]:
    return lambda sb: ["compare", sb.space(base=SMALL_TOML), *extra, *STOP]


for i, bad in enumerate(
    ["", ",", "bogus", "penalized,penalized", "penalized,,pareto", MARKUP, "PENALIZED", HUGE]
):
    add("compare", f"rewards-{i}", compare("--rewards", bad), 2, "--rewards")
for option in ("--reference", "--seeds"):
    for i, bad in enumerate(["0", "-1", "nan", "inf", "abc", "1e400", "10000000"]):
        add("compare", f"{option}-{i}", compare(option, bad), 2, option)
add("compare", "reference-9", compare("--reference", "9"), 2, "--reference")
add("compare", "rewards-good", compare("--rewards", "accuracy,pareto"), 1, "cifar10")

# --------------------------------------------------------------------------- parity spaces
FIXED_MIRROR = 'choices = ["sum"]\nfixed = "mirror"'
GOOD_PARITY_POLICY = {
    **{f"t{p}.perm": [1, 0, 3, 2] for p in range(3)},
    **{f"t{p}.sparsity": 75.0 for p in range(3)},
    **{f"t{p}.dtype": "float16" for p in range(3)},
    **{f"t{p}.encode": 50 for p in range(3)},
    "encoder": "sum",
}
PARITY_SPACES_BAD = [
    ("r-negative", ("r = 1", "r = -1"), "parity.r"),
    ("r-too-many", ("r = 1", "r = 5"), "parity.r"),
    ("r-string", ("r = 1", 'r = "1"'), "parity.r"),
    ("r-float", ("r = 1", "r = 1.5"), "parity.r"),
    ("r-nan", ("r = 1", "r = nan"), "parity.r"),
    ("r-huge", ("r = 1", "r = 99999999999999999999"), "parity"),
    ("scale-zero", ("r = 1", "r = 1\nbottleneck_scale = 0"), "bottleneck_scale"),
    ("scale-huge", ("r = 1", "r = 1\nbottleneck_scale = 1000000"), "bottleneck_scale"),
    ("unknown-key", ("r = 1", "r = 1\nk = 2"), "k"),
    ("markup-key", ("r = 1", f'r = 1\n"{MARKUP}" = 2'), MARKUP),
    ("parity-array", ("[parity]\nr = 1", "parity = [1]"), "parity"),
    ("r0-with-decisions", ("r = 1", "r = 0"), "parity.r"),
    ("encode-empty", ("values = [0, 50, 100]", "values = []"), "decisions.encode.values"),
    ("encode-nan", ("values = [0, 50, 100]", "values = [nan]"), "decisions.encode.values"),
    ("encode-inf", ("values = [0, 50, 100]", "values = [inf]"), "decisions.encode.values"),
    ("encode-101", ("values = [0, 50, 100]", "values = [101]"), "decisions.encode.values"),
    ("encode-negative", ("values = [0, 50, 100]", "values = [-1]"), "decisions.encode.values"),
    ("encode-string", ("values = [0, 50, 100]", 'values = ["50"]'), "decisions.encode.values"),
    ("encode-bool", ("values = [0, 50, 100]", "values = [true]"), "decisions.encode.values"),
    ("encode-many", ("values = [0, 50, 100]", f"values = {list(range(102))}"), "values"),
    ("encode-table", ("values = [0, 50, 100]", "values = {a = 1}"), "decisions.encode.values"),
    ("encode-fixed-150", ("values = [0, 50, 100]", "fixed = 150"), "decisions.encode.fixed"),
    ("encode-tie-string", ("values = [0, 50, 100]", 'values = [0]\ntie = "yes"'), "tie"),
    ("encode-unknown", ("values = [0, 50, 100]", "values = [0]\nlevels = 3"), "levels"),
    ("encoder-bogus", ('choices = ["sum", "concat"]', 'choices = ["bogus"]'), "bogus"),
    (
        "encoder-markup",
        ('choices = ["sum", "concat"]', f"choices = [{json.dumps(MARKUP)}]"),
        MARKUP,
    ),
    ("encoder-empty", ('choices = ["sum", "concat"]', "choices = []"), "encoder"),
    ("encoder-dup", ('choices = ["sum", "concat"]', 'choices = ["sum", "sum"]'), "distinct"),
    ("encoder-int", ('choices = ["sum", "concat"]', "choices = [1]"), "encoder"),
    ("encoder-fixed-bogus", ('choices = ["sum", "concat"]', 'fixed = "bogus"'), "fixed"),
    ("encoder-fixed-int", ('choices = ["sum", "concat"]', "fixed = 3"), "fixed"),
    ("encoder-huge", ('choices = ["sum", "concat"]', f"choices = {json.dumps([HUGE])}"), "encoder"),
]
for id, edit, needle in PARITY_SPACES_BAD:
    add("spaces", f"show-{id}", lambda sb, e=edit: ["space", "show", sb.space(e)], 1, needle)
    add(
        "spaces",
        f"cost-{id}",
        lambda sb, e=edit: [
            "cost",
            sb.space(e),
            "--policy",
            sb.file("p.json", json.dumps(GOOD_PARITY_POLICY)),
        ],
        1,
        needle,
    )
add("spaces", "show-good", lambda sb: ["space", "show", sb.space()], 0, "encode")
add("spaces", "show-good-json", lambda sb: ["space", "show", sb.space(), "--json"], 0, "encode")
add(
    "spaces",
    "show-quickstart-parity",
    lambda sb: ["space", "show", str(SPACES / "quickstart_parity.toml")],
    0,
)
add(
    "spaces",
    "encoder-fixed-outside-choices",
    lambda sb: ["space", "show", sb.space(('choices = ["sum", "concat"]', FIXED_MIRROR))],
    1,
    "decisions.encoder.fixed",
    "not both",
)
COST_POLICIES = [
    ("good", GOOD_PARITY_POLICY, 0, ""),
    ("encode-nan", '{"t0.encode": NaN}', 1, "NaN"),
    ("encode-150", {**GOOD_PARITY_POLICY, "t0.encode": 150}, 1, "t0.encode"),
    ("encode-string", {**GOOD_PARITY_POLICY, "t0.encode": "50"}, 1, "t0.encode"),
    ("encode-bool", {**GOOD_PARITY_POLICY, "t0.encode": True}, 1, "t0.encode"),
    ("encoder-bogus", {**GOOD_PARITY_POLICY, "encoder": "bogus"}, 1, "bogus"),
    ("encoder-markup", {**GOOD_PARITY_POLICY, "encoder": MARKUP}, 1, MARKUP),
    (
        "encoder-missing",
        {k: v for k, v in GOOD_PARITY_POLICY.items() if k != "encoder"},
        1,
        "encoder",
    ),
    ("encoder-per-point", {**GOOD_PARITY_POLICY, "t0.encoder": "sum"}, 1, "t0.encoder"),
]
for id, policy, code, needle in COST_POLICIES:
    add(
        "spaces",
        f"cost-policy-{id}",
        lambda sb, p=policy: [
            "cost",
            sb.space(),
            "--policy",
            sb.file("p.json", p if isinstance(p, str) else json.dumps(p)),
        ],
        code,
        needle,
    )


@pytest.mark.parametrize("item", CASES, ids=[f"{c.cls}-{c.id}" for c in CASES])
def test_hostile_deploy(tmp_path, pipeline, item: Case):
    sandbox = Sandbox(tmp_path, pipeline)
    args = item.build(sandbox)
    outcome = invoke(tmp_path, args, runs=sandbox.runs)
    assert outcome.code == item.code, (args, outcome)
    said = outcome.error if item.code else outcome.stdout
    for needle in item.needles:
        assert needle in said, (needle, said)


@pytest.mark.parametrize(
    "argv, code, needle", [c[1:] for c in RUNTIME_CASES], ids=[c[0] for c in RUNTIME_CASES]
)
def test_hostile_runtime_module(tmp_path, pipeline, capsys, argv, code, needle):
    """``python -m snnas.runtime`` (what torchrun starts): one line and exit code 2 for a bad
    argument, 1 for a failure, within its join timeout; nothing written outside the runs."""
    from snnas.runtime._worker import main

    sandbox = Sandbox(tmp_path, pipeline)
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(SystemExit) as exit:
            main([str(sandbox.plan), *argv])
    finally:
        os.chdir(here)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit.value.code == code, (argv, err)
    assert err and err[-1].startswith("error: ") and needle in err[-1], err
    assert not [line for line in err if "Traceback" in line], err
    assert not Path("/tmp/snnas-hostile-rt").exists()
    assert not (sandbox.runs.parent / "x").exists()


#: Cases per class (reported in the closing note of issue 8).
CLASSES = {
    cls: sum(1 for c in CASES if c.cls == cls) for cls in dict.fromkeys(c.cls for c in CASES)
}


def test_the_pass_covers_every_new_command():
    assert set(CLASSES) == {"finetune", "export", "verify", "run", "parity", "compare", "spaces"}
    assert len(CASES) + len(RUNTIME_CASES) >= 400, CLASSES
