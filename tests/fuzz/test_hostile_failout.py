"""A hostile pass over failout (issue 15, section 4): ``snnas parity train --method failout``
and its options, ``--base`` (failout + parity), ``parity eval``'s ``--failout`` and
``--failout-parity``, and the failout folder's files.

One real pipeline is built once (a fine-tuned run in ``snnas finetune``'s format, then
``parity train --method failout``, ``parity train`` and ``parity train --base failout``
through the CLI); every case copies it into a fresh sandbox, breaks something, runs the real
CLI in-process and checks, through :func:`tests.fuzz._cli.invoke`, the general promises (exit
code in {0, 1, 2}, no traceback, one error line, nothing written outside the runs folder)
and its own exit code and message words.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from snnas.cli import cli
from tests.fuzz._cli import invoke
from tests.train.parity_fixture import make_finetuned_run, small_digits

MARKUP = "[/bold] [red]x[/red] :smile:"
HUGE = "x" * 5000
FAST = ["--epochs", "1", "--batch-size", "256", "--device", "cpu"]
FAILOUT = ["parity", "train", "runs/s", "--method", "failout", "--device", "cpu"]
TRAIN = ["parity", "train", "runs/s", "--device", "cpu"]
EVAL = ["parity", "eval", "runs/s", "--device", "cpu", "--backup-epochs", "1"]


def _cli(cwd: Path, args: list[str]) -> None:
    here = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    finally:
        os.chdir(here)
    assert result.exit_code == 0, (args, result.output)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, digits) -> Path:
    """``runs/s``: fine-tuned, with ``failout``, ``parity`` and ``parity-failout`` folders."""
    root = tmp_path_factory.mktemp("failout-pipeline")
    run = root / "runs" / "s"
    make_finetuned_run(run, small_digits(digits), epochs=1)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "dataset": "digits"}))
    _cli(root, [*FAILOUT, *FAST])
    _cli(root, [*TRAIN, *FAST])
    _cli(root, [*TRAIN, *FAST, "--base", "failout"])
    return root / "runs"


class Sandbox:
    """A copy of the pipeline's runs folder and a folder of input files (``in``)."""

    def __init__(self, root: Path, runs: Path) -> None:
        self.root = root
        self.runs = root / "runs"
        shutil.copytree(runs, self.runs, symlinks=True)
        self.run = self.runs / "s"
        self.failout = self.run / "failout"
        self.inputs = root / "in"
        self.inputs.mkdir()


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Sandbox], list[str]]
    code: int
    needles: tuple[str, ...] = ()


CASES: list[Case] = []


def add(id: str, build: Callable[[Sandbox], list[str]], code: int, *needles: str) -> None:
    CASES.append(Case(id, build, code, needles))


def fixed(*args: str) -> Callable[[Sandbox], list[str]]:
    return lambda sb: list(args)


def then(*steps: Callable[[Sandbox], object], args: Callable[[Sandbox], list[str]]):
    """A build that first breaks the sandbox (``steps``), then gives the arguments."""

    def build(sb: Sandbox) -> list[str]:
        for step in steps:
            step(sb)
        return args(sb)

    return build


def _resave(path: Path, edit: Callable[[dict], object]) -> None:
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


