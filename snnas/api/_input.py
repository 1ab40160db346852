"""Your own images from files (``snnas run PLAN --input PATH``): a PNG or JPEG image, a
folder of them, or a ``.npy`` array, read without trusting the file and checked against the
plan's input spec by :meth:`snnas.Plan.inputs`' own code.

* Image files are decoded by ``torchvision.io.decode_image`` as stored (gray or RGB; a
  palette PNG as its colours, gray when they all are; an alpha channel or a palette with
  transparency is refused). Their 8-bit pixels are divided by 255 (16-bit ones by 65,535),
  then the plan's normalisation applies from its resize on: its ``scale`` step, which maps
  the dataset's raw pixel values (0..16 for the digits) to [0, 1], is left out.
* A ``.npy`` file holds raw images as the plan's input spec describes them, exactly what
  :meth:`snnas.Plan.forward` takes: (N, C, H, W), one image (C, H, W), or (N, H, W) for a
  one-channel plan; uint8 or float; the plan's ``scale`` applies. Its header is checked (a
  numeric dtype, a declared size equal to the file's) before ``numpy.load`` reads it with
  ``allow_pickle=False``: nothing is unpickled.
* A folder's files are read in name order; names starting with ``.`` are skipped; a link, a
  sub-folder or a file that is not a PNG or JPEG image is refused, naming it.
* Another height and width is resized when the plan's normalisation has a resize step (the
  digits': bilinear, as training data was made) and refused otherwise.

Every refusal is one :class:`~snnas.errors.InputError` naming the file, what was expected
and what was found.
"""

from __future__ import annotations

import math
import os
import stat
import struct
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from snnas.errors import InputError, UsageError, shorten

if TYPE_CHECKING:
    import torch

    from snnas.api._plan import Plan

__all__ = ["read_input"]

#: Suffixes of the image files read (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Limits that keep a hostile file from taking the machine's memory.
MAX_FILES = 100_000
MAX_FILE_BYTES = 64 * 2**20
MAX_PIXELS = 4096 * 4096
MAX_ARRAY_BYTES = 2 * 2**30
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"


def read_input(path: str | Path, plan: Plan) -> tuple[torch.Tensor, list[str]]:
    """The images at ``path`` as the plan's network inputs (N, C, H, W) float32, and one name
    per image (the file's; ``NAME[i]`` for the images of a ``.npy`` file)."""
    import torch

    given = Path(path)
    try:
        info = given.stat()  # the path the user names is taken wherever it is
    except OSError as exc:
        raise InputError(f"{_where(given)}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        files = _folder(given)
        batch = [_image(plan, f, follow=False) for f in files]
        return torch.cat(batch), [f.name for f in files]
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{_where(given)}: expected a file or a folder, found a special file")
    if given.suffix.lower() == ".npy":
        x = _array(plan, given)
        return x, [f"{given.name}[{i}]" for i in range(len(x))]
    if given.suffix.lower() in IMAGE_SUFFIXES:
        return _image(plan, given, follow=True), [given.name]
    raise InputError(
        f"{_where(given)}: expected a PNG or JPEG image (.png, .jpg, .jpeg), a folder of them "
        f"or a .npy file, found a file named {shorten(given.name, 100, quote=True)}"
    )


def _where(path: Path) -> str:
    return shorten(str(path), 200)


def _folder(folder: Path) -> list[Path]:
    """The image files of ``folder`` in name order (hidden names skipped)."""
    try:
        names = sorted(e.name for e in os.scandir(folder) if not e.name.startswith("."))
    except OSError as exc:
        raise InputError(f"{_where(folder)}: cannot be listed ({exc.strerror or exc})") from None
    if not names:
        raise InputError(f"{_where(folder)}: expected PNG or JPEG files, found an empty folder")
    if len(names) > MAX_FILES:
        raise InputError(f"{_where(folder)}: expected at most {MAX_FILES:,} files, found "
                         f"{len(names):,}")  # fmt: skip
    files = []
    for name in names:
        path = folder / name
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            raise InputError(
                f"{_where(path)}: is a link; the files of an --input folder are read only as "
                "plain files, never through a link (copy the image in, or name it directly)"
            )
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a special file"
            raise InputError(f"{_where(path)}: expected a PNG or JPEG file, found {kind} "
                             "(sub-folders are not read)")  # fmt: skip
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(
                f"{_where(path)}: expected a PNG or JPEG image (.png, .jpg, .jpeg), found a "
                f"file named {shorten(name, 100, quote=True)}"
            )
        files.append(path)
    return files


def _read(path: Path, follow: bool) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES (a folder's: not through a
    link, checked on the opened file itself)."""
    flags = os.O_RDONLY | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise InputError(f"{_where(path)}: cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{_where(path)}: expected a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise InputError(f"{_where(path)}: expected an image file of at most "
                             f"{MAX_FILE_BYTES:,} bytes, found {info.st_size:,}")  # fmt: skip
        return handle.read(MAX_FILE_BYTES + 1)


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's start-of-frame; ``None`` when not
    found (the file is then refused, never handed to the decoder unmeasured).

    The JPEG markers are walked as libjpeg walks them: bytes other than 0xFF between two
    segments are skipped (libjpeg skips them with a warning, "extraneous bytes before
    marker"), as are 0xFF fill bytes, 0xFF00 and the markers without a length (TEM, RST0-7);
    otherwise a stray byte before the frame header would hide its size from this check but
    not from the decoder."""
    if data.startswith(_PNG):
        if len(data) >= 24 and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        return None
    if not data.startswith(_JPEG):
        return None
    i = 2
    while i + 1 < len(data):
        if data[i] != 0xFF:  # extraneous byte: libjpeg skips it
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xFF, 0x00):  # a fill byte, or a stuffed 0xFF00 that is no marker
            i += 1 if marker == 0xFF else 2
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length follows
            i += 2
            continue
        if marker in (0xD9, 0xDA) or i + 4 > len(data):  # EOI or a scan before any frame
            return None
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    return None


