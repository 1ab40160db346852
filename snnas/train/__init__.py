"""Training runs for the plain ResNeXt, fixed-policy Sep-ResNeXts and the supernet."""

from snnas.train._config import TrainConfig, default_config
from snnas.train._trainer import Accelerator, TrainResult, evaluate, train

__all__ = ["Accelerator", "TrainConfig", "TrainResult", "default_config", "evaluate", "train"]
