"""Run folders: names that cannot escape, files never written through links, checkpoints and
JSON-lines files refused (or recovered) with the reason."""

import os

import pytest
import torch

from snnas._io import atomic_write_json, atomic_write_text
from snnas._run import (
    MAX_RUN_NAME,
    RunDir,
    check_state,
    load_module_state,
    load_optimizer_state,
    resolve_run,
)
from snnas.errors import CheckpointError, SnnasError, UsageError


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../x",
        "../../x",
        "a/b",
        "a\\b",
        "/abs/path",
        ".hidden",
        "nul\x00name",
        "new\nline",
        "esc\x1b[2J",
        "x" * (MAX_RUN_NAME + 1),
        "é" * 128 + "é",  # 129 characters
    ],
)
def test_bad_run_names_are_usage_errors(tmp_path, name):
    with pytest.raises(UsageError, match="--name: expected a folder name"):
        resolve_run(tmp_path / "runs", name)
    assert not any((tmp_path).iterdir())  # nothing created anywhere


@pytest.mark.parametrize(
    "name", ["quickstart", "search-tiny-optuna-tpe-s0", "my run", "-x", "a..b"]
)
def test_good_run_names_stay_inside(tmp_path, name):
    assert resolve_run(tmp_path, name) == tmp_path / name


def test_a_run_folder_linking_outside_is_refused(tmp_path):
    runs, outside = tmp_path / "runs", tmp_path / "outside"
    runs.mkdir()
    outside.mkdir()
    (runs / "r").symlink_to(outside)
    with pytest.raises(UsageError, match="a run folder inside"):
        resolve_run(runs, "r")
    (runs / "loop").symlink_to(runs / "loop")
    with pytest.raises(UsageError, match="a run folder inside"):
        resolve_run(runs, "loop")


def test_atomic_writes_refuse_symbolic_links(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "report.json"
    link.symlink_to(victim)
    with pytest.raises(SnnasError, match="symbolic link; refusing to replace it"):
        atomic_write_json(link, {"a": 1})
    assert victim.read_text() == "precious" and link.is_symlink()
    (tmp_path / "folder").mkdir()
    with pytest.raises(SnnasError, match="folder or a special file"):
        atomic_write_text(tmp_path / "folder", "x")
    atomic_write_json(tmp_path / "new.json", {"nan": float("nan")})
    assert (tmp_path / "new.json").read_text() == '{\n  "nan": null\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "folder",
        "new.json",
        "report.json",
        "victim.txt",
    ]  # no temporary file left behind


def test_torn_last_jsonl_line_is_dropped_other_corruption_refused(tmp_path, caplog):
    run = RunDir(tmp_path)
    run.write_jsonl("e.jsonl", [{"a": 1}, {"a": 2}])
    good = (tmp_path / "e.jsonl").read_text()
    (tmp_path / "e.jsonl").write_text(good + '{"a": 3, "b')  # a crash cut the last line
    with caplog.at_level("DEBUG", logger="snnas"):
        assert run.read_jsonl("e.jsonl") == [{"a": 1}, {"a": 2}]
    assert "torn last line" in caplog.text and "e.jsonl:3" in caplog.text
    (tmp_path / "e.jsonl").write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(CheckpointError, match=r"e\.jsonl:2: not a JSON record"):
        run.read_jsonl("e.jsonl")
    (tmp_path / "e.jsonl").write_text('{"a": 1}\n{"a": x}\n')  # complete line, bad JSON
    with pytest.raises(CheckpointError, match=r"e\.jsonl:2: not a JSON record"):
        run.read_jsonl("e.jsonl")
    (tmp_path / "e.jsonl").write_text('{"a": 1}\n[1]\n')
    with pytest.raises(CheckpointError, match=r"e\.jsonl:2: not a JSON object"):
        run.read_jsonl("e.jsonl", keys={"a": int})
    (tmp_path / "e.jsonl").write_text('{"a": 1}\n{"b": 1}\n')
    with pytest.raises(CheckpointError, match=r"e\.jsonl:2: corrupt checkpoint \(no 'a' entry\)"):
        run.read_jsonl("e.jsonl", keys={"a": int})
    assert run.read_jsonl("missing.jsonl") == []