def _edit_json(path: Path, edit: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# --------------------------------------------------------------- options of --method failout
BAD_NUMBERS = ["-1", "nan", "inf", "-inf", "abc", "1e400", "", "0x10", "true"]
for i, bad in enumerate([*BAD_NUMBERS, "0", "1.5", "2"]):
    add(f"rate-{i}", fixed(*FAILOUT, "--name", "f2", "--failout-rate", bad), 2, "--failout-rate")
for option in ("--epochs", "--batch-size", "--lr", "--seed"):
    for i, bad in enumerate([*BAD_NUMBERS, "0" if option != "--seed" else "2147483648"]):
        add(f"{option[2:]}-{i}", fixed(*FAILOUT, "--name", "f2", option, bad), 2, option)
for i, bad in enumerate(["median", "", "MEAN", MARKUP]):
    add(f"standin-{i}", fixed(*FAILOUT, "--name", "f2", "--standin", bad), 2, "--standin")
for i, bad in enumerate(["failout ", "FAILOUT", "dropout", "", MARKUP]):
    add(f"method-{i}", fixed(*TRAIN, "--method", bad), 2, "--method")
# Options of the other method.
for option, extra in (
    ("--joint-epochs", ["1"]),
    ("--label-weight", ["1"]),
    ("--init", ["scratch"]),
    ("--base", ["failout"]),
    ("--supernet", []),
):
    add(f"failout-with{option}", fixed(*FAILOUT, "--name", "f2", option, *extra), 2, option)
add("parity-with-rate", fixed(*TRAIN, "--name", "p2", "--failout-rate", "0.5"), 2, "--failout-rate")
add("parity-with-standin", fixed(*TRAIN, "--name", "p2", "--standin", "zeros"), 2, "--standin")
add("supernet-base", fixed(*TRAIN, "--name", "p2", "--supernet", "--base", "failout"), 2, "--base")
# --train-images (both methods): a seeded subset of the training split.
for i, bad in enumerate([*BAD_NUMBERS, "0", "1.5", "1000000001"]):
    add(f"train-images-{i}", fixed(*FAILOUT, "--name", "f2", "--train-images", bad), 2,
        "--train-images")  # fmt: skip
    add(f"parity-train-images-{i}", fixed(*TRAIN, "--name", "p2", "--train-images", bad), 2,
        "--train-images")  # fmt: skip
add("train-images-above-split", fixed(*FAILOUT, *FAST, "--name", "f2", "--train-images",
    "1000000"), 1, "expected at most", "train examples", "1000000")  # fmt: skip
add("parity-train-images-above-split", fixed(*TRAIN, *FAST, "--name", "p2", "--train-images",
    "1000000"), 1, "expected at most", "train examples")  # fmt: skip
add("resume-other-train-images", fixed(*FAILOUT, *FAST, "--resume", "--train-images", "64"), 1,
    "cannot resume", "train_images")  # fmt: skip
add("dataset-other", fixed(*FAILOUT, "--name", "f2", "--dataset", "cifar10"), 2, "--dataset")

# ------------------------------------------------------------------- names and folders
ESCAPES = ["../../x", "/tmp/snnas-hostile-failout", ".", "..", "a/b", "a\x00b", HUGE]
for i, bad in enumerate(ESCAPES):
    add(f"name-{i}", fixed(*FAILOUT, "--name", bad), 2, "--name")
    add(f"base-{i}", fixed(*TRAIN, "--name", "p2", "--base", bad), 2, "--base")
    add(f"eval-failout-{i}", fixed(*EVAL, "--failout", bad), 2, "--failout")
    add(f"eval-failout-parity-{i}", fixed(*EVAL, "--failout-parity", bad), 2, "--failout-parity")
add("again", fixed(*FAILOUT, *FAST), 1, "--resume")
add("resume-nothing", fixed(*FAILOUT, "--name", "f2", "--resume"), 1, "resume")
add("into-parity-folder", fixed(*FAILOUT, "--name", "parity", "--resume"), 1, "holds a parity run")
add("parity-into-failout", fixed(*TRAIN, "--name", "failout", "--resume"), 1, "holds a failout")
add("into-finetune", fixed(*FAILOUT, "--name", "finetune"), 1, "not a failout run folder")
add("parity-into-finetune", fixed(*TRAIN, "--name", "finetune"), 1, "not a parity run folder")
add("missing-run", fixed("parity", "train", "runs/nope", "--method", "failout"), 1, "nope")
add("run-markup", fixed("parity", "train", MARKUP, "--method", "failout"), 1, MARKUP)
add(
    "not-finetuned",
    then(lambda sb: shutil.rmtree(sb.run / "finetune"), args=fixed(*FAILOUT, "--name", "f2")),
    1,
    "best.pt",
)
add("base-missing", fixed(*TRAIN, "--name", "p2", "--base", "nope"), 1, "no failout run")
add("base-is-parity", fixed(*TRAIN, "--name", "p2", "--base", "parity"), 1, "not a failout run")
add("base-is-finetune", fixed(*TRAIN, "--name", "p2", "--base", "finetune"), 1, "not a failout")
add(
    "resume-other-rate",
    fixed(*FAILOUT, *FAST, "--resume", "--failout-rate", "0.25"),
    1,
    "cannot resume",
    "rate",
)
add(
    "resume-other-standin",
    fixed(*FAILOUT, *FAST, "--resume", "--standin", "zeros"),
    1,
    "cannot resume",
)
add(
    "resume-parity-other-base",
    fixed(*TRAIN, *FAST, "--name", "parity-failout", "--resume"),
    1,
    "cannot resume",
    "base",
)

# ---------------------------------------------------------------- the failout folder's files
add(
    "last-truncated",
    then(
        lambda sb: (sb.failout / "last.pt").write_bytes((sb.failout / "last.pt").read_bytes()[:99]),
        args=fixed(*FAILOUT, *FAST, "--resume"),
    ),
    1,
    "last.pt",
)
add(
    "last-not-failout",
    then(
        lambda sb: _resave(sb.failout / "last.pt", lambda s: s.update(method="parity")),
        args=fixed(*FAILOUT, *FAST, "--resume"),
    ),
    1,
    "not a failout checkpoint",
)
add(
    "last-epoch-beyond",
    then(
        lambda sb: _resave(sb.failout / "last.pt", lambda s: s.update(epoch=7)),
        args=fixed(*FAILOUT, *FAST, "--resume"),
    ),
    1,
    "corrupt checkpoint",
)
add(
    "last-impute-missing",
    then(
        lambda sb: _resave(sb.failout / "last.pt", lambda s: s["impute"].pop("0")),
        args=fixed(*FAILOUT, *FAST, "--resume"),
    ),
    1,
    "imputation constants",
)
add(
    "last-metrics-not-records",
    then(
        lambda sb: _resave(sb.failout / "last.pt", lambda s: s.update(metrics=[1])),
        args=fixed(*FAILOUT, *FAST, "--resume"),
    ),
    1,
    "corrupt checkpoint",
)
add(
    "last-is-a-folder",
    then(
        lambda sb: ((sb.failout / "last.pt").unlink(), (sb.failout / "last.pt").mkdir()),
        args=fixed(*FAILOUT, *FAST, "--resume"),
    ),
    1,
    "last.pt",
)


def _nan_impute(state: dict) -> None:
    state["impute"]["1"] = torch.full_like(state["impute"]["1"], float("nan"))


def _wrong_shape_impute(state: dict) -> None:
    state["impute"]["1"] = state["impute"]["1"][:, :1].clone()


def _other_policy(state: dict) -> None:
    key = next(k for k in state["data_policy"] if k.endswith(".perm"))
    state["data_policy"][key] = list(reversed(state["data_policy"][key]))


for id, edit, needle in (
    ("nan", _nan_impute, "non-finite"),
    ("shape", _wrong_shape_impute, "do not match"),
    ("policy", _other_policy, "another data policy"),
    ("method", lambda s: s.update(method="parity"), "not a failout checkpoint"),
    ("rate", lambda s: s["config"].update(rate=float("nan")), "its config"),
    ("no-model", lambda s: s.pop("model"), "model"),
):
    add(
        f"best-{id}-eval",
        then(lambda sb, e=edit: _resave(sb.failout / "best.pt", e), args=fixed(*EVAL)),
        1,
        needle,
    )
    add(
        f"best-{id}-base",
        then(
            lambda sb, e=edit: _resave(sb.failout / "best.pt", e),
            args=fixed(*TRAIN, *FAST, "--name", "p2", "--base", "failout"),
        ),
        1,
        needle,
    )
add(
    "best-binary",
    then(lambda sb: (sb.failout / "best.pt").write_bytes(b"\xff" * 64), args=fixed(*EVAL)),
    1,
    "best.pt",
)
add(
    "config-not-failout",
    then(
        lambda sb: _edit_json(sb.failout / "config.json", lambda d: d.update(method="x")),
        args=fixed(*EVAL, "--failout", "failout"),
    ),
    1,
    "not a failout run",
)
add(
    "config-nan",
    then(
        lambda sb: (sb.failout / "config.json").write_text('{"method": NaN}'),
        args=fixed(*EVAL),
    ),
    1,
    "config.json",
)
add(
    "config-no-space",
    then(
        lambda sb: _edit_json(sb.failout / "config.json", lambda d: d.pop("space_toml")),
        args=fixed(*EVAL),
    ),
    1,
    "space_toml",
)

# --------------------------------------------------------------------- parity eval's options
add("eval-failout-missing", fixed(*EVAL, "--failout", "nope"), 1, "no such folder")
add("eval-failout-is-parity", fixed(*EVAL, "--failout", "parity-failout"), 1, "not a failout run")
add("eval-failout-parity-missing", fixed(*EVAL, "--failout-parity", "nope"), 1, "no such folder")
add(
    "eval-failout-parity-is-failout",
    fixed(*EVAL, "--failout-parity", "failout"),
    1,
    "holds a failout run",
)
add(
    "eval-failout-parity-itself",
    fixed(*EVAL, "--name", "parity-failout", "--failout-parity", "parity-failout"),
    2,
    "--failout-parity",
)
add(
    "eval-failout-parity-on-fine-tuned",
    fixed(*EVAL, "--name", "parity-failout", "--failout-parity", "parity"),
    1,
    "not trained on a failout network",
)
add("eval-name-failout", fixed(*EVAL, "--name", "failout"), 1, "holds a failout run")
add("eval-dataset-other", fixed(*EVAL, "--dataset", "cifar100"), 2, "--dataset")


@pytest.mark.parametrize("item", CASES, ids=[c.id for c in CASES])
def test_hostile_failout(tmp_path, pipeline, item: Case):
    sandbox = Sandbox(tmp_path, pipeline)
    args = item.build(sandbox)
    outcome = invoke(tmp_path, args, runs=sandbox.runs)
    assert outcome.code == item.code, (args, outcome)
    said = outcome.error if item.code else outcome.stdout
    for needle in item.needles:
        assert needle in said, (needle, said)
    assert not Path("/tmp/snnas-hostile-failout").exists()


def test_the_pass_is_large():
    assert len(CASES) >= 120, len(CASES)
