"""The rejected alternative, measured: a ParM-style sum code of the data streams.

    python benchmarks/parity_sum_code.py [--run runs/bench-parity] [--epochs 8]

One parity device of one data device's size tracks S = sum_i X_i: it starts from G copies of
the stem, computes its own blocks (a learned prediction of how the sum evolves; with the
``concat`` side input its first convolution also reads every device's stream), and at every
point resynchronises on the exact sum of the encodings (full streams) and of the point's
payloads. A lost device j is decoded by subtraction, X^_j = Y^ - sum_{i != j} X_i (ParM's
decoder); device 0's answer from the pooled features the same way. The parity device is
trained on the code itself, MSE(Y^, S) before every resynchronisation: exactly the error of
the first decoded payload for every erasure position. Needs the fine-tuned quickstart of
benchmarks/parity.py (alpha = 1). Figures: docs/parity.md, "Alternatives".
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnas.data import load_for_space  # noqa: E402
from snnas.models.parity import erasure_grid, fail_at_tensor, parity_block_geometry  # noqa: E402
from snnas.models.resnext import Bottleneck, _init_weights  # noqa: E402
from snnas.models.supernet import FrozenSepResNeXt, aggregate, transmit  # noqa: E402
from snnas.train._finetuned import load_finetuned  # noqa: E402


class SideBlock(Bottleneck):
    """A bottleneck whose first convolution's output also gets a side input."""

    def forward(self, x: Tensor, side: Tensor | None = None) -> Tensor:  # type: ignore[override]
        identity = x
        out = self.conv1(x) if side is None else self.conv1(x) + side
        out = F.relu(self.bn1(out))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return F.relu(out + identity)


class SumCode(nn.Module):
    """The sum-code parity device over a frozen base with alpha = 1."""

    def __init__(self, base: FrozenSepResNeXt, concat: bool) -> None:
        super().__init__()
        space = base.space
        if space.overlap != 0:
            raise SystemExit("this alternative is written for alpha = 1 (overlap 0)")
        g, arch = space.groups, space.arch
        self.base, self.g, self.concat = base, g, concat
        paths = space.network.cardinality // g
        self.blocks = nn.ModuleList(
            SideBlock(parity_block_geometry(b, g, 1, 1), paths, 1) for b in arch.blocks
        )
        self.side = nn.ModuleDict()
        for geo in arch.points[:-1]:
            mid = self.blocks[geo.block + 1].conv1.out_channels
            self.side[str(geo.index)] = nn.Conv2d(g * geo.channels, mid, 1, bias=False)
        _init_weights(self)
        for conv in self.side.values():
            nn.init.zeros_(conv.weight)

    def forward(
        self, x: Tensor, fail_at: Tensor | None = None
    ) -> tuple[Tensor, dict[int, tuple[Tensor, Tensor]]]:
        base, g = self.base, self.g
        plans = {p.block: p for p in base.transfer_plans()}
        points = {geo.block: geo for geo in base.space.arch.points}
        with torch.no_grad():
            stem = base.stem(x)
        out = stem.repeat(1, g, 1, 1)
        y = g * stem  # (P1): the sum of G copies of the stem
        side: Tensor | None = None
        predictions: dict[int, tuple[Tensor, Tensor]] = {}  # point -> (Y^, every stream)
        n = x.shape[0]
        for b, (block, pblock) in enumerate(zip(base.blocks, self.blocks, strict=True)):
            with torch.no_grad():
                out = block(out)
            y = pblock(y, side)
            side = None
            geo = points[b]
            w, h = geo.channels, out.shape[-1]
            sent = out.view(n, g, w, h, h)
            sources = sent
            if fail_at is not None:
                lost = (fail_at <= geo.index).view(n, g, 1, 1, 1)
                estimate = y.unsqueeze(1) - (sent * ~lost).sum(1, keepdim=True)  # ParM: subtract
                sources = torch.where(lost, estimate.expand_as(sent), sent)
            predictions[geo.index] = (y, sent)
            plan = plans.get(b)
            d = transmit(sources.detach().flatten(1, 2), plan) if plan is not None else None
            y = sources.sum(1)  # resynchronise on the sum of what was sent ...
            if d is not None:
                y = y + F.pad(d.sum(1), (0, 0, 0, 0, 0, w - plan.n_send))  # ... and received
                with torch.no_grad():
                    out = aggregate(out, d, plan)
            if str(geo.index) in self.side and self.concat:
                side = self.side[str(geo.index)](sources.flatten(1, 2))
        w_last = base.head_width
        pooled = out.view(n, g, w_last, -1).mean(-1)
        features = pooled[:, 0]
        if fail_at is not None:
            lost0 = (fail_at[:, 0] < 1 << 20).view(n, 1)
            decoded = y.flatten(2).mean(-1) - pooled[:, 1:].sum(1)
            features = torch.where(lost0, decoded, features)
        return base.fc(features), predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "bench-parity")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--encoder", choices=["sum", "concat"], default="concat")
    args = parser.parse_args()
    base = load_finetuned(args.run)
    for p in base.parameters():
        p.requires_grad_(False)
    data = load_for_space("digits", base.space)
    torch.manual_seed(0)
    code = SumCode(base, args.encoder == "concat")
    optimizer = torch.optim.Adam(code.parameters(), lr=3e-3)
    loader = data.loader("train", 64, shuffle=True, seed=2, augment=True)
    steps, tic = args.epochs * len(loader), time.perf_counter()
    for epoch in range(args.epochs):
        loader.set_epoch(epoch)
        code.train()
        for step, (x, _) in enumerate(loader):
            t = epoch * len(loader) + step
            for group in optimizer.param_groups:
                group["lr"] = 3e-3 * 0.5 * (1 + math.cos(math.pi * t / steps))
            _, predictions = code(x)
            loss = sum(
                ((p - s.sum(1)) ** 2).mean() / (s.sum(1) ** 2).mean()
                for p, s in predictions.values()
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            optimizer.step()
    code.eval()
    g, points = base.space.groups, base.space.num_points
    positions = erasure_grid(g, points)
    correct = torch.zeros(len(positions))
    errors = torch.zeros(points)
    total = 0
    with torch.no_grad():
        for x, y in data.loader("test", 120):
            _, predictions = code(x)
            for q, (pred, s) in predictions.items():
                # The first decoded stream's error, X^_j - X_j = Y^ - S for every j, relative
                # to the mean energy of one device's stream.
                one = (s**2).sum() / g
                errors[q] += float(((pred - s.sum(1)) ** 2).sum() / one) * len(y)
            logits, _ = code(
                x.repeat(len(positions), 1, 1, 1), fail_at_tensor(positions, g, len(y))
            )
            hits = (logits.argmax(1) == y.repeat(len(positions))).view(len(positions), -1)
            correct += hits.sum(1).float()
            total += len(y)
    grid = (correct / total).view(g, points)
    result = {
        "encoder": args.encoder,
        "epochs": args.epochs,
        "first_decode_relative_error_by_point": (errors / total).tolist(),
        "degraded_acc": float(grid.mean()),
        "degraded_by_device": grid.mean(1).tolist(),
        "degraded_by_position": grid.tolist(),
        "train_s": time.perf_counter() - tic,
    }
    (args.run / f"sum_code_{args.encoder}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
