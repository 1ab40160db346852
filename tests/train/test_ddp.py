"""Data-parallel training (issue 16, section 3): two gloo processes on the CPU train the
same supernet as one process on the same global batches, and write one run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snnas._run import RunDir
from snnas.train import Accelerator, default_config, train
from tests.conftest import ROOT, TINY_SPACE

CPU = Accelerator.pick("cpu")
#: The largest difference allowed between any weight or buffer of the 2-process supernet and
#: the 1-process one after one epoch (10 steps at lr 0.01; measured 4e-7). Not bit-identical:
#: the batch-norm statistics of the global batch are sums over two shards, in another order
#: than one process's. At the default lr 0.1 the first steps of a fresh supernet amplify
#: those last bits (measured: 5e-7 after 1 step, 2e-5 after 4, 2.8e-2 after 10; see
#: docs/supernet.md), so the equivalence is checked where SGD does not amplify them.
TOLERANCE = 1e-5
LR = 0.01
ARGS = ["--epochs", "1", "--batch-size", "128", "--lr", str(LR), "--eval-policies", "2",
        "--device", "cpu"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(runs: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "snnas", "train", str(TINY_SPACE), *ARGS, "--runs-dir", str(runs),
        "--name", name, *extra,
    ]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """``torchrun --nproc-per-node 2 -m snnas train tests/tiny.toml`` (1 epoch)."""
    runs = tmp_path_factory.mktemp("ddp")
    done = _torchrun(runs, "two")
    assert done.returncode == 0, done.stderr[-3000:]
    return runs, done


def test_two_processes_train_the_one_process_supernet(two, tmp_path, space, digits):
    runs, _ = two
    config = default_config("supernet", "digits", epochs=1, batch_size=128, eval_policies=2, lr=LR)
    train(space, digits, config, RunDir(tmp_path / "one"), accel=CPU)
    both = RunDir(runs / "two").load_checkpoint("last.pt")
    one = RunDir(tmp_path / "one").load_checkpoint("last.pt")
    assert both["model"].keys() == one["model"].keys()
    worst = max(
        float((both["model"][k].double() - one["model"][k].double()).abs().max())
        for k in one["model"]
    )
    assert worst < TOLERANCE, worst
    (a,), (b,) = both["metrics"], one["metrics"]
    assert (a["world_size"], b["world_size"]) == (2, 1)
    assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
    # Every image of the epoch counted once, over both shards.
    assert round(a["train_acc"] * 1257) == pytest.approx(round(b["train_acc"] * 1257), abs=3)


def test_rank_0_alone_writes_one_run_and_prints(two):
    runs, done = two
    assert [p.name for p in runs.iterdir()] == ["two"]
    run = RunDir(runs / "two")
    assert run.read_json("config.json")["world_size"] == 2
    assert run.read_json("final.json")["world_size"] == 2
    assert done.stdout.count("training supernet on tiny") == 1
    assert done.stdout.count("world_size: 2") == 1


def test_resume_with_another_number_of_processes(two, tmp_path, space, digits):
    """The global batch and its order do not depend on the processes: a 2-process run
    resumes with 1 process (and records it)."""
    runs, _ = two
    config = default_config("supernet", "digits", epochs=2, batch_size=128, eval_policies=2, lr=LR)
    run = RunDir(tmp_path / "two")
    run.create()
    (run / "last.pt").write_bytes((runs / "two" / "last.pt").read_bytes())
    result = train(space, digits, config, run, accel=CPU, resume=True)
    assert [m["world_size"] for m in run.read_jsonl("metrics.jsonl")] == [2, 1]
    assert result.metrics["world_size"] == 1 and run.read_json("config.json")["world_size"] == 1


def test_a_batch_smaller_than_the_processes_is_refused(tmp_path):
    done = _torchrun(tmp_path, "small", "--batch-size", "1")
    assert done.returncode != 0
    # One line from each rank (torchrun then adds its own report of the failed children).
    line = "error: --batch-size: expected at least one image per process (2 processes)"
    assert done.stderr.count(line) == 2, done.stderr[-2000:]
    assert not (tmp_path / "small").exists()


def test_a_process_group_of_one_changes_nothing(tmp_path, space, digits, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    config = default_config("supernet", "digits", epochs=1, batch_size=128, eval_policies=2, lr=LR)
    result = train(space, digits, config, RunDir(tmp_path / "r"), accel=CPU)
    assert result.metrics["world_size"] == 1 and not torch.distributed.is_initialized()


SEARCH_SETS = [
    "search.iterations=2", "search.train_steps=3", "search.strategy_steps=2",
    "search.samples=2", "search.topk=2", "search.rescore=3", "search.batch_size=64",
    "search.lr=0.01",
]  # fmt: skip


def test_the_search_shared_weight_phase_runs_on_two_processes(tmp_path, space, digits):
    """``torchrun --nproc-per-node 2 -m snnas search``: one run, the same policies (random
    search draws them from its seed alone) and the same shared weights as one process."""
    from snnas.search import load_search_config, run_search

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    sets = [a for s in SEARCH_SETS for a in ("--set", s)]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "snnas", "search", str(TINY_SPACE), "--strategy", "random", *sets,
        "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), "--name", "two",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["two"]
    assert done.stdout.count("best policy:") == 1
    two = RunDir(tmp_path / "runs" / "two")
    assert two.read_json("config.json")["world_size"] == 2
    config = load_search_config("digits", None, SEARCH_SETS)
    run_search(space, digits, config, "random", RunDir(tmp_path / "one"), accel=CPU)
    one = RunDir(tmp_path / "one")
    a, b = two.read_jsonl("events.jsonl"), one.read_jsonl("events.jsonl")
    assert [e["policy"] for e in a] == [e["policy"] for e in b]
    wa, wb = two.load_checkpoint("last.pt")["model"], one.load_checkpoint("last.pt")["model"]
    worst = max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wb)
    assert worst < TOLERANCE, worst
    la, lb = two.read_jsonl("iterations.jsonl"), one.read_jsonl("iterations.jsonl")
    assert [r["train_loss"] for r in la] == pytest.approx([r["train_loss"] for r in lb], abs=1e-6)


def test_fine_tuning_runs_on_two_processes(tmp_path, space, digits):
    """``torchrun --nproc-per-node 2 -m snnas finetune RUN``: one fine-tuning written, whose
    weights match the 1-process fine-tuning of the same search."""
    import shutil

    from snnas.search import load_search_config, run_search
    from snnas.search._artifacts import load_search_run
    from snnas.train._finetune import FinetuneConfig, finetune

    config = load_search_config("digits", None, SEARCH_SETS[:1] + SEARCH_SETS[2:])
    run_search(space, digits, config, "random", RunDir(tmp_path / "runs" / "s"), accel=CPU)
    shutil.copytree(tmp_path / "runs" / "s", tmp_path / "one")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "snnas", "finetune", "s", "--epochs", "1", "--lr", "0.01", "--batch-size",
        "128", "--device", "cpu", "--runs-dir", str(tmp_path / "runs"),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("validation accuracy") == 1
    two = RunDir(tmp_path / "runs" / "s" / "finetune")
    assert two.read_json("final.json")["world_size"] == 2
    search = load_search_run(RunDir(tmp_path / "one"))
    ft = FinetuneConfig(epochs=1, lr=0.01, batch_size=128)
    one = RunDir(tmp_path / "one" / "finetune")
    finetune(search.space, digits, search.policy, search.weights, ft, one, accel=CPU)
    wa, wb = two.load_checkpoint("last.pt")["model"], one.load_checkpoint("last.pt")["model"]
    worst = max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wb)
    assert worst < TOLERANCE, worst
    assert two.read_json("final.json")["val_acc"] == one.read_json("final.json")["val_acc"]
