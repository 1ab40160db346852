"""One plan engine: device programs executed against a transport, with a fault policy.

A device's part of a plan is a program (:func:`device_ops`, :func:`run_device`, and
:func:`run_parity_device` for a parity device); :func:`run` executes programs against a
:class:`Transport`: :class:`MailboxTransport` (every device in this process),
``snnas.runtime.GlooTransport`` (one device per process) or :class:`SimulatedTransport` (a
simulated clock per device, what the cost model predicts with). A :class:`FaultPolicy`
says which device is missing from which point and what stands in for it.
"""

from snnas.engine._engine import FaultPolicy, Route, Trace, Transport, Unavailable, run
from snnas.engine._layout import device_entries, encoding_pairs, parity_blocks, transfer_pairs
from snnas.engine._mailbox import MailboxTransport, drive
from snnas.engine._parity import (
    Erasure,
    ErasureFault,
    ParityCompute,
    ParityNet,
    encoder_update,
    imputed,
    run_parity_device,
    standin_payload,
)
from snnas.engine._program import (
    ENCODING_TAG,
    STANDIN_TAG,
    WIRE_DTYPES,
    DeviceCompute,
    Op,
    Program,
    Receive,
    Send,
    add_payload,
    device_ops,
    payload,
    run_device,
    transfer_tag,
)
from snnas.engine._simulated import Price, SimulatedNet, SimulatedTransport, simulate_programs

__all__ = [
    "ENCODING_TAG",
    "STANDIN_TAG",
    "WIRE_DTYPES",
    "DeviceCompute",
    "Erasure",
    "ErasureFault",
    "FaultPolicy",
    "MailboxTransport",
    "Op",
    "ParityCompute",
    "ParityNet",
    "Price",
    "Program",
    "Receive",
    "Route",
    "Send",
    "SimulatedNet",
    "SimulatedTransport",
    "Trace",
    "Transport",
    "Unavailable",
    "add_payload",
    "device_entries",
    "device_ops",
    "drive",
    "encoder_update",
    "encoding_pairs",
    "imputed",
    "parity_blocks",
    "payload",
    "run",
    "run_device",
    "run_parity_device",
    "simulate_programs",
    "standin_payload",
    "transfer_pairs",
    "transfer_tag",
]
