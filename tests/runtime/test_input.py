"""Your own images through G real processes (``snnas run --input``, ``Plan.run_local(images)``):
the answers equal the plan's engine in this process (``Plan.forward``) on the same images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import snnas
from snnas.cli import cli
from snnas.cost import PROFILES
from snnas.errors import UsageError
from snnas.plan import export_plan
from tests.plan.conftest import ACCURACY, random_frozen, talking_policy


@pytest.fixture(scope="module")
def plan(tmp_path_factory, plan_space, digits) -> snnas.Plan:
    """A 4-device plan of the tiny space on the digits (8x8, one channel, resized input)."""
    folder = tmp_path_factory.mktemp("input") / "plan"
    model = random_frozen(plan_space, talking_policy(plan_space))
    export_plan(plan_space, model, digits, PROFILES["rpi3b+"], ACCURACY, folder)
    return snnas.Plan.load(folder)


def _raw_digits(count: int) -> np.ndarray:
    """Raw digits as scikit-learn ships them: (N, 8, 8), pixel values 0..16."""
    from sklearn.datasets import load_digits

    return load_digits().images[:count].astype(np.uint8)


def _run(args: list[str]) -> dict:
    result = CliRunner().invoke(cli, ["run", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _same_answers(report: dict, expected: torch.Tensor) -> None:
    logits = torch.tensor(report["logits"])
    assert report["predictions"] == expected.argmax(1).tolist()
    assert torch.allclose(logits, expected, atol=1e-4)
    assert report["top1_agreement"] == 1.0 and report["accuracy"] is None
    assert report["checks"]["passed"] and report["bytes_equal"]


def test_a_npy_file_answers_like_forward(plan, tmp_path):
    raw = _raw_digits(7)
    np.save(tmp_path / "digits.npy", raw)  # (N, H, W): a one-channel plan
    out = tmp_path / "runs"
    report = _run([str(plan.path), "--local", "--input", str(tmp_path / "digits.npy"),
                   "--runs-dir", str(out), "--name", "npy", "--timeout", "10"])  # fmt: skip
    _same_answers(report, plan.forward(raw[:, None]))
    assert report["files"] == [f"digits.npy[{i}]" for i in range(7)]
    assert report["images"] == 7 and report["latency_ms"]["warmup_images"] == 5
    written = json.loads((out / "npy" / "runtime.json").read_text())
    assert written["predictions"] == report["predictions"]
    assert written["logits"] == report["logits"]


def test_png_files_answer_like_forward_on_their_pixels(plan, tmp_path):
    from torchvision.io import write_png

    raw = _raw_digits(3)
    folder = tmp_path / "pngs"
    folder.mkdir()
    pixels = torch.tensor(raw * 15, dtype=torch.uint8)  # 0..240: an 8-bit image of each digit
    sizes = [(8, 8), (8, 8), (16, 16)]  # the digits plan resizes: another size is taken
    for i, (name, size) in enumerate(zip(["b.png", "a.png", "c.png"], sizes, strict=True)):
        image = torch.nn.functional.interpolate(pixels[i][None, None].float(), size=size)
        write_png(image[0].to(torch.uint8), str(folder / name))
    (folder / ".DS_Store").write_bytes(b"\0")  # hidden names are skipped
    report = _run([str(plan.path), "--local", "--input", str(folder), "--runs-dir",
                   str(tmp_path / "runs"), "--timeout", "10"])  # fmt: skip
    assert report["files"] == ["a.png", "b.png", "c.png"]  # in name order
    # 8-bit pixels / 255 are in [0, 1]: the raw digit values (0..16) they stand for
    from torchvision.io import read_image

    unit = [read_image(str(folder / f)).float() / 255 for f in report["files"]]
    expected = torch.cat([plan.forward(u[None] * 16) for u in unit])
    _same_answers(report, expected)


def test_run_local_returns_the_logits_of_your_images(plan):
    raw = _raw_digits(4)
    result = plan.run_local(raw[:, None], timeout_s=10)
    expected = plan.forward(raw[:, None])
    assert result.images == 4 and result.accuracy is None and result.top1_agreement == 1.0
    assert result.logits is not None and torch.allclose(result.logits, expected, atol=1e-4)
    assert result.predictions == expected.argmax(1).tolist()
    assert result.report["files"] is None and result.report["latency_ms"]["warmup_images"] == 0


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"count": 3}, "count: expected no value with images"),
        ({"split": "val"}, "split: expected no value with images"),
        ({"normalized": True}, "network inputs (N, 1, 8, 8) float32"),
    ],
)
def test_run_local_refuses_images_with_what_conflicts(plan, kwargs, words):
    with pytest.raises(UsageError) as caught:
        plan.run_local(_raw_digits(3)[:, None], **kwargs)
    assert words in str(caught.value)


def test_run_local_refuses_nan_before_starting(plan):
    images = np.full((2, 1, 8, 8), np.nan)
    with pytest.raises(UsageError, match="finite values"):
        plan.run_local(images)


def test_the_split_still_runs_without_images(plan, tmp_path):
    result = plan.run_local(count=3, out=Path(tmp_path) / "split")
    assert result.images == 3 and result.logits is None and result.predictions is None
    assert result.accuracy is not None and result.report["split"] == "test"
