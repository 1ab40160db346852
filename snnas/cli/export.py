"""``snnas export``: a fine-tuned run as a deployment plan folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from snnas.cli._terminal import Terminal

__all__ = ["export"]


def _final(tuned: Any) -> dict[str, Any]:
    """``finetune/final.json``: the accuracies the plan records, checked (finite, in [0, 1])."""
    from snnas._run import check_state
    from snnas.errors import CheckpointError, shorten

    path = tuned / "final.json"
    final = tuned.read_json("final.json")
    if not isinstance(final, dict):
        raise CheckpointError(f"{shorten(str(path))}: expected a JSON object")
    check_state(path, final, {"val_acc": (float, int), "test_acc": (float, int),
                              "selected_epoch": int})  # fmt: skip
    for key in ("val_acc", "test_acc"):
        if not 0 <= final[key] <= 1:
            raise CheckpointError(
                f"{shorten(str(path))}: {key} should be an accuracy in [0, 1], found {final[key]!r}"
            )
    if final["selected_epoch"] < 0:
        raise CheckpointError(f"{shorten(str(path))}: selected_epoch should be >= 0")
    final_dict: dict[str, Any] = final
    return final_dict


@click.command()
@click.argument("run_name", metavar="RUN")
@click.option(
    "--out",
    help="Plan folder: a name under --runs-dir (default: RUN/plan).",
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
    from snnas._run import RunDir
    from snnas.cli._progress import progress_bars
    from snnas.cli._runs import existing_run, inside_runs
    from snnas.cost import get_profile
    from snnas.data import load_for_space
    from snnas.errors import CheckpointError, UsageError
    from snnas.plan import export_plan, sha256_file
    from snnas.search._artifacts import load_run_space
    from snnas.train._finetune import BEST, FINETUNE_DIR, load_finetuned

    run = existing_run(runs_dir, run_name)
    profile = get_profile(profile_name, "--profile")
    space, config = load_run_space(run)
    tuned = RunDir(run / FINETUNE_DIR)
    if not (tuned / "final.json").is_file():
        raise CheckpointError(
            f"{run.path}: not fine-tuned yet (no {FINETUNE_DIR}/final.json); "
            f"run snnas finetune {run_name} first"
        )
    coded = None
    if parity_name is not None or space.parity.r >= 1:
        coded = _parity_run(run, run_name, parity_name or "parity")
        space, model = coded.space, coded.base
        if onnx:
            raise UsageError("--onnx", "a plan without parity devices", "--parity")
    else:
        model = load_finetuned(tuned, space)
    final = _final(tuned)
    data = load_for_space(config["dataset"], space, data_dir)
    target = inside_runs(runs_dir, out, "--out") if out is not None else run.path / "plan"
    if not as_json:
        terminal.info(f"exporting {run.path.name} ({space.name}, G={space.groups}) -> {target}")
    source = {
        "run": str(run.path),
        "checkpoint": f"{FINETUNE_DIR}/{BEST}",
        "sha256": sha256_file(tuned / BEST),
    }
    with progress_bars(terminal, "export") as progress:
        plan = export_plan(
            space, model, data, profile, final, target, source=source, onnx=onnx,
            progress=progress, coded=coded,
        )  # fmt: skip
    totals = plan["totals"]
    summary = {
        "plan": str(target),
        "devices": [
            {
                "device": e["device"],
                "blocks": len(e["blocks"]),
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

    table = Table("device", "blocks", "skipped", "sends", "receives", "MFLOPs", "params")
    for e in summary["devices"]:
        skipped = e["skipped_blocks"]
        table.add_row(
            str(e["device"]),
            str(e["blocks"]),
            ",".join(map(str, skipped)) if skipped else "-",
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


def _parity_run(run: Any, run_name: str, name: str) -> Any:
    """The coded network of RUN's parity folder ``name``, refused in one line when missing
    or not made from RUN's fine-tuned network."""
    from snnas._run import RunDir, resolve_run
    from snnas.errors import CheckpointError
    from snnas.models import FrozenSepResNeXt
    from snnas.train._parity import load_parity_run

    folder = RunDir(resolve_run(run.path, name, "--parity"))
    if not (folder.path / "config.json").is_file() or not (folder.path / "best.pt").is_file():
        raise CheckpointError(
            f"{folder.path}: no parity run (config.json and best.pt) for the parity devices; "
            f"run snnas parity train {run_name} first (or pass --parity NAME)"
        )
    coded = load_parity_run(folder)
    if not isinstance(coded.base, FrozenSepResNeXt):
        raise CheckpointError(
            f"{folder.path}: a parity run of the supernet, expected one of the fine-tuned "
            f"network (snnas parity train {run_name} without --supernet)"
        )
    return coded
