import json

import pytest
from click.testing import CliRunner

from snnas.cli import cli
from tests.conftest import SMALL_TOML
from tests.train.parity_fixture import PARITY_TOML, make_finetuned_run, small_digits


def test_parity_train_and_eval(tmp_path, digits):
    run = tmp_path / "run"
    make_finetuned_run(run, small_digits(digits), text=SMALL_TOML, epochs=1)
    train = ["parity", "train", str(run), "--epochs", "1", "--batch-size", "256", "--json"]
    # The run's space has no parity device: one line saying what to do.
    refused = CliRunner().invoke(cli, train)
    assert refused.exit_code == 1 and "--space" in refused.output
    space = tmp_path / "p.toml"
    space.write_text(PARITY_TOML)
    choices = tmp_path / "choices.json"
    choices.write_text(json.dumps({"encoder": "sum", "t1.encode": 50}))
    args = [*train, "--space", str(space), "--choices", str(choices)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    final = json.loads(result.output[result.output.index("{") :])
    assert final["epochs"] == 1 and 0.0 <= final["val_degraded_acc"] <= 1.0
    config = json.loads((run / "parity" / "config.json").read_text())
    assert config["policy"]["encoder"] == "sum" and config["policy"]["t1.encode"] == 50.0

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"t0.perm": [0, 1, 2, 3]}))
    wrong = CliRunner().invoke(
        cli, [*train, "--space", str(space), "--choices", str(bad), "--name", "other"]
    )
    assert wrong.exit_code == 1 and "not a parity decision" in wrong.output

    result = CliRunner().invoke(cli, ["parity", "eval", str(run), "--backup-epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{") :])
    assert data["images"] == 360  # the full test split
    assert {"none", "impute", "replicate", "backup"} == set(data["baselines"])
    from snnas.cli._terminal import Terminal
    from snnas.cli.parity import _table

    terminal = Terminal()
    with terminal.out.capture() as captured:
        _table(terminal, data)
    assert "A_degraded" in captured.get() and "replicate" in captured.get()


