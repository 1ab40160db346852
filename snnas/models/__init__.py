"""Torch models: the plain ResNeXt baseline and the Sep-ResNeXt supernet."""

from snnas.models.resnext import Bottleneck, ResNeXt
from snnas.models.supernet import FrozenSepResNeXt, SepResNeXt, TransferPlan, make_plan

__all__ = ["Bottleneck", "FrozenSepResNeXt", "ResNeXt", "SepResNeXt", "TransferPlan", "make_plan"]
