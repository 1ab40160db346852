"""Parity devices (G = 4, r = 1) against every other way to survive a lost device: the issues'
goals, measured end to end through the commands a user runs.

    python benchmarks/parity.py [--runs-dir runs] [--name bench-parity] [--variants ...]
    python benchmarks/parity.py --space search_spaces/fashion_parity.toml \
        --dataset fashion-mnist --name h2h-fashion --epochs 1 --train-images 5000 \
        --backup-epochs 3

1. ``snnas search SPACE --name NAME --dataset DATASET`` (SPACE: quickstart_parity.toml by
   default; the dataset's defaults: REINFORCE, 10 iterations, seed 0): the supernet and the
   selected policy;
2. ``snnas finetune NAME`` (the dataset's defaults, e.g. digits 20 epochs at lr 0.03,
   Fashion-MNIST 5 epochs at lr 0.01; chosen on validation);
3. ``snnas parity train NAME --method failout`` (RUN/failout: the fine-tuned network trained
   further with data devices dropped at random) and ``snnas parity train NAME --base failout
   --choices ... --name parity-failout`` (failout + parity: the ``sum`` variant's parity
   device trained against the failout network), both with the parity training's epochs;
4. for every variant, ``snnas parity train NAME --choices ... --name parity-VARIANT`` and
   ``snnas parity eval NAME --name parity-VARIANT --json`` (the full test split, with the
   baselines, failout and failout + parity included; the backup model is trained once and
   its ``backup.pt`` reused by the others).

Every step is the command itself, run in a subprocess with this interpreter. Goal (issue
10): A_degraded within 5 points of A_available and above every baseline at equal extra
resources; issue 15 on Fashion-MNIST: the best coded method within 3 points of A_available
and above every equal-resource baseline. Finished steps are reused when the script runs
again. Figures: docs/parity.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnas.space import load_space  # noqa: E402

SPACE = ROOT / "search_spaces" / "quickstart_parity.toml"


def _protect(level: float, encoder: str, space_file: Path = SPACE) -> dict[str, Any]:
    space = load_space(space_file)
    choices: dict[str, Any] = {d.label: level for d in space.decisions if d.kind == "encode"}
    choices.update({d.label: encoder for d in space.decisions if d.kind == "encoder"})
    return choices


#: name -> (parity decisions, extra ``snnas parity train`` options)
VARIANTS: dict[str, tuple[tuple[float, str], list[str]]] = {
    "sum": ((100.0, "sum"), []),  # the main one: one device's FLOPs, as the baselines
    "concat": ((100.0, "concat"), []),  # a 1x1 convolution encoder: many more FLOPs
    "mirror": ((100.0, "mirror"), []),  # the bytes of replicating device 0
    "half": ((50.0, "sum"), []),  # half the encoding bytes
    "labels": ((100.0, "sum"), ["--label-weight", "1"]),  # distillation + labels
    "scratch": ((100.0, "concat"), ["--init", "scratch"]),  # ablation: no shadow init
}


#: ``--train-images`` of every parity and failout training (None: the whole split)
TRAIN_IMAGES: int | None = None


def snnas(*args: str, log: Path) -> Any:
    """Run ``python -m snnas ARGS --json``; return its JSON (stderr appended to ``log``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "snnas", *args, "--json"]
    print("$ snnas " + " ".join(args), file=sys.stderr, flush=True)
    with log.open("a", encoding="utf-8") as err:
        err.write("$ snnas " + " ".join(args) + "\n")
        err.flush()
        done = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err)
    if done.returncode != 0:
        sys.exit(f"snnas {' '.join(args)} failed ({done.returncode}); see {log}")
    return json.loads(done.stdout)


def _train(
    runs: Path, name: str, folder: str, options: list[str], epochs: int | None, log: Path
) -> None:
    """``snnas parity train NAME OPTIONS --name FOLDER`` (skipped when finished, resumed when
    interrupted); its wall time lands in FOLDER/train_time_s."""
    path = runs / name / folder
    if (path / "final.json").is_file():
        return
    resume = ["--resume"] if (path / "last.pt").is_file() else []
    more = ["--epochs", str(epochs)] if epochs else []
    more += ["--train-images", str(TRAIN_IMAGES)] if TRAIN_IMAGES else []
    tic = time.perf_counter()
    snnas("parity", "train", str(runs / name), "--name", folder, "--device", "cpu", *options,
          *more, *resume, log=log)  # fmt: skip
    (path / "train_time_s").write_text(f"{time.perf_counter() - tic:.1f}\n")


def _choices(runs: Path, name: str, variant: str) -> str:
    (level, encoder), _ = VARIANTS[variant]
    choices = runs / name / f"choices-{variant}.json"
    config = json.loads((runs / name / "config.json").read_text(encoding="utf-8"))
    space_file = runs / name / "space.toml"  # the run's own space, whatever file it came from
    space_file.write_text(config["space_toml"], encoding="utf-8")
    choices.write_text(json.dumps(_protect(level, encoder, space_file)), encoding="utf-8")
    return str(choices)


def failout_stage(runs: Path, name: str, epochs: int | None, log: Path) -> None:
    """Failout, then failout + parity (the ``sum`` variant's parity device on its network)."""
    _train(runs, name, "failout", ["--method", "failout"], epochs, log)
    choices = _choices(runs, name, "sum")
    _train(runs, name, "parity-failout", ["--base", "failout", "--choices", choices], epochs, log)


