"""The whole snnas pipeline from Python, as a notebook would drive it (docs/api.md).

A tiny search space on the bundled digits: search a communication policy, fine-tune it,
export it as a deployment plan (outside the runs folder), run your own images through the
plan, verify it device by device, and (with ``--local``) run it on G real processes.

    python examples/pipeline.py                  # in a temporary folder, removed afterwards
    python examples/pipeline.py --keep DIR       # keep the runs and the plan in DIR
    python examples/pipeline.py --local          # also run the plan on G processes
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import snnas

#: A Sep-ResNeXt-11 on 8x8 digits split over 4 devices: small enough to search, fine-tune
#: and export in seconds on a CPU (search_spaces/quickstart.toml is the real quickstart).
SPACE = """\
name = "example"

[network]
depth = 11
cardinality = 4
bottleneck_width = 2
stage_widths = [8, 16, 32]
stem_width = 4
num_classes = 10
input_size = 8
input_channels = 1

[split]
groups = 4
alpha = 1

[decisions.permutation]
choices = "all"

[decisions.sparsity]
p_min = 50
levels = 3

[decisions.dtype]
choices = ["float32", "float16"]
"""

#: The same keys as ``snnas search --set``: one short iteration.
TINY = {
    "search.iterations": 1,
    "search.train_steps": 8,
    "search.strategy_steps": 2,
    "search.samples": 4,
    "search.topk": 2,
    "search.batch_size": 64,
    "search.rescore": 2,
}


def pipeline(folder: Path, local: bool = False) -> None:
    """Run every step in ``folder`` (the runs go to ``folder/runs``, the plan to
    ``folder/deploy/plan``)."""
    space_file = folder / "example.toml"
    space_file.write_text(SPACE)
    space = snnas.load_space(space_file)
    print(f"space {space.name}: {space.size:,} policies over {len(space.decisions)} decisions")

    run = snnas.search(
        space, name="demo", runs_dir=folder / "runs", overrides=TINY, strategy="random",
        device="cpu",
    )  # fmt: skip
    cost = snnas.cost(space, run.best_policy, profile="rpi3b+")
    print(
        f"search: {run.path}, validation accuracy {run.best_val_acc:.4f}, "
        f"{100 * cost.ratio:.2f}% of all-reduce's bytes, {cost.latency_ms:.2f} ms on rpi3b+"
    )

    tuned = snnas.finetune(run, epochs=2, device="cpu")
    print(f"finetune: validation {tuned.val_acc:.4f}, test {tuned.test_acc:.4f} ({tuned.path})")

    plan = snnas.export(tuned, out=folder / "deploy" / "plan")
    print(f"export: {plan}")

    # Your own images: raw 8x8 digits (pixel values 0..16), as the plan's input spec
    # describes them; forward applies the plan's normalisation and checks the shape.
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images[-100:], digits.target[-100:]  # (100, 8, 8)
    logits = plan.forward(images[:, None])  # (100, 1, 8, 8) -> (100, 10)
    correct = int((logits.argmax(1).numpy() == labels).sum())
    print(f"forward: {tuple(logits.shape)} logits, {correct} of {len(labels)} digits right")

    check = plan.verify()
    print(
        f"verify: top-1 agreement {check.top1_agreement:.4f} with the fine-tuned network, "
        f"max |difference| {check.max_abs_diff:.2e}, passed {check.passed}"
    )
    if local:
        live = plan.run_local(count=20)
        print(
            f"run_local: {live.images} images on {plan.groups} processes, top-1 agreement "
            f"{live.top1_agreement:.4f}, accuracy {live.accuracy:.4f}"
        )
        # The same images as above, on G processes: logits from real devices.
        mine = plan.run_local(images[:8, None])
        same = mine.predictions == logits[:8].argmax(1).tolist()
        print(f"run_local(images): predictions {mine.predictions}, as forward: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Run in this folder and keep what it writes.")
    parser.add_argument("--local", action="store_true", help="Also run on G real processes.")
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        pipeline(args.keep, args.local)
        return
    with tempfile.TemporaryDirectory(prefix="snnas-example-") as folder:
        pipeline(Path(folder), args.local)


if __name__ == "__main__":
    main()