def _png_has_chunk(data: bytes, kind: bytes) -> bool:
    """Whether a PNG holds a chunk of ``kind`` before its image data."""
    i = len(_PNG)
    while i + 8 <= len(data):
        length, found = struct.unpack(">I", data[i : i + 4])[0], data[i + 4 : i + 8]
        if found == kind:
            return True
        if found == b"IDAT":
            return False
        i += 12 + length
    return False


def _image(plan: Plan, path: Path, *, follow: bool) -> torch.Tensor:
    """One image file as network inputs (1, C, H, W)."""
    import torch
    from torchvision.io import ImageReadMode, decode_image

    data = _read(path, follow)
    if not (data.startswith(_PNG) or data.startswith(_JPEG)):
        raise InputError(f"{_where(path)}: expected a PNG or JPEG image, found other bytes "
                         f"(starting {shorten(data[:8], 60)})")  # fmt: skip
    size = _declared_size(data)
    if size is None:
        raise InputError(f"{_where(path)}: cannot be decoded as an image (no image size found "
                         "in its header)")  # fmt: skip
    if size[0] * size[1] > MAX_PIXELS:
        raise InputError(f"{_where(path)}: expected at most {MAX_PIXELS:,} pixels, found a "
                         f"declared {size[0]:,}x{size[1]:,}")  # fmt: skip
    # A palette PNG (colour type 3): torchvision's UNCHANGED (and RGB_ALPHA) modes return its
    # palette indices, bit-packed below 8 bits, as pixels; its RGB mode gives the colours. A
    # palette with transparency (a tRNS chunk) is refused like an alpha channel; a palette
    # of grays gives a gray image.
    palette = data.startswith(_PNG) and len(data) > 25 and data[25] == 3
    if palette and _png_has_chunk(data, b"tRNS"):
        raise InputError(f"{_where(path)}: expected a gray or RGB image, found a palette with "
                         "transparency (save it without transparency)")  # fmt: skip
    mode = ImageReadMode.RGB if palette else ImageReadMode.UNCHANGED
    try:
        pixels = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode)
    except (RuntimeError, ValueError) as exc:
        reason = shorten(str(exc).strip().splitlines()[0] if str(exc).strip() else "", 160)
        raise InputError(f"{_where(path)}: cannot be decoded as an image ({reason})") from None
    if palette and bool((pixels[0] == pixels[1]).all() and (pixels[1] == pixels[2]).all()):
        pixels = pixels[:1]  # a palette of grays: (1, H, W)
    c, h, w = pixels.shape  # (C, H, W)
    if c in (2, 4):
        raise InputError(f"{_where(path)}: expected a gray or RGB image, found "
                         f"{'gray' if c == 2 else 'RGB'} with an alpha channel "
                         "(save it without transparency)")  # fmt: skip
    spec = plan._norm
    if spec is None:
        raise InputError(
            f"{_where(path)}: the plan stores no normalisation, so an image file cannot be "
            "turned into its network inputs; give them as a .npy file of float32 network inputs"
        )
    channels, height, width = plan.input_shape
    gray_ok = spec["repeat"] and channels > 1
    if c != channels and not (c == 1 and gray_ok):
        want = "a gray" if channels == 1 else ("an RGB (or gray)" if gray_ok else "an RGB")
        raise InputError(f"{_where(path)}: expected {want} image (the plan's network takes "
                         f"{channels} channel(s) of {width}x{height} pixels), found "
                         f"{'gray' if c == 1 else 'RGB'} {w}x{h}")  # fmt: skip
    if spec["resize"] is None and (h, w) != (height, width):
        raise InputError(f"{_where(path)}: expected {width}x{height} pixels (the plan does not "
                         f"resize: other sizes are refused), found {w}x{h}")  # fmt: skip
    scale = 255.0 if pixels.dtype == torch.uint8 else 65535.0
    unit = pixels.to(torch.float32) / scale  # (C, H, W) in [0, 1]
    return _checked(plan, path, unit[None], unit=True)


