"""``snnas.cost``: what a policy costs, from the architecture alone (``snnas cost``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snnas.space import SearchSpace, load_space

if TYPE_CHECKING:
    from snnas.cost import CommReport, ComputeReport, DeviceProfile, LatencyReport, ParityCost

__all__ = ["Cost", "cost"]


@dataclass(frozen=True)
class Cost:
    """Bytes, FLOPs, memory and latency of one policy (``docs/cost-model.md``).

    Attributes:
        communication: Bytes per transmission point against the ring all-reduce baseline,
            raw and live (``ratio``, ``live_ratio``, ``policy_bytes``, ...).
        compute: FLOPs (raw and live), parameters and peak activations per device.
        latency: The simulated latency of one image under ``profile``.
        profile: The device profile the latency is for.
        parity: The parity devices' traffic and compute (``None`` without them).
    """

    communication: CommReport
    compute: ComputeReport
    latency: LatencyReport
    profile: DeviceProfile
    parity: ParityCost | None

    @property
    def ratio(self) -> float:
        """The policy's bytes as a fraction of a ring all-reduce's."""
        return float(self.communication.ratio)

    @property
    def latency_ms(self) -> float:
        """Predicted latency of one image, in milliseconds."""
        return 1e3 * float(self.latency.latency_s)

    def to_json(self) -> dict[str, Any]:
        """JSON form (as ``snnas cost --json`` reports the same figures)."""
        return {
            **self.communication.to_json(),
            "compute": self.compute.to_json(),
            "device": {**vars(self.profile)},
            "latency": self.latency.to_json(),
            "parity": self.parity.to_json() if self.parity is not None else None,
        }


def cost(
    space: SearchSpace | str | Path,
    policy: Mapping[str, Any] | str | Path,
    profile: DeviceProfile | str | Path | None = None,
) -> Cost:
    """What ``policy`` costs on ``space``.

    Args:
        space: A :class:`~snnas.SearchSpace` or the path of its TOML file.
        policy: ``{label: value}`` or the path of a policy JSON file of the space.
        profile: The latency profile: a shipped name (``rpi3b+``, the default; ``a57x4``), a
            TOML file, or a :class:`~snnas.cost.DeviceProfile`.

    Returns:
        The figures (:class:`Cost`).
    """
    from snnas.cost import (
        DeviceProfile,
        communication,
        compute,
        get_profile,
        latency,
        parity_cost,
    )

    if not isinstance(space, SearchSpace):
        space = load_space(space)
    chosen = space.validate(policy) if isinstance(policy, Mapping) else space.load_policy(policy)
    if profile is None:
        profile = "rpi3b+"
    device = profile if isinstance(profile, DeviceProfile) else get_profile(str(profile), "profile")
    return Cost(
        communication(space, chosen),
        compute(space, chosen),
        latency(space, chosen, device),
        device,
        parity_cost(space, chosen) if space.parity.r else None,
    )
