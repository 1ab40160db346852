"""``snnas.Plan``: a deployment plan folder, run in this process or on G real processes.

Images go in as the plan's input spec says (``plan.json``'s ``input``): network inputs of
shape (C, H, W) in float32, or raw images that the plan's own normalisation turns into
them (``input.normalization``: scale, resize, the gray channel repeated, mean and std).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snnas._numbers import Range
from snnas._run import Progress
from snnas.api._progress import reporting
from snnas.errors import PlanError, UsageError, shorten

if TYPE_CHECKING:
    import torch

__all__ = ["Plan", "RuntimeResult", "VerifyResult"]

#: Keys of ``input.normalization`` that only describe (they change nothing).
_DESCRIPTIVE = {"source", "formula", "channels"}
_RESIZE_MODES = ("nearest", "bilinear", "bicubic", "area")
#: The documented ranges of run_local's options and of a plan's normalisation numbers.
COUNT = Range(1, 10_000_000, integer=True)
TIMEOUT = Range(0, 3600, low_open=True)
SCALE = Range(0, 1_000_000, low_open=True)
MEAN = Range(-1_000_000, 1_000_000)
STD = Range(0, 1_000_000, low_open=True)
#: Images per chunk in :meth:`Plan.forward` (bounds the memory of one call).
CHUNK = 256


@dataclass(frozen=True)
class VerifyResult:
    """What :meth:`Plan.verify` found (``snnas plan verify``).

    Attributes:
        top1_agreement: Fraction of images whose answer equals the reference's.
        max_abs_diff: Largest difference of a logit to the reference's.
        accuracy: Accuracy of the plan's answers on the split.
        passed: Whether every difference is within the tolerance.
        report: The whole report (``compared_with``, ``tolerance``, ``degraded``, ...).
    """

    top1_agreement: float
    max_abs_diff: float
    accuracy: float
    passed: bool
    report: dict[str, Any]


@dataclass(frozen=True)
class RuntimeResult:
    """What :meth:`Plan.run_local` measured (``snnas run PLAN --local``).

    Attributes:
        top1_agreement: Fraction of answers equal to the frozen network's (on your own
            images: to the plan's engine in this process, :meth:`Plan.forward`).
        accuracy: Accuracy of the answers; ``None`` on your own images (no labels).
        images: Images answered.
        report: The whole ``runtime.json`` (latency percentiles, bytes per link, ...).
        logits: On your own images, the G processes' answers (N, num_classes); else ``None``.
        predictions: On your own images, the predicted class of each; else ``None``.
    """

    top1_agreement: float
    accuracy: float | None
    images: int
    report: dict[str, Any]
    logits: torch.Tensor | None = None
    predictions: list[int] | None = None


class Plan:
    """A plan folder (``snnas export``), loaded and checked (checksums, schema, wiring).

    Use :meth:`load`; :func:`snnas.export` returns one.
    """

    def __init__(self, loaded: Any) -> None:
        self._plan = loaded  # snnas.plan.LoadedPlan
        self._nets: dict[int, Any] | None = None
        self._norm = _normalization(self.spec, self.input_shape, str(self.path))

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Open and check the plan folder ``path``; nothing is executed."""
        from snnas.plan import load_plan

        return cls(load_plan(path))

    @property
    def path(self) -> Path:
        """The plan folder."""
        return Path(self._plan.folder)

    @property
    def data(self) -> dict[str, Any]:
        """``plan.json``, as checked at load."""
        data: dict[str, Any] = self._plan.data
        return data

    @property
    def spec(self) -> dict[str, Any]:
        """``plan.json``'s ``input``: shape, dtype, dataset, normalization."""
        spec: dict[str, Any] = self.data["input"]
        return spec

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One image as the network takes it: (C, H, W)."""
        _, c, h, w = self.spec["shape"]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        """Logits per image."""
        return int(self.data["output"]["shape"][-1])

    @property
    def groups(self) -> int:
        """Data devices (G)."""
        return int(self._plan.groups)

    @property
    def bytes_per_image(self) -> int:
        """Bytes on the wire per image."""
        return int(self.data["totals"]["bytes_per_image"])

    def __repr__(self) -> str:
        c, h, w = self.input_shape
        return (
            f"Plan({str(self.path)!r}: {self.data['space']['name']}, G={self.groups}, "
            f"input {c}x{h}x{w}, {self.bytes_per_image:,} B per image)"
        )

    def inputs(self, images: Any, *, normalized: bool = False) -> torch.Tensor:
        """``images`` as network inputs (N, C, H, W) float32, checked against the input spec.

        Args:
            images: A tensor or array (N, C, H, W), or one image (C, H, W).
            normalized: The images are network inputs already (float32, the plan's shape);
                otherwise they are raw images, which the plan's normalisation turns into
                network inputs (the plan must store one).
        """
        return self._network_inputs(_as_tensor(images), normalized=normalized)

    def _network_inputs(
        self, batch: torch.Tensor, *, normalized: bool = False, unit: bool = False
    ) -> torch.Tensor:
        """:meth:`inputs` of a tensor; ``unit``: the pixels are in [0, 1] already (image
        files, 8-bit pixels / 255), so the plan's ``scale`` step, which maps its dataset's
        raw pixel values to [0, 1], is left out (``snnas run --input``)."""
        import torch

        if batch.dim() == 3:
            batch = batch.unsqueeze(0)  # one image (C, H, W) -> (1, C, H, W)
        shape = self.input_shape
        expected = f"(N, {shape[0]}, {shape[1]}, {shape[2]})"
        if normalized or self._norm is None:
            if batch.dim() != 4 or tuple(batch.shape[1:]) != shape or batch.dtype != torch.float32:
                how = "" if normalized else " (the plan stores no normalisation)"
                raise UsageError(
                    "images",
                    f"network inputs {expected} float32, the plan's input spec{how}",
                    _describe(batch),
                )
            x = batch
        else:
            if batch.dim() != 4 or not (batch.dtype == torch.uint8 or batch.is_floating_point()):
                expected = "raw images (N, C, H, W) or (C, H, W), uint8 or float"
                raise UsageError("images", expected, _describe(batch))
            x = _normalize(batch.to(torch.float32), self._norm, shape, unit=unit)
            if tuple(x.shape[1:]) != shape:
                raise UsageError(
                    "images",
                    f"raw images that the plan's normalisation turns into {expected} (its "
                    f"input spec: {self._norm['expects']})",
                    _describe(batch),
                )
        if not bool(torch.isfinite(x).all()):
            raise UsageError("images", "finite values", "<NaN or infinite values>")
        return x.contiguous()

    def forward(self, images: Any, *, normalized: bool = False) -> torch.Tensor:
        """Logits of ``images`` (N, num_classes), every device of the plan run in this
        process by the plan's own executor.

        Args:
            images: Raw images (the plan's normalisation is applied) or, with
                ``normalized=True``, network inputs; see :meth:`inputs`.
            normalized: Whether ``images`` are network inputs already.
        """
        import torch

        from snnas.plan import execute_plan

        x = self.inputs(images, normalized=normalized)
        if self._nets is None:
            self._nets = {d: self._plan.net(d) for d in range(self._plan.world)}
        if len(x) == 0:
            return torch.empty(0, self.num_classes)
        with torch.no_grad():
            return execute_plan(self._plan, x, self._nets, chunk=CHUNK)  # (N, num_classes)

    __call__ = forward

    def verify(
        self, split: str = "val", *, reference_run: str | Path | None = None
    ) -> VerifyResult:
        """Execute the plan on ``split`` (``val`` or ``test``) device by device and compare
        its logits with the stored reference logits, or with the frozen network recomputed
        from ``reference_run`` (the search run it was exported from: its checkpoint must be
        the one the plan records) (``snnas plan verify [--reference-run RUN]``). Nothing
        outside the plan folder is read unless ``reference_run`` is given."""
        from snnas.plan import verify_plan

        if split not in ("val", "test"):
            raise UsageError("split", "val or test", split)
        report = verify_plan(self.path, split, reference_run)
        return VerifyResult(
            float(report["top1_agreement"]),
            float(report["max_abs_diff"]),
            float(report["accuracy"]),
            bool(report["passed"]),
            report,
        )

    def run_local(
        self,
        images: Any = None,
        *,
        normalized: bool = False,
        split: str | None = None,
        count: int | None = None,
        out: str | Path | None = None,
        timeout_s: float = 5.0,
        warmup: int | None = None,
        progress: Progress | None = None,
        verbose: bool = False,
    ) -> RuntimeResult:
        """Run the plan on G real processes on this machine, one per device, payloads moved
        with gloo (``snnas run PLAN --local``), on ``images`` or on the first ``count``
        images of ``split``.

        Args:
            images: Your own images, checked and normalised as :meth:`forward` does (raw
                images, or network inputs with ``normalized=True``); the result then holds
                their ``logits`` and ``predictions``, and ``top1_agreement`` compares them
                with :meth:`forward` on the same images. Not with ``split`` or ``count``.
            normalized: Whether ``images`` are network inputs already.
            split: ``val`` or ``test`` (default ``test``).
            count: Images of the split to answer (default: the whole split).
            out: Folder for ``runtime.json``, ``timeline.png`` and the device logs
                (default: a temporary folder, removed afterwards).
            timeout_s: Seconds a device waits for a payload before it reports a failure.
            warmup: Images answered before latency is counted (fewer than the images
                answered; default 5, or none when 5 images or fewer are answered).
            progress: Called as ``progress(phase, done, total, info)``.
            verbose: Draw rich progress bars on stderr (when no ``progress`` is given).
        """
        import torch

        from snnas.runtime import launch_local

        x = None
        if images is not None:
            for name, value in (("split", split), ("count", count)):
                if value is not None:
                    raise UsageError(name, "no value with images (every image is answered)",
                                     value)  # fmt: skip
            x = self.inputs(images, normalized=normalized)
            answered: int | None = len(x)
        else:
            split = "test" if split is None else split
            if split not in ("val", "test"):
                raise UsageError("split", "val or test", split)
            if count is not None and COUNT.problem(count) is not None:
                raise UsageError("count", COUNT.describe(), count)
            answered = count
        if TIMEOUT.problem(timeout_s) is not None:
            raise UsageError("timeout_s", TIMEOUT.describe(), timeout_s)
        if warmup is None:
            warmup = 5 if answered is None or answered > 5 else 0
        with (
            reporting(progress, verbose, "run") as report,
            tempfile.TemporaryDirectory(prefix="snnas-run-") as scratch,
        ):
            folder = Path(out) if out is not None else Path(scratch) / "runtime"
            result = launch_local(
                self.path, folder, split=split or "test", images=count, warmup=warmup,
                timeout_s=timeout_s, progress=report, inputs=x,
            )  # fmt: skip
        if x is None:
            return RuntimeResult(
                float(result["top1_agreement"]),
                float(result["accuracy"]),
                int(result["images"]),
                result,
            )
        return RuntimeResult(
            float(result["top1_agreement"]),
            None,
            int(result["images"]),
            result,
            torch.tensor(result["logits"]),  # (N, num_classes)
            [int(p) for p in result["predictions"]],
        )


def _as_tensor(images: Any) -> torch.Tensor:
    import torch

    if isinstance(images, torch.Tensor):
        return images.detach().cpu()
    if hasattr(images, "__array__") and hasattr(images, "dtype"):
        import numpy as np

        array = np.asarray(images)
        if array.dtype.kind not in "uif":
            raise UsageError("images", "a numeric array", f"<an array of {array.dtype}>")
        return torch.from_numpy(np.ascontiguousarray(array))
    raise UsageError("images", "a torch tensor or a numpy array", f"<{type(images).__name__}>")


def _describe(batch: torch.Tensor) -> str:
    return f"<shape {tuple(batch.shape)} {str(batch.dtype).removeprefix('torch.')}>"


def _number(value: Any, where: str, key: str, valid: Range) -> float:
    problem = valid.problem(value)
    if problem is not None:
        raise PlanError(
            f"{where}: input.normalization.{key}: expected {problem}, found "
            f"{shorten(value, 100, quote=True)}"
        )
    return float(value)


def _normalization(
    spec: Mapping[str, Any], shape: tuple[int, int, int], source: str
) -> dict[str, Any] | None:
    """The plan's normalisation, checked (``plan.json`` is a file from outside): ``None``
    when it stores none. Every key must be one this module applies or a description."""
    norm = spec.get("normalization")
    if not norm:
        return None
    where = f"{source}/plan.json"
    if not isinstance(norm, Mapping):
        raise PlanError(f"{where}: input.normalization: expected an object")
    unknown = sorted(set(norm) - _DESCRIPTIVE - {"scale", "resize", "mean", "std"})
    if unknown:
        raise PlanError(
            f"{where}: input.normalization.{shorten(unknown[0], 100)}: not a step snnas applies "
            "(expected scale, resize, mean, std); give network inputs with normalized=True"
        )
    channels = shape[0]
    out: dict[str, Any] = {"scale": 1.0, "resize": None, "repeat": "channels" in norm}
    if "scale" in norm:
        out["scale"] = _number(norm["scale"], where, "scale", SCALE)
    resize = norm.get("resize")
    if resize is not None:
        if (
            not isinstance(resize, Mapping)
            or resize.get("mode") not in _RESIZE_MODES
            or resize.get("size") != shape[1]
            or shape[1] != shape[2]
            or not isinstance(resize.get("align_corners", False), bool | type(None))
        ):
            raise PlanError(
                f"{where}: input.normalization.resize: expected {{size: {shape[1]}, mode: one of "
                f"{', '.join(_RESIZE_MODES)}, align_corners: true, false or null}}, found "
                f"{shorten(resize, 200, quote=True)}"
            )
        out["resize"] = (int(resize["size"]), str(resize["mode"]), resize.get("align_corners"))
    for key, valid in (("mean", MEAN), ("std", STD)):
        values = norm.get(key, [0.0 if key == "mean" else 1.0] * channels)
        if not isinstance(values, list) or len(values) != channels:
            raise PlanError(
                f"{where}: input.normalization.{key}: expected a list of {channels} numbers, "
                f"found {shorten(values, 100, quote=True)}"
            )
        out[key] = [_number(v, where, f"{key}[{i}]", valid) for i, v in enumerate(values)]
    size = f"{shape[1]}x{shape[2]}"
    if out["resize"]:
        size = f"any HxW (resized to {size})"
    gray = f"1 or {channels}" if out["repeat"] and channels > 1 else str(channels)
    out["expects"] = f"{gray} channel(s) of {size} pixels, scaled by {out['scale']:g}"
    return out


def _normalize(
    x: torch.Tensor, norm: Mapping[str, Any], shape: tuple[int, int, int], *, unit: bool = False
) -> torch.Tensor:
    """Raw pixels (N, c, h, w) float32 -> network inputs, as the dataset made them (e.g.
    digits: ``(resize(pixels * scale) - mean) / std``, the gray channel repeated); ``unit``:
    the pixels are in [0, 1] already (the scale step is left out)."""
    import torch
    import torch.nn.functional as F

    channels = shape[0]
    if not unit:
        x = x * norm["scale"]
    if norm["resize"] is not None and tuple(x.shape[-2:]) != shape[1:]:
        size, mode, corners = norm["resize"]
        if mode in ("nearest", "area"):
            corners = None
        x = F.interpolate(x, size=(size, size), mode=mode, align_corners=corners)
    if norm["repeat"] and x.shape[1] == 1 and channels > 1:
        x = x.repeat(1, channels, 1, 1)  # the gray channel -> (N, C, H, W)
    if x.shape[1] != channels:
        return x  # refused by the caller, in the input spec's words
    mean = torch.tensor(norm["mean"], dtype=torch.float32).view(1, channels, 1, 1)
    std = torch.tensor(norm["std"], dtype=torch.float32).view(1, channels, 1, 1)
    return (x - mean) / std