def variant_stage(
    runs: Path, name: str, variant: str, epochs: int | None, backup: int | None, log: Path
) -> dict[str, Any]:
    """Train and score one parity variant (reused when its eval.json exists and scores
    failout and failout + parity)."""
    folder = runs / name / f"parity-{variant}"
    if (folder / "eval.json").is_file():
        done: dict[str, Any] = json.loads((folder / "eval.json").read_text(encoding="utf-8"))
        if "failout+parity" in done["baselines"]:
            return done
    _, options = VARIANTS[variant]
    choices = _choices(runs, name, variant)
    _train(runs, name, folder.name, ["--choices", choices, *options], epochs, log)
    for other in (runs / name).glob("parity-*/backup.pt"):  # one backup model for all
        if not (folder / "backup.pt").is_file():
            shutil.copy(other, folder / "backup.pt")
    more = ["--backup-epochs", str(backup)] if backup else []
    result: dict[str, Any] = snnas(
        "parity", "eval", str(runs / name), "--name", folder.name, "--device", "cpu", *more,
        log=log,
    )  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs")
    parser.add_argument("--name", default="bench-parity")
    parser.add_argument("--space", type=Path, default=SPACE, help="a space with [parity] r = 1")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--epochs", type=int, default=None, help="parity training epochs")
    parser.add_argument("--finetune-epochs", type=int, default=None)
    parser.add_argument("--backup-epochs", type=int, default=None)
    parser.add_argument("--train-images", type=int, default=None, help="parity and failout")
    parser.add_argument(
        "--search-set", action="append", default=[], help="snnas search --set (a smoke run)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    global TRAIN_IMAGES
    TRAIN_IMAGES = args.train_images
    runs, name = args.runs_dir.resolve(), args.name
    (runs / name).mkdir(parents=True, exist_ok=True)
    log = runs / f"{name}.log"
    tic = time.perf_counter()
    if not (runs / name / "summary.json").is_file():
        resume = ["--resume"] if (runs / name / "last.pt").is_file() else []
        sets = [a for kv in args.search_set for a in ("--set", kv)]
        data = ["--dataset", args.dataset]
        data += ["--data-dir", str(args.data_dir)] if args.data_dir else []
        snnas("search", str(args.space), "--name", name, "--runs-dir", str(runs), "--device",
              "cpu", *data, *sets, *resume, log=log)  # fmt: skip
    search = json.loads((runs / name / "summary.json").read_text(encoding="utf-8"))
    if not (runs / name / "finetune" / "final.json").is_file():
        resume = ["--resume"] if (runs / name / "finetune" / "last.pt").is_file() else []
        more = ["--epochs", str(args.finetune_epochs)] if args.finetune_epochs else []
        snnas("finetune", name, "--runs-dir", str(runs), "--device", "cpu", *more, *resume,
              log=log)  # fmt: skip
    finetune = json.loads((runs / name / "finetune" / "final.json").read_text(encoding="utf-8"))
    failout_stage(runs, name, args.epochs, log)
    results = {}
    for variant in args.variants.split(","):
        results[variant] = variant_stage(runs, name, variant, args.epochs, args.backup_epochs, log)
    main_result = next(iter(results.values()))
    baselines = main_result["baselines"]
    goal = {
        variant: {
            "within_5_points": r["degraded_acc"] >= r["available_acc"] - 0.05,
            "within_3_points": r["degraded_acc"] >= r["available_acc"] - 0.03,
            "above_every_baseline": all(
                r["degraded_acc"] > b["degraded_acc"] for b in r["baselines"].values()
            ),
            "a_overall_10_above_every_baseline": all(
                r["overall"]["0.1"] > b["overall"]["0.1"] for b in r["baselines"].values()
            ),
        }
        for variant, r in results.items()
    }
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "search": {k: search.get(k) for k in ("best_val_acc", "best_test_acc", "best_comm_ratio")},
        "policy": finetune["policy"],
        "finetune": {k: finetune[k] for k in ("val_acc", "test_acc", "selected_epoch")},
        "goal": goal,
        "variants": {
            variant: {
                "available_acc": r["available_acc"],
                "degraded_acc": r["degraded_acc"],
                "degraded_by_device": r["degraded_by_device"],
                "overall": r["overall"],
                "extra_bytes": r["extra_bytes"],
                "extra_flops": r["extra_flops"],
                "params": r["parity_cost"]["params_per_parity"][0],
                "answers": r["answers"],
            }
            for variant, r in results.items()
        },
        "baselines": {
            method: {
                k: b[k]
                for k in (
                    "available_acc",
                    "degraded_acc",
                    "degraded_by_device",
                    "overall",
                    "extra_devices",
                    "extra_bytes",
                    "extra_flops",
                )
            }
            for method, b in baselines.items()
        },
        "wall_s": time.perf_counter() - tic,
    }
    (runs / name / "benchmark.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"A_available (test) {main_result['available_acc']:.4f}; goal: {goal}")
    n = main_result["images"]
    print(f"standard error of an accuracy a on {n} images: sqrt(a (1 - a) / {n})")
    rows = [(f"parity {v}", figures) for v, figures in summary["variants"].items()]
    rows += list(summary["baselines"].items())
    for method, figures in rows:
        print(
            f"{method:>16}: A_available {figures['available_acc']:.4f} "
            f"A_degraded {figures['degraded_acc']:.4f} "
            f"by device {[round(v, 3) for v in figures['degraded_by_device']]} "
            f"+{figures['extra_bytes'] / 1e3:.1f} kB +{figures['extra_flops'] / 1e6:.2f} MFLOPs"
        )


if __name__ == "__main__":
    main()
