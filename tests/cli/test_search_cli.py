import json

from click.testing import CliRunner

from snnas.cli import cli
from tests.conftest import TINY_SPACE

TINY = [
    "--set",
    "search.iterations=1",
    "--set",
    "search.train_steps=2",
    "--set",
    "search.strategy_steps=2",
    "--set",
    "search.samples=2",
    "--set",
    "search.topk=1",
]


def test_search_cli_json(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "search",
            str(TINY_SPACE),
            "--strategy",
            "evolution",
            "--runs-dir",
            str(tmp_path),
            "--name",
            "s",
            "--json",
            *TINY,
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["strategy"] == "evolution" and summary["evaluations"] == 4
    assert (tmp_path / "s" / "best_policy.json").is_file()


def test_search_cli_errors_are_one_line(tmp_path):
    bad = CliRunner().invoke(
        cli, ["search", str(TINY_SPACE), "--strategy", "annealing", "--runs-dir", str(tmp_path)]
    )
    # Bad option values are usage errors: exit code 2, one line.
    assert bad.exit_code == 2 and "annealing" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    bad = CliRunner().invoke(
        cli,
        ["search", str(TINY_SPACE), "--set", "search.iterations=0", "--runs-dir", str(tmp_path)],
    )
    assert bad.exit_code == 2 and "--set: search.iterations: expected an integer in" in bad.output


def test_compare_cli(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "compare",
            str(TINY_SPACE),
            "--strategies",
            "random,evolution",
            "--seeds",
            "2",
            "--budget",
            "4",
            "--supernet-epochs",
            "1",
            "--reference",
            "100",
            "--rewards",
            "penalized,pareto",
            "--runs-dir",
            str(tmp_path),
            "--name",
            "c",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["strategies"] == ["random", "evolution"] and report["budget"] == 4
    assert report["seeds"] == 2 and report["rewards"] == ["penalized", "pareto"]
    for key in ("auc", "regret", "evals_to_top1pct", "p_vs_random"):
        assert key in report["results"]["penalized"]["evolution"]
    assert "hypervolume" in report["results"]["pareto"]["random"]
    assert report["skipped"] == {"pareto": ["evolution"]}


def test_list_json():
    result = CliRunner().invoke(cli, ["list", "--json"])
    data = json.loads(result.output)
    assert "reinforce" in data["strategies"] and "rpi3b+" in data["device_profiles"]
    assert data["reward_modes"] == ["accuracy", "penalized", "budget", "pareto"]


def test_compare_and_search_cli_on_a_parity_space(tmp_path):
    from tests.train.parity_fixture import PARITY_TOML

    space = tmp_path / "parity.toml"
    space.write_text(PARITY_TOML)
    common = ["--runs-dir", str(tmp_path), "--name", "c"]
    bad = CliRunner().invoke(cli, ["compare", str(space), "--parity-epochs", "0", *common])
    assert bad.exit_code == 2 and "--parity-epochs" in bad.output
    full = CliRunner().invoke(cli, ["compare", str(space), "--mode", "full", *common])
    assert (
        full.exit_code == 2 and "--mode: expected fixed for the degraded objective" in full.output
    )
    assert "Traceback" not in full.output
    on = ["--set", "reward.degraded=true"]
    search = CliRunner().invoke(cli, ["search", str(space), *on, *common])
    assert search.exit_code == 1 and "reward.degraded: expected false or unset" in search.output
    assert len(search.output.strip().splitlines()) == 1 and "Traceback" not in search.output
