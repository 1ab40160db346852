"""``snnas cost``: bytes, FLOPs, memory and latency of a policy, from the architecture alone."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from snnas.cli._terminal import Terminal, styled

if TYPE_CHECKING:
    from snnas.cost import ParityCost

__all__ = ["cost"]


def _mb(n: float) -> str:
    return f"{n / 1e6:.3f} MB"


def _ranges(blocks: tuple[int, ...]) -> str:
    """``(3, 4, 5, 8)`` -> ``"3-5, 8"``."""
    parts: list[str] = []
    start = prev = blocks[0]
    for b in (*blocks[1:], None):
        if b is not None and b == prev + 1:
            prev = b
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if b is not None:
            start = prev = b
    return ", ".join(parts)


@click.command()
@click.argument("space_file", metavar="SPACE", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--policy",
    "policy_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Policy JSON file of this space.",
)
@click.option(
    "--profile",
    "profile_name",
    default=None,
    help="Latency profile: rpi3b+ (default), a57x4, or a profile TOML file (snnas profile "
    "writes one; docs/cost-model.md).",
)
@click.option("--device", "device_alias", default=None, hidden=True)  # before --profile
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_obj
def cost(
    terminal: Terminal,
    space_file: Path,
    policy_file: Path,
    profile_name: str | None,
    device_alias: str | None,
    as_json: bool,
) -> None:
    """Communication, compute and latency of POLICY on SPACE (see docs/cost-model.md)."""
    from snnas.errors import UsageError

    if profile_name is not None and device_alias is not None:
        raise UsageError("--device", "only --profile (--device is its old name)", device_alias)
    from snnas.cost import (
        alpha_scan,
        communication,
        compute,
        get_profile,
        latency,
        min_hiding_alpha,
        parity_cost,
    )
    from snnas.space import load_space

    space = load_space(space_file)
    policy = space.load_policy(policy_file)
    if device_alias is not None:
        profile = get_profile(device_alias, "--device")
        terminal.warn("cost --device is deprecated: name the latency profile with --profile")
    else:
        profile = get_profile(profile_name or "rpi3b+", "--profile")
    comm = communication(space, policy)
    comp = compute(space, policy)
    lat = latency(space, policy, profile)
    scan = alpha_scan(space, profile)
    par = parity_cost(space, policy) if space.parity.r else None
    data = {
        "space": space.name,
        "space_hash": space.hash,
        "policy_file": str(policy_file),
        **comm.to_json(),
        "compute": comp.to_json(),
        "profile": profile.to_json(),
        "latency": lat.to_json(),
        "alpha_scan": scan,
        "min_hiding_alpha": min_hiding_alpha(scan),
        # Parity devices (docs/parity.md): their traffic and compute, on their own lines.
        "parity": par.to_json() if par else None,
    }
    if as_json:
        terminal.json(data)
        return

    from rich.table import Table

    table = Table(
        "pt",
        "blk",
        "perm",
        "level",
        "wire",
        "sent",
        "HxW",
        "tx",
        "bytes",
        "baseline",
        "ratio",
        "live tx",
        title=f"{space.name}: {policy_file.name}",
    )
    for p in comm.points:
        table.add_row(
            str(p.point),
            str(p.block),
            "".join(map(str, p.perm)),
            f"{p.sparsity:g}%",
            p.dtype.replace("float", "fp"),
            f"{p.n_send}/{p.channels}",
            f"{p.size}x{p.size}",
            str(p.senders),
            f"{p.bytes:,}",
            f"{p.baseline_bytes:,}",
            f"{100 * p.bytes / p.baseline_bytes:.2f}%",
            str(p.live_senders),
        )
    terminal.print(table)
    terminal.info(
        styled(
            f"policy {comm.policy_bytes:,} B / ring all-reduce baseline "
            f"{comm.baseline_bytes:,} B = ",
            (f"{100 * comm.ratio:.2f}%", "bold"),
        )
    )
    terminal.info(
        styled(
            f"live (reaches device 0's head): {comm.live_policy_bytes:,} B = ",
            (f"{100 * comm.live_ratio:.2f}%", "bold"),
        )
    )
    terminal.info(
        f"stem broadcast (first transmission) {comm.stem_bytes:,} B: "
        f"{100 * comm.ratio_with_stem:.2f}% with it on both sides, "
        f"{100 * comm.ratio_stem_policy_only:.2f}% on the policy side only"
    )
    dev = Table("device", "GFLOPs", "live GFLOPs", "skipped blocks", "params", "peak activations")
    for d in range(space.groups):
        skipped = comp.skipped_blocks[d]
        dev.add_row(
            str(d),
            f"{comp.flops_per_device[d] / 1e9:.4f}",
            f"{comp.live_flops_per_device[d] / 1e9:.4f}",
            _ranges(skipped) if skipped else "-",
            f"{comp.params_per_device[d]:,}",
            _mb(comp.peak_activation_bytes[d]),
        )
    terminal.print(dev)
    terminal.info(
        f"{profile.name}: latency {1e3 * lat.latency_s:.2f} ms "
        f"(compute {1e3 * lat.compute_only_s:.2f} ms, "
        f"exposed transfers {1e3 * lat.exposed_transfer_s:.2f} ms); one device "
        f"{1e3 * lat.single_device_s:.2f} ms, speedup {lat.speedup:.2f}x; "
        f"without pruning dead work {1e3 * lat.raw_latency_s:.2f} ms"
    )
    alpha = data["min_hiding_alpha"]
    terminal.info(
        "smallest alpha hiding every transfer (dense float32 policy): "
        + (str(alpha) if alpha is not None else "none")
    )
    if par is not None:
        _parity_lines(terminal, space.groups, par)


def _parity_lines(terminal: Terminal, groups: int, par: ParityCost) -> None:
    from rich.table import Table

    table = Table("parity device", "shadows", "GFLOPs", "params", title="parity devices")
    for k in range(par.r):
        table.add_row(
            str(groups + k),
            str(k),
            f"{par.flops_per_parity[k] / 1e9:.4f}",
            f"{par.params_per_parity[k]:,}",
        )
    terminal.print(table)
    per_point = ", ".join(f"t{p}: {b:,}" for p, b in enumerate(par.encoding_bytes_per_point))
    terminal.info(
        styled(
            f"parity traffic: image {par.image_bytes:,} B + encodings {par.encoding_bytes:,} B = ",
            (f"{par.bytes:,} B", "bold"),
            f" per image ({per_point})",
        )
    )
    extra = ", ".join(f"device {d}: {_ranges(b)}" for d, b in enumerate(par.extra_data_blocks) if b)
    terminal.info(
        f"parity compute: {par.flops / 1e9:.4f} GFLOPs per image, of which "
        f"{sum(par.extra_data_flops) / 1e9:.4f} on data devices for encodings"
        + (f" (blocks {extra})" if extra else "")
    )
    lost = ", ".join(f"{d}: {b:,} B" for d, b in enumerate(par.degraded_bytes))
    terminal.info(f"degraded operation, stand-in bytes per image by unavailable device: {lost}")
