"""Training runs for the plain ResNeXt, fixed-policy Sep-ResNeXts and the supernet."""

from snnas.train._config import TrainConfig, default_config
from snnas.train._degraded import (
    OVERALL_RATES,
    DegradedReport,
    degraded_accuracy,
    degraded_report,
    overall,
)
from snnas.train._finetuned import load_finetuned, load_supernet
from snnas.train._parity import ParityTrainConfig, load_parity, load_parity_run, train_parity
from snnas.train._trainer import Accelerator, TrainResult, evaluate, train

__all__ = [
    "OVERALL_RATES",
    "Accelerator",
    "DegradedReport",
    "ParityTrainConfig",
    "TrainConfig",
    "TrainResult",
    "default_config",
    "degraded_accuracy",
    "degraded_report",
    "evaluate",
    "load_finetuned",
    "load_parity",
    "load_parity_run",
    "load_supernet",
    "overall",
    "train",
    "train_parity",
]
