"""A hostile pass over ``snnas run PLAN --local --input PATH`` (issue 16, section 5): images
that do not fit the plan, files that are not images or hide a pickle, links, declared sizes
the file does not hold, and options that conflict with ``--input``. Each is refused before
any process starts: one line naming the file (exit 1) or the option (exit 2), nothing
written (:func:`invoke` also checks no traceback and nothing outside the runs folder)."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import encode_jpeg, write_png

from snnas.cost import PROFILES
from snnas.plan import export_plan
from tests.fuzz._cli import invoke
from tests.plan.conftest import (
    ACCURACY,
    parity_exported,
    plan_space,
    random_frozen,
    talking_policy,
)

__all__ = ["parity_exported", "plan_space"]  # the plan tests' fixtures

PLAN = "runs/p/plan"  # the digits plan: 1 channel, 8x8, resizes other sizes
FIXED = "runs/f/plan"  # the same plan without a resize step: other sizes are refused


@pytest.fixture(scope="module")
def exported(tmp_path_factory, plan_space, digits) -> Path:
    folder = tmp_path_factory.mktemp("hostile-input") / "plan"
    model = random_frozen(plan_space, talking_policy(plan_space))
    export_plan(plan_space, model, digits, PROFILES["rpi3b+"], ACCURACY, folder)
    return folder


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _rgba_png(width: int, height: int) -> bytes:
    """A valid RGBA PNG (colour type 6), black and opaque."""
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    rows = b"".join(b"\0" + b"\0\0\0\xff" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))  # fmt: skip


@pytest.fixture
def sandbox(tmp_path, exported) -> Path:
    """The plan twice (``runs/p/plan``, ``runs/f/plan`` without a resize step) and the files
    of every case under ``in/``."""
    shutil.copytree(exported, tmp_path / PLAN)
    shutil.copytree(exported, tmp_path / FIXED)
    data = json.loads((tmp_path / FIXED / "plan.json").read_text())
    del data["input"]["normalization"]["resize"]
    (tmp_path / FIXED / "plan.json").write_text(json.dumps(data))
    d = tmp_path / "in"
    d.mkdir()
    gray = torch.full((1, 8, 8), 100, dtype=torch.uint8)
    write_png(gray, str(d / "gray.png"))
    write_png(torch.zeros(3, 8, 8, dtype=torch.uint8), str(d / "rgb.png"))
    (d / "rgba.png").write_bytes(_rgba_png(8, 8))  # torchvision writes no alpha
    write_png(torch.zeros(1, 9, 8, dtype=torch.uint8), str(d / "tall.png"))
    jpeg = bytearray(encode_jpeg(torch.zeros(1, 8, 8, dtype=torch.uint8)).numpy().tobytes())
    (d / "rgb.jpg").write_bytes(encode_jpeg(torch.zeros(3, 8, 8, dtype=torch.uint8)).numpy())
    sof = jpeg.index(b"\xff\xc0")  # baseline start of frame: height, width at +5
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    (d / "bomb.jpg").write_bytes(bytes(jpeg))
    # Just over the limit (a small allocation were the check missed), the frame header
    # behind what libjpeg skips and decodes past: a stray byte, a marker without a length.
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 4100, 4100)
    (d / "stray.jpg").write_bytes(bytes(jpeg[:sof]) + b"\x00" + bytes(jpeg[sof:]))
    (d / "rst.jpg").write_bytes(bytes(jpeg[:sof]) + b"\xff\xd0" + bytes(jpeg[sof:]))
    (d / "no-frame.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x02")
    (d / "truncated.png").write_bytes((d / "gray.png").read_bytes()[:40])
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # a 10^10-pixel image
    (d / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header))
    (d / "text.png").write_text("not an image\n")
    (d / "notes.txt").write_text("hello\n")
    np.save(d / "wrong-shape.npy", np.zeros((2, 8), dtype=np.uint8))
    np.save(d / "rgb.npy", np.zeros((2, 3, 8, 8), dtype=np.uint8))
    np.save(d / "nan.npy", np.full((2, 1, 8, 8), np.nan))  # float64 NaN
    np.save(d / "inf.npy", np.full((2, 8, 8), np.inf, dtype=np.float32))
    np.save(d / "overflow.npy", np.full((2, 8, 8), 1e38, dtype=np.float32))  # finite pixels
    np.save(d / "none.npy", np.zeros((0, 8, 8), dtype=np.uint8))
    np.save(d / "int32.npy", np.zeros((2, 1, 8, 8), dtype=np.int32))
    np.save(d / "complex.npy", np.zeros((2, 1, 8, 8), dtype=np.complex64))
    np.save(d / "pickle.npy", np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
    with open(d / "huge.npy", "wb") as handle:  # declares 2.5 TB, holds 16 bytes
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<f4", "fortran_order": False, "shape": (10_000, 1, 8000, 8000)}
        )
        handle.write(b"\0" * 16)
    with open(d / "short.npy", "wb") as handle:  # declares 2 images, holds one
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "|u1", "fortran_order": False, "shape": (2, 1, 8, 8)}
        )
        handle.write(b"\0" * 64)
    (d / "garbage.npy").write_bytes(b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 50)
    (d / "empty").mkdir()
    (d / "mixed").mkdir()
    shutil.copy(d / "gray.png", d / "mixed" / "a.png")
    (d / "mixed" / "b.txt").write_text("x")
    (d / "nested").mkdir()
    shutil.copy(d / "gray.png", d / "nested" / "a.png")
    (d / "nested" / "sub").mkdir()
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    shutil.copy(d / "gray.png", outside)
    (d / "linked").mkdir()
    shutil.copy(d / "gray.png", d / "linked" / "a.png")
    (d / "linked" / "b.png").symlink_to(outside)
    (d / "fifo").mkdir()
    return tmp_path


# (case, plan, input, code, words in the error line)
CASES: list[tuple[str, str, str, int, str]] = [
    ("rgb-png-gray-plan", PLAN, "in/rgb.png", 1, "rgb.png: expected a gray image"),
    ("rgb-jpeg-gray-plan", PLAN, "in/rgb.jpg", 1, "rgb.jpg: expected a gray image"),
    ("rgba-png", PLAN, "in/rgba.png", 1, "rgba.png: expected a gray or RGB image, found RGB"),
    ("other-size-no-resize", FIXED, "in/tall.png", 1, "expected 8x8 pixels (the plan does not"),
    ("truncated-png", PLAN, "in/truncated.png", 1, "truncated.png: cannot be decoded"),
    ("png-bomb", PLAN, "in/bomb.png", 1, "bomb.png: expected at most 16,777,216 pixels"),
    ("jpeg-bomb", PLAN, "in/bomb.jpg", 1, "bomb.jpg: expected at most 16,777,216 pixels"),
    ("jpeg-bomb-stray-byte", PLAN, "in/stray.jpg", 1, "expected at most 16,777,216 pixels"),
    ("jpeg-bomb-rst-marker", PLAN, "in/rst.jpg", 1, "expected at most 16,777,216 pixels"),
    ("jpeg-no-frame", PLAN, "in/no-frame.jpg", 1, "no-frame.jpg: cannot be decoded"),
    ("text-as-png", PLAN, "in/text.png", 1, "text.png: expected a PNG or JPEG image"),
    ("not-an-image-name", PLAN, "in/notes.txt", 1, "notes.txt: expected a PNG or JPEG image"),
    ("missing", PLAN, "in/nowhere.png", 1, "nowhere.png: cannot be read"),
    ("npy-wrong-shape", PLAN, "in/wrong-shape.npy", 1, "found shape (2, 8)"),
    ("npy-rgb-gray-plan", PLAN, "in/rgb.npy", 1, "found <shape (2, 3, 8, 8) uint8>"),
    ("npy-float64-nan", PLAN, "in/nan.npy", 1, "nan.npy: expected finite values"),
    ("npy-inf", PLAN, "in/inf.npy", 1, "inf.npy: expected finite values"),
    ("npy-logits-overflow", PLAN, "in/overflow.npy", 1, "overflow.npy[0]: expected images the"),
    ("npy-no-image", PLAN, "in/none.npy", 1, "none.npy: expected at least one image, found"),
    ("npy-int32", PLAN, "in/int32.npy", 1, "uint8 or float"),
    ("npy-complex", PLAN, "in/complex.npy", 1, "found dtype '<c8'"),
    ("npy-pickle", PLAN, "in/pickle.npy", 1, "pickle.npy: expected uint8 or float images"),
    ("npy-huge-declared", PLAN, "in/huge.npy", 1, "expected at most 2,147,483,648 bytes"),
    ("npy-short", PLAN, "in/short.npy", 1, "declares shape (2, 1, 8, 8) uint8 (128 bytes)"),
    ("npy-garbage-header", PLAN, "in/garbage.npy", 1, "cannot read its header"),
    ("empty-folder", PLAN, "in/empty", 1, "empty: expected PNG or JPEG files, found an empty"),
    ("folder-with-text", PLAN, "in/mixed", 1, "b.txt: expected a PNG or JPEG image"),
    ("folder-with-folder", PLAN, "in/nested", 1, "sub: expected a PNG or JPEG file, found a"),
    ("folder-link-outside", PLAN, "in/linked", 1, "b.png: is a link"),
]


@pytest.mark.parametrize(
    ("plan", "path", "code", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_input(sandbox, plan, path, code, words):
    outcome = invoke(sandbox, ["run", plan, "--local", "--input", path, "--name", "r"])
    assert outcome.code == code, outcome
    assert words in outcome.error, outcome.error
    assert not (sandbox / "runs" / "r").exists()  # refused before anything was written


def test_a_special_file_is_refused(sandbox):
    import os

    fifo = sandbox / "in" / "fifo" / "x.png"
    os.mkfifo(fifo)
    outcome = invoke(sandbox, ["run", PLAN, "--local", "--input", "in/fifo", "--name", "r"])
    assert outcome.code == 1 and "x.png: expected a PNG or JPEG file, found a special" in (
        outcome.error
    ), outcome
    outcome = invoke(sandbox, ["run", PLAN, "--local", "--input", str(fifo), "--name", "r"])
    assert outcome.code == 1 and "found a special file" in outcome.error, outcome


USAGE = [
    ("with-images", ["--local", "--images", "3"], "--input cannot go with --images"),
    ("with-split", ["--local", "--split", "val"], "--input cannot go with --split"),
    ("with-split-default", ["--local", "--split", "test"], "--input cannot go with --split"),
    ("with-fail-device", ["--local", "--fail-device", "1"], "--input cannot go with --fail-dev"),
    ("with-slow-device", ["--local", "--slow-device", "1", "--delay-ms", "5"], "--slow-device"),
    ("rank-master", ["--rank", "0", "--master", "127.0.0.1:1"], "--input needs --local"),
    ("warmup-all", ["--local", "--warmup", "1"], "--warmup: expected fewer than the 1 images"),
]


@pytest.mark.parametrize(("args", "words"), [c[1:] for c in USAGE], ids=[c[0] for c in USAGE])
def test_input_with_conflicting_options_is_a_usage_error(sandbox, args, words):
    outcome = invoke(sandbox, ["run", PLAN, *args, "--input", "in/gray.png", "--name", "r"])
    assert outcome.code == 2, outcome
    assert words in outcome.error, outcome.error
    assert not (sandbox / "runs" / "r").exists()


def test_a_plan_with_parity_devices_is_refused(tmp_path, parity_exported):
    _, _, folder = parity_exported
    shutil.copytree(folder, tmp_path / "runs" / "q" / "plan")
    write_png(torch.zeros(1, 8, 8, dtype=torch.uint8), str(tmp_path / "gray.png"))
    outcome = invoke(tmp_path, ["run", "runs/q/plan", "--local", "--input", "gray.png"])
    assert outcome.code == 2, outcome
    assert outcome.error.startswith("--input: expected a plan without parity devices"), outcome
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["q"]  # no run folder made


def _palette_png(
    indices: torch.Tensor, palette: list[tuple[int, int, int]], alpha: bytes = b""
) -> bytes:
    """An 8-bit palette PNG (colour type 3) of ``indices`` (H, W), ``alpha`` its tRNS."""
    height, width = indices.shape
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    rows = b"".join(b"\0" + bytes(row.tolist()) for row in indices.to(torch.uint8))
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"PLTE", b"".join(bytes(c) for c in palette))
            + (_png_chunk(b"tRNS", alpha) if alpha else b"")
            + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))  # fmt: skip


def test_a_palette_png_is_read_as_its_colours(tmp_path, exported):
    """Not as its palette indices (torchvision's UNCHANGED mode): a gray palette with white
    at index 0 and black at 1 gives the pixels of the same gray PNG; a coloured one is RGB."""
    import snnas
    from snnas.api._input import read_input
    from snnas.errors import InputError

    plan = snnas.Plan.load(exported)
    indices = torch.zeros(8, 8, dtype=torch.uint8)
    indices[2:6, 2:6] = 1
    (tmp_path / "palette.png").write_bytes(_palette_png(indices, [(255, 255, 255), (0, 0, 0)]))
    write_png((255 * (1 - indices))[None], str(tmp_path / "gray.png"))
    got, _ = read_input(tmp_path / "palette.png", plan)
    want, _ = read_input(tmp_path / "gray.png", plan)
    assert torch.equal(got, want)
    (tmp_path / "red.png").write_bytes(_palette_png(indices, [(0, 0, 0), (255, 0, 0)]))
    with pytest.raises(InputError, match=r"red\.png: expected a gray image .* found RGB 8x8"):
        read_input(tmp_path / "red.png", plan)
    (tmp_path / "clear.png").write_bytes(_palette_png(indices, [(0, 0, 0)] * 2, b"\0\xff"))
    with pytest.raises(InputError, match=r"clear\.png: expected a gray or RGB image, found a pal"):
        read_input(tmp_path / "clear.png", plan)
