"""Hostile cache of ``snnas parity eval``'s baselines (RUN/parity-baselines.json): a damaged
file or entry is never trusted (the baselines are computed again and the entry rewritten),
and a link in its place is refused without anything written through it."""

from __future__ import annotations

import json
import math

import pytest

from snnas._run import RunDir
from snnas.errors import CheckpointError
from snnas.models.parity import CodedNetwork, ParityStreams
from snnas.train._finetuned import load_finetuned
from snnas.train._parity import ParityTrainConfig, train_parity
from snnas.train._parity_report import BASELINE_CACHE, parity_eval
from tests.train.parity_fixture import CPU, make_finetuned_run, small_digits


@pytest.fixture(scope="module")
def data(digits):
    return small_digits(digits, train=128, evaluate=48)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cache") / "run"
    make_finetuned_run(path, data)
    base = load_finetuned(path)
    run = RunDir(path / "parity")
    net = CodedNetwork(base, ParityStreams(base.space))
    train_parity(net, data, ParityTrainConfig(epochs=1, batch_size=64), run, accel=CPU)
    first = parity_eval(base, run, data, CPU, backup_epochs=1)
    return path, base, run, first


def _entry(path):
    cache = json.loads((path / BASELINE_CACHE).read_text())
    ((key, entry),) = cache["entries"].items()
    return cache, key, entry


def _damage(how):
    def write(path):
        cache, _key, entry = _entry(path)
        figures = entry["baselines"]
        if how == "text":
            (path / BASELINE_CACHE).write_text("not json {")
            return
        if how == "list":
            (path / BASELINE_CACHE).write_text("[1, 2]")
            return
        if how == "huge file":
            (path / BASELINE_CACHE).write_text(json.dumps(cache) + " " * (17 << 20))
            return
        if how == "nan":
            text = json.dumps(cache).replace(str(figures["none"]["degraded_acc"]), "NaN", 1)
            (path / BASELINE_CACHE).write_text(text)
            return
        if how == "string":
            figures["none"]["degraded_acc"] = "0.9"
        elif how == "bool":
            figures["impute"]["extra_bytes"] = True
        elif how == "huge":
            figures["backup"]["degraded_by_device"] = [1e400, 0.5]
        elif how == "unknown method":
            figures["oracle"] = dict(figures["none"])
        elif how == "not a dict":
            figures["none"] = [1, 2, 3]
        elif how == "no overall":
            del figures["replicate"]["overall"]
        elif how == "entries list":
            cache["entries"] = [entry]
        elif how == "no baselines":
            entry["baselines"] = {}
        elif how == "a method short":
            del figures["backup"]
        elif how == "a parity entry":
            figures["parity"] = dict(figures["none"])
        elif how == "empty overall":
            figures["none"]["overall"] = {}
        elif how == "scalar by device":
            figures["none"]["degraded_by_device"] = 0.5
        elif how == "short by device":
            figures["none"]["degraded_by_device"] = figures["none"]["degraded_by_device"][:-1]
        elif how == "ragged by position":
            figures["impute"]["degraded_by_position"][1] = [0.5]
        elif how == "accuracy above one":
            figures["none"]["degraded_acc"] = 7.0
        elif how == "negative bytes":
            figures["replicate"]["extra_bytes"] = -1
        elif how == "huge integer":
            figures["replicate"]["extra_flops"] = 10**400
        elif how == "deep":
            figures["none"]["degraded_by_position"] = "DEEP"
            text = json.dumps(cache).replace('"DEEP"', "[" * 5000 + "]" * 5000)
            (path / BASELINE_CACHE).write_text(text)
            return
        (path / BASELINE_CACHE).write_text(json.dumps(cache))

    return write


@pytest.mark.parametrize(
    "how",
    ["text", "list", "nan", "string", "bool", "huge", "unknown method", "not a dict",
     "no overall", "entries list", "no baselines", "a method short", "a parity entry",
     "empty overall", "scalar by device", "short by device", "ragged by position",
     "accuracy above one", "negative bytes", "huge integer", "deep", "huge file"],
)  # fmt: skip
def test_a_damaged_cache_is_computed_again(evaluated, data, how):
    path, base, run, first = evaluated
    _damage(how)(path)
    again = parity_eval(base, run, data, CPU, backup_epochs=1)
    assert not again["baselines_reused"]
    assert again["baselines"] == first["baselines"]
    _, _, entry = _entry(path)  # rewritten whole
    assert entry["baselines"] == first["baselines"]
    assert all(math.isfinite(f["degraded_acc"]) for f in entry["baselines"].values())
    assert parity_eval(base, run, data, CPU, backup_epochs=1)["baselines_reused"]


def test_a_folder_in_place_of_the_cache_is_refused_before_any_work(evaluated, data, monkeypatch):
    import snnas.train._parity_report as report

    path, base, run, _ = evaluated
    saved = (path / BASELINE_CACHE).read_text()
    (path / BASELINE_CACHE).unlink()
    (path / BASELINE_CACHE).mkdir()
    monkeypatch.setattr(report, "degraded_report", None)  # any work would fail otherwise
    try:
        with pytest.raises(CheckpointError, match="not a regular file"):
            parity_eval(base, run, data, CPU, backup_epochs=1)
    finally:
        (path / BASELINE_CACHE).rmdir()
        (path / BASELINE_CACHE).write_text(saved)


def test_a_link_in_place_of_the_cache_is_refused(evaluated, data, tmp_path):
    path, base, run, _ = evaluated
    outside = tmp_path / "outside.json"
    outside.write_text('{"mine": true}')
    saved = (path / BASELINE_CACHE).read_text()
    (path / BASELINE_CACHE).unlink()
    (path / BASELINE_CACHE).symlink_to(outside)
    try:
        with pytest.raises(CheckpointError, match="not a regular file"):
            parity_eval(base, run, data, CPU, backup_epochs=1)
        assert outside.read_text() == '{"mine": true}'
    finally:
        (path / BASELINE_CACHE).unlink()
        (path / BASELINE_CACHE).write_text(saved)
