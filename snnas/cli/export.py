"""``snnas export``: a fine-tuned run as a deployment plan folder."""

from __future__ import annotations

from pathlib import Path

import click

from snnas.cli._terminal import Terminal

__all__ = ["export"]


def _ranges(blocks: list[int]) -> str:
    """Block indices as ranges: ``[0, 1, 2, 5]`` -> ``"0-2, 5"`` (``"-"`` for none)."""
    spans: list[list[int]] = []
    for b in blocks:
        if spans and b == spans[-1][1] + 1:
            spans[-1][1] = b
        else:
            spans.append([b, b])
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in spans) or "-"


@click.command()
@click.argument("run_name", metavar="RUN")
@click.option(
    "--out",
    help="Plan folder: a path, wherever it is (default: RUN/plan); an older plan there is "
    "replaced atomically, anything else refused.",
)
@click.option("--onnx", is_flag=True, help="Also write one ONNX graph per device segment.")
@click.option(
    "--profile",
    "profile_name",
    default="rpi3b+",
    show_default=True,
    help="Device profile of the latency prediction: rpi3b+, a57x4 or a TOML file.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Folder holding the CIFAR python batches (CIFAR runs).",
)
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
)
@click.option(
    "--parity",
    "parity_name",
    help="Parity run folder under RUN (snnas parity train RUN) whose parity devices become "
    "devices of the plan (default: parity, when the run's space has [parity] r >= 1).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan's summary as JSON.")
@click.pass_obj
def export(
    terminal: Terminal,
    run_name: str,
    out: str | None,
    onnx: bool,
    profile_name: str,
    data_dir: Path | None,
    runs_dir: Path,
    parity_name: str | None,
    as_json: bool,
) -> None:
    """Export RUN's fine-tuned network (snnas finetune RUN) as a plan folder: plan.json,
    per-device safetensors weights, reference logits, and with --onnx the segments."""
    from snnas._run import explicit_folder
    from snnas.api import ExportJob
    from snnas.cli._progress import progress_bars
    from snnas.cli._runs import existing_run

    run = existing_run(runs_dir, run_name)
    target = explicit_folder(out, "--out") if out is not None else None
    job = ExportJob(
        run.path, out=target, onnx=onnx, profile=profile_name, data_dir=data_dir,
        parity=parity_name,
    )  # fmt: skip
    target = job.target
    space = job.space
    if not as_json:
        terminal.info(f"exporting {run.path.name} ({space.name}, G={space.groups}) -> {target}")
    with progress_bars(terminal, "export") as progress:
        plan = job.run(progress)
    totals = plan["totals"]
    summary = {
        "plan": str(target),
        "devices": [
            {
                "device": e["device"],
                "blocks": e["blocks"],
                "skipped_blocks": e["skipped_blocks"],
                "sends": len(e["sends"]),
                "receives": len(e["receives"]),
                "flops": e["flops"],
                "params": e["params"],
                "weights": e["weights"]["file"] if e["weights"] else None,
                "onnx_segments": len(e.get("onnx", [])),
            }
            for e in plan["devices"]
        ],
        "bytes_per_image": totals["bytes_per_image"],
        "live_ratio": totals["live_ratio"],
        "ratio": totals["ratio"],
        "prediction": plan["prediction"],
        "accuracy": plan["accuracy"],
    }
    parity = plan.get("parity")
    if parity is not None:
        summary["parity"] = {
            "devices": parity["devices"],
            "encoding_bytes": parity["encoding_bytes"],
            "image_bytes": parity["image_bytes"],
            "answers": parity["answers"],
            "rules": len(parity["rules"]),
        }
    if onnx:
        diffs = [s["max_abs_diff"] for e in plan["devices"] for s in e.get("onnx", [])]
        summary["onnx_max_abs_diff"] = max(diffs, default=0.0)
    if as_json:
        terminal.json(summary)
        return
    from rich.table import Table

    table = Table("device", "blocks", "skipped blocks", "sends", "receives", "MFLOPs", "params")
    for e in summary["devices"]:
        table.add_row(
            str(e["device"]),
            _ranges(e["blocks"]),
            _ranges(e["skipped_blocks"]),
            str(e["sends"]),
            str(e["receives"]),
            f"{e['flops'] / 1e6:.3f}",
            f"{e['params']:,}",
        )
    terminal.print(table)
    pred = plan["prediction"]
    terminal.success(
        f"{totals['bytes_per_image']:,} B per image on the wire (live ratio "
        f"{100 * totals['live_ratio']:.2f}%); validation {plan['accuracy']['val']:.4f}, "
        f"test {plan['accuracy']['test']:.4f}; predicted {pred['latency_ms']:.2f} ms on "
        f"{pred['profile']}"
    )
    if parity is not None:
        terminal.info(
            f"parity devices {parity['devices']}: {parity['encoding_bytes']:,} B of encodings "
            f"and {parity['image_bytes']:,} B of image per parity device per image (apart from "
            f"the policy's traffic); degraded rules for {len(parity['rules'])} erasure positions"
        )
    if onnx:
        terminal.info(f"ONNX segments checked with onnxruntime: max abs difference "
                      f"{summary['onnx_max_abs_diff']:.2e}")  # fmt: skip
    terminal.info(f"wrote {target}/plan.json; check it with: snnas plan verify {target}")