def _run_with(tmp_path, make):
    run = RunDir(tmp_path / "r")
    run.create()
    make(run / "last.pt")
    return run


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: p.symlink_to(p), "is a symbolic link"),
        (lambda p: p.symlink_to(p.parent / "elsewhere.pt"), "is a symbolic link"),
        (lambda p: os.mkfifo(p), "pipe, socket or device"),
        (lambda p: p.write_bytes(b""), "corrupt checkpoint"),
        (lambda p: p.write_bytes(b"\x80\x02garbage"), "corrupt checkpoint"),
        (lambda p: p.write_bytes(b"j"), "corrupt checkpoint"),  # torch: struct.error
    ],
)
def test_unusable_checkpoints_are_refused_with_the_reason(tmp_path, make, reason):
    run = _run_with(tmp_path, make)
    assert run.has_checkpoint("last.pt")  # something is there: a run never starts over it
    with pytest.raises(CheckpointError, match=reason):
        run.load_checkpoint("last.pt")
    with pytest.raises(CheckpointError, match="already holds a run"):
        run.check_resume("last.pt", resume=False)


def test_unreadable_checkpoint(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    run = _run_with(tmp_path, lambda p: p.write_bytes(b"x"))
    (run / "last.pt").chmod(0)
    with pytest.raises(CheckpointError, match="unreadable"):
        run.load_checkpoint("last.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_code_is_refused_without_torch_advice(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    run = RunDir(tmp_path / "r")
    run.create()
    torch.save({"format": "snnas-checkpoint-v1", "x": evil}, run / "last.pt")
    with pytest.raises(CheckpointError) as info:
        run.load_checkpoint("last.pt")
    assert not marker.exists()
    assert "weights_only" not in str(info.value) and "corrupt checkpoint" in str(info.value)


def test_check_resume(tmp_path):
    run = RunDir(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="no run to resume \\(no such folder\\)"):
        run.check_resume("last.pt", resume=True)
    run.create()
    with pytest.raises(CheckpointError, match=r"no checkpoint \(last.pt\) to resume from"):
        run.check_resume("last.pt", resume=True)
    run.check_resume("last.pt", resume=False)


def test_check_state_and_module_state(tmp_path):
    check_state("c.pt", {"epoch": 3, "m": {}}, {"epoch": int, "m": dict})
    with pytest.raises(CheckpointError, match="no 'epoch' entry"):
        check_state("c.pt", {}, {"epoch": int})
    with pytest.raises(CheckpointError, match="'epoch' should be an integer, found a boolean"):
        check_state("c.pt", {"epoch": True}, {"epoch": int})
    with pytest.raises(CheckpointError, match="'lr' should be a finite number, found nan"):
        check_state("c.pt", {"lr": float("nan")}, {"lr": float})
    model = torch.nn.Linear(3, 2)
    state = model.state_dict()
    load_module_state(model, state, "c.pt")
    with pytest.raises(CheckpointError, match=r"weight: \(2, 4\) torch.float32 saved, \(2, 3\)"):
        load_module_state(model, {**state, "weight": torch.zeros(2, 4)}, "c.pt")
    with pytest.raises(CheckpointError, match="1 missing and 0 unexpected tensors; missing 'bias'"):
        load_module_state(model, {"weight": state["weight"]}, "c.pt")
    with pytest.raises(CheckpointError, match="entry 'bias' is a string"):
        load_module_state(model, {**state, "bias": "x"}, "c.pt")
    with pytest.raises(CheckpointError, match="model is an array"):
        load_module_state(model, [1], "c.pt")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    other = torch.optim.SGD(torch.nn.Linear(5, 5, bias=False).parameters(), lr=0.1)
    other.param_groups[0]["params"] = [0]  # one parameter where there are two
    with pytest.raises(CheckpointError, match="optimizer state does not match"):
        load_optimizer_state(optimizer, other.state_dict(), "c.pt")
    with pytest.raises(CheckpointError, match="optimizer state is not one"):
        load_optimizer_state(optimizer, {"x": 1}, "c.pt")