def _checked(plan: Plan, path: Path, batch: torch.Tensor, *, unit: bool) -> torch.Tensor:
    """``Plan.inputs``' checks and normalisation; a refusal names the file."""
    try:
        return plan._network_inputs(batch, unit=unit)
    except UsageError as exc:
        found = exc.found if isinstance(exc.found, str) else shorten(exc.found, quote=True)
        raise InputError(f"{_where(path)}: expected {exc.expected}, found {found}") from None


def _array(plan: Plan, path: Path) -> torch.Tensor:
    """A ``.npy`` file of raw images as network inputs (N, C, H, W)."""
    import numpy as np
    import torch

    with open(path, "rb") as handle:
        _check_header(path, handle)
        array = np.load(handle, allow_pickle=False)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.ndim == 3 and plan.input_shape[0] == 1:
        array = array[:, None]  # (N, H, W) -> (N, 1, H, W) for a one-channel plan
    return _checked(plan, path, torch.from_numpy(np.ascontiguousarray(array)), unit=False)


def _check_header(path: Path, handle: BinaryIO) -> None:
    """The declared shape and dtype, checked against the file before anything is loaded;
    ``handle`` is left at the start."""
    from numpy.lib import format as npy

    where = _where(path)
    try:
        version = npy.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = npy.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = npy.read_array_header_2_0(handle)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} is not read")
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        reason = shorten(str(exc).strip().splitlines()[0] if str(exc).strip() else "", 160)
        raise InputError(
            f"{where}: expected a .npy file, cannot read its header ({reason})"
        ) from None
    if dtype.hasobject or dtype.kind not in "uif":
        raise InputError(f"{where}: expected uint8 or float images, found dtype {dtype.str!r} "
                         "(object arrays are never unpickled)")  # fmt: skip
    if len(shape) not in (3, 4):
        raise InputError(f"{where}: expected (N, C, H, W), (C, H, W) or, for a one-channel "
                         f"plan, (N, H, W), found shape {shape}")  # fmt: skip
    if 0 in shape:  # else the launcher's "images: expected at least one image" (exit 2)
        raise InputError(f"{where}: expected at least one image, found shape {shape}")
    declared = math.prod(shape) * dtype.itemsize
    held = os.fstat(handle.fileno()).st_size - handle.tell()
    if declared > MAX_ARRAY_BYTES:
        raise InputError(f"{where}: expected at most {MAX_ARRAY_BYTES:,} bytes of images, found "
                         f"shape {shape} ({declared:,} bytes) declared")  # fmt: skip
    if declared != held:
        raise InputError(f"{where}: its header declares shape {shape} {dtype} "
                         f"({declared:,} bytes), the file holds {held:,}")  # fmt: skip
    handle.seek(0)
