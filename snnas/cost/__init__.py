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
    OpShape,
    alpha_scan,
    get_profile,
    latency,
    min_hiding_alpha,
    programs,
    simulate,
)
from snnas.cost._liveness import Liveness, Transfer, liveness, parity_live_blocks
from snnas.cost._parity import (
    DegradedRule,
    EncodingTransfer,
    ParityCost,
    ParityPlan,
    StandIn,
    degraded_rule,
    parity_plan,
)
from snnas.cost._parity_cost import parity_cost

__all__ = [
    "PROFILES",
    "CommReport",
    "ComputeReport",
    "DegradedRule",
    "DeviceProfile",
    "EncodingTransfer",
    "LatencyReport",
    "Liveness",
    "OpShape",
    "ParityCost",
    "ParityPlan",
    "PointBytes",
    "StandIn",
    "Transfer",
    "alpha_scan",
    "baseline_block_bytes",
    "communication",
    "compute",
    "degraded_rule",
    "get_profile",
    "latency",
    "liveness",
    "min_hiding_alpha",
    "parity_cost",
    "parity_live_blocks",
    "parity_plan",
    "programs",
    "simulate",
    "stem_bytes",
]
