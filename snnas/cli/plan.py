"""``snnas plan``: inspect and verify deployment plan folders."""

from __future__ import annotations

from pathlib import Path

import click

from snnas.cli._terminal import Terminal

__all__ = ["plan"]


@click.group()
def plan() -> None:
    """Check deployment plans (docs/plan.md)."""


@plan.command("verify")
@click.argument("folder", metavar="PLAN", type=click.Path(path_type=Path))
@click.option(
    "--split",
    type=click.Choice(["val", "test"]),
    default="val",
    show_default=True,
    help="Images to execute the plan on.",
)
@click.option(
    "--reference-run",
    type=click.Path(path_type=Path),
    default=None,
    help="Recompute the frozen network from this run folder's fine-tuned checkpoint (it must "
    "be the one the plan was exported from) instead of the plan's stored reference logits.",
)
@click.option(
    "--onnx",
    is_flag=True,
    help="Also run the whole plan through onnxruntime, one session per device segment, and "
    "compare (a plan exported with snnas export --onnx).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def verify(
    terminal: Terminal,
    folder: Path,
    split: str,
    reference_run: Path | None,
    onnx: bool,
    as_json: bool,
) -> None:
    """Check PLAN (schema, checksums, space hash), execute it device by device from its own
    files and compare with the frozen network; exit 1 if they disagree. Nothing outside PLAN
    (and --reference-run) is read."""
    from snnas.errors import PlanError
    from snnas.plan import verify_plan

    report = verify_plan(folder, split, reference_run)
    if onnx:
        from snnas.plan import load_plan
        from snnas.plan._onnx import verify_onnx

        report["onnx"] = verify_onnx(load_plan(folder), split)
    if as_json:
        terminal.json(report)
    else:
        terminal.info(
            f"{report['plan']}: {report['devices']} devices, {report['images']} {split} images, "
            f"compared with {report['compared_with']}"
        )
        terminal.info(
            f"top-1 agreement {report['top1_agreement']:.4f}, max abs logit difference "
            f"{report['max_abs_diff']:.2e} (tolerance {report['tolerance']:.2e}), "
            f"accuracy {report['accuracy']:.4f}"
        )
    degraded = report.get("degraded")
    if degraded is not None and not as_json:
        terminal.info(
            f"{len(degraded['positions'])} erasure positions executed from the plan's degraded "
            f"rules: min top-1 agreement with the coded network "
            f"{degraded['min_top1_agreement']:.4f}, max abs logit difference "
            f"{degraded['max_abs_diff']:.2e}, mean degraded accuracy {degraded['accuracy']:.4f}"
        )
    if degraded is not None and not degraded["passed"]:
        bad = next(p for p in degraded["positions"] if not p["passed"])
        raise PlanError(
            f"{folder}: the plan's degraded rule for device {bad['device']} from point "
            f"{bad['from_point']} disagrees with the coded network (top-1 agreement "
            f"{bad['top1_agreement']:.4f}, max abs difference {bad['max_abs_diff']:.2e})"
        )
    ort = report.get("onnx")
    if ort is not None and not as_json:
        terminal.info(
            f"onnxruntime, {ort['segments']} segments: top-1 agreement "
            f"{ort['top1_agreement']:.4f}, max abs logit difference {ort['max_abs_diff']:.2e} "
            f"(tolerance {ort['tolerance']:.2e}), accuracy {ort['accuracy']:.4f}"
        )
    if ort is not None and not ort["passed"]:
        raise PlanError(
            f"{folder}: the plan's ONNX segments disagree with the frozen network (top-1 "
            f"agreement {ort['top1_agreement']:.4f}, max abs difference "
            f"{ort['max_abs_diff']:.2e}, tolerance {ort['tolerance']:.2e})"
        )
    if not report["passed"]:
        raise PlanError(
            f"{folder}: the plan disagrees with the frozen network (top-1 agreement "
            f"{report['top1_agreement']:.4f}, max abs difference {report['max_abs_diff']:.2e}, "
            f"tolerance {report['tolerance']:.2e})"
        )
    if not as_json:
        what = " and the coded network at every erasure position" if degraded else ""
        what += ", in torch and in onnxruntime" if ort is not None else ""
        terminal.success(f"the plan answers as the frozen network does{what}")
