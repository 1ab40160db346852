"""Running a deployment plan on real processes: one per device, torch.distributed (gloo)
point-to-point transfers, measured bytes and latency, failures reported and cleaned up."""

from snnas.runtime._launch import launch_local
from snnas.runtime._report import build_report, percentile
from snnas.runtime._transport import GlooTransport, TransferFailed
from snnas.runtime._worker import WorkerArgs, run_worker

__all__ = [
    "GlooTransport",
    "TransferFailed",
    "WorkerArgs",
    "build_report",
    "launch_local",
    "percentile",
    "run_worker",
]
