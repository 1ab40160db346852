import json

from click.testing import CliRunner

from snnas.cli import cli
from tests.conftest import SMALL_TOML


def test_train_cli_json(tmp_path):
    space = tmp_path / "tiny.toml"
    space.write_text(SMALL_TOML)
    args = [
        "train",
        str(space),
        "--epochs",
        "1",
        "--batch-size",
        "128",
        "--eval-policies",
        "3",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--name",
        "t",
        "--json",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{") :])
    assert data["random_policies"] == 3
    assert (tmp_path / "runs" / "t" / "last.pt").is_file()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "--resume" in again.output


def test_train_cli_missing_cifar_folder(tmp_path):
    space = tmp_path / "c.toml"
    space.write_text(
        SMALL_TOML.replace("input_size = 8", "input_size = 32").replace(
            "input_channels = 1", "input_channels = 3"
        )
    )
    result = CliRunner().invoke(
        cli, ["train", str(space), "--dataset", "cifar10", "--data-dir", str(tmp_path / "none")]
    )
    assert result.exit_code == 1
    assert "cifar-10-batches-py" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_train_cli_plain_and_policy_exclude_each_other(tmp_path):
    space = tmp_path / "tiny.toml"
    space.write_text(SMALL_TOML)
    result = CliRunner().invoke(cli, ["train", str(space), "--plain", "--policy", str(space)])
    assert result.exit_code == 2