def test_cost_shows_parity_lines(tmp_path):
    import random

    from snnas.space import space_from_text

    space_file = tmp_path / "p.toml"
    space_file.write_text(PARITY_TOML)
    space = space_from_text(PARITY_TOML)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(space.policy_to_json(space.sample(random.Random(0)))))
    result = CliRunner().invoke(cli, ["cost", str(space_file), "--policy", str(policy), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["parity"]["r"] == 1 and data["parity"]["bytes"] > 0
    table = CliRunner().invoke(cli, ["cost", str(space_file), "--policy", str(policy)])
    assert "parity traffic" in table.output and "parity compute" in table.output
    assert "[bold]" not in table.output  # styles, not markup printed as text


def test_pipeline_search_finetune_parity(tmp_path, write_space):
    """The user's commands on a parity space, in order: search, finetune, parity train,
    parity eval, each reading what the previous one wrote."""
    space = write_space(PARITY_TOML, "parity.toml")
    runs = ["--runs-dir", str(tmp_path / "runs")]
    tiny = ["iterations=1", "train_steps=2", "strategy_steps=0", "samples=2", "rescore=2"]
    sets = [a for s in tiny for a in ("--set", f"search.{s}")]
    search = CliRunner().invoke(
        cli, ["search", str(space), "--strategy", "random", "--name", "p", *runs, *sets]
    )
    assert search.exit_code == 0, search.output
    assert "parity decisions" in search.output and "not scored" in search.output
    tune = CliRunner().invoke(cli, ["finetune", "p", "--epochs", "1", *runs, "--json"])
    assert tune.exit_code == 0, tune.output
    run = str(tmp_path / "runs" / "p")
    train = CliRunner().invoke(
        cli, ["parity", "train", run, "--epochs", "1", "--batch-size", "256", "--json"]
    )
    assert train.exit_code == 0, train.output
    config = json.loads((tmp_path / "runs" / "p" / "parity" / "config.json").read_text())
    # The parity decisions are the most protective, whatever the search sampled.
    assert config["policy"]["encoder"] == "sum"
    assert all(v == 100.0 for k, v in config["policy"].items() if k.endswith(".encode"))
    evaluate = CliRunner().invoke(cli, ["parity", "eval", run, "--backup-epochs", "1", "--json"])
    assert evaluate.exit_code == 0, evaluate.output
    data = json.loads(evaluate.output[evaluate.output.index("{") :])
    tuned = json.loads((tmp_path / "runs" / "p" / "finetune" / "final.json").read_text())
    # Normal operation is the fine-tuned network, exactly: the same test accuracy.
    assert data["available_acc"] == pytest.approx(tuned["test_acc"])
    assert 0.0 <= data["degraded_acc"] <= 1.0 and set(data["overall"]) == {"0.01", "0.05", "0.1"}


def test_export_and_run_a_parity_plan(tmp_path, digits):
    from snnas._run import RunDir

    runs = tmp_path / "runs"
    run = runs / "run"
    make_finetuned_run(run, small_digits(digits), epochs=1)
    RunDir(run / "finetune").write_json(
        "final.json", {"val_acc": 0.5, "test_acc": 0.5, "selected_epoch": 0}
    )
    config = json.loads((run / "config.json").read_text())
    RunDir(run).write_json("config.json", {**config, "dataset": "digits"})
    export = ["export", "run", "--runs-dir", str(runs), "--json"]
    refused = CliRunner().invoke(cli, export)
    assert refused.exit_code == 1
    assert "no parity run" in refused.output and "snnas parity train" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    train = ["parity", "train", str(run), "--epochs", "1", "--batch-size", "256", "--json"]
    assert CliRunner().invoke(cli, train).exit_code == 0
    result = CliRunner().invoke(cli, export)
    assert result.exit_code == 0, result.output
    plan = json.loads((run / "plan" / "plan.json").read_text())
    assert [e["role"] for e in plan["devices"]][-1] == "parity"
    verify = CliRunner().invoke(cli, ["plan", "verify", str(run / "plan"), "--json"])
    assert verify.exit_code == 0, verify.output
    report = json.loads(verify.output[verify.output.index("{") :])
    assert report["passed"] and report["degraded"]["min_top1_agreement"] == 1.0


def test_failout_and_failout_parity_through_the_cli(tmp_path, digits):
    """parity train --method failout, parity train --base failout, then parity eval scores
    all seven methods; options of the other method are usage errors."""
    run = tmp_path / "run"
    make_finetuned_run(run, small_digits(digits), epochs=1)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "dataset": "digits"}))
    fast = ["--epochs", "1", "--batch-size", "256", "--device", "cpu", "--json"]
    failout = CliRunner().invoke(
        cli, ["parity", "train", str(run), "--method", "failout", "--failout-rate", "1", *fast]
    )
    assert failout.exit_code == 0, failout.output
    final = json.loads(failout.output[failout.output.index("{") :])
    assert final["method"] == "failout" and final["rate"] == 1.0 and final["standin"] == "mean"
    assert json.loads((run / "failout" / "config.json").read_text())["method"] == "failout"
    both = CliRunner().invoke(cli, ["parity", "train", str(run), "--base", "failout", *fast])
    assert both.exit_code == 0, both.output
    assert json.loads((run / "parity-failout" / "config.json").read_text())["base"] == "failout"
    plain = CliRunner().invoke(cli, ["parity", "train", str(run), *fast])
    assert plain.exit_code == 0, plain.output

    result = CliRunner().invoke(
        cli, ["parity", "eval", str(run), "--backup-epochs", "1", "--device", "cpu", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{") :])
    assert set(data["baselines"]) == {
        "none", "impute", "replicate", "backup", "failout", "failout+parity"
    }  # fmt: skip
    assert data["dataset"] == "digits"
    assert data["baselines_reused"] is False
    table = CliRunner().invoke(
        cli, ["parity", "eval", str(run), "--backup-epochs", "1", "--device", "cpu"]
    )
    assert table.exit_code == 0, table.output
    for word in ("failout+parity", "avail", "degr", "+dev", "f=10%", "dev 3 lost", "reused"):
        assert word in table.output, word  # the same network: the baselines are reused
    assert json.loads((run / "parity" / "eval.json").read_text())["baselines_reused"] is True

    for args, option in (
        (["--method", "failout", "--joint-epochs", "1"], "--joint-epochs"),
        (["--method", "failout", "--base", "failout"], "--base"),
        (["--method", "failout", "--supernet"], "--supernet"),
        (["--failout-rate", "0.5"], "--failout-rate"),
        (["--standin", "zeros"], "--standin"),
        (["--supernet", "--base", "failout"], "--base"),
        (["--method", "failout", "--failout-rate", "0"], "--failout-rate"),
        (["--method", "failout", "--dataset", "cifar10"], "--dataset"),
    ):
        refused = CliRunner().invoke(cli, ["parity", "train", str(run), *args, "--name", "x"])
        assert refused.exit_code == 2 and option in refused.output, (args, refused.output)
    # A scored parity folder (eval.json, plots, backup.pt) still resumes.
    more = CliRunner().invoke(
        cli, ["parity", "train", str(run), "--resume", *fast[2:], "--epochs", "2"]
    )
    assert more.exit_code == 0, more.output
    # A folder of the other method is refused by name.
    wrong = CliRunner().invoke(cli, ["parity", "train", str(run), "--name", "failout", "--resume"])
    assert wrong.exit_code == 1 and "holds a failout run" in wrong.output
