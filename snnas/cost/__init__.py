"""Communication and compute cost model (see ``docs/cost-model.md``)."""

from snnas.cost._comm import (
    CommReport,
    PointBytes,
    baseline_block_bytes,
    communication,
    stem_bytes,
)
from snnas.cost._compute import ComputeReport, compute
from snnas.cost._latency import (
    PROFILES,
    DeviceProfile,
    LatencyReport,
    alpha_scan,
    get_profile,
    latency,
    min_hiding_alpha,
    simulate,
)
from snnas.cost._liveness import Liveness, Transfer, liveness

__all__ = [
    "PROFILES",
    "CommReport",
    "ComputeReport",
    "DeviceProfile",
    "LatencyReport",
    "Liveness",
    "PointBytes",
    "Transfer",
    "alpha_scan",
    "baseline_block_bytes",
    "communication",
    "compute",
    "get_profile",
    "latency",
    "liveness",
    "min_hiding_alpha",
    "simulate",
    "stem_bytes",
]
