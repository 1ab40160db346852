"""Torch models: the plain ResNeXt baseline, the Sep-ResNeXt supernet and parity devices."""

from snnas.models.parity import CodedNetwork, CodedOutput, ParityDevice, ParityStreams
from snnas.models.resnext import Bottleneck, ResNeXt
from snnas.models.supernet import FrozenSepResNeXt, SepResNeXt, TransferPlan, make_plan

__all__ = [
    "Bottleneck",
    "CodedNetwork",
    "CodedOutput",
    "FrozenSepResNeXt",
    "ParityDevice",
    "ParityStreams",
    "ResNeXt",
    "SepResNeXt",
    "TransferPlan",
    "make_plan",
]
