"""Every device in this process: a mailbox carries the payloads (``plan verify``, the
degraded execution of parity plans, the ONNX check)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from snnas.engine._engine import Transport, run
from snnas.engine._program import Program, Receive, Send
from snnas.errors import PlanError

__all__ = ["MailboxTransport", "drive"]


class MailboxTransport(Transport):
    """Payloads posted under ``(sender, receiver, tag)`` until taken."""

    def __init__(self) -> None:
        self.box: dict[tuple[int, int, int], Tensor] = {}

    def send(self, device: int, send: Send, tensor: Tensor, image: int) -> None:
        """Post the payload."""
        self.box[(device, send.to, send.tag)] = tensor

    def send_tagged(self, device: int, to: int, tag: int, tensor: Tensor, image: int) -> None:
        """Post a stand-in."""
        self.box[(device, to, tag)] = tensor

    def receive(
        self,
        device: int,
        receive: Receive,
        src: int,
        tag: int,
        image: int,
        give_up: Callable[[], bool] | None = None,
    ) -> Tensor | None:
        """Take the payload, or None while it has not been posted."""
        return self.box.pop((src, device, tag), None)


def drive(programs: Mapping[int, Program], batch: int) -> Tensor:
    """Run device programs (``run_device`` and the like) to the end in this process through
    the engine and a mailbox; the one answer. A plan that can never finish, or that sends a
    payload nobody receives, is refused."""
    transport = MailboxTransport()
    answers = run(programs, transport, batch=batch)
    if transport.box:
        raise PlanError(f"payloads sent but never received: {sorted(transport.box)}")
    if not answers:
        raise PlanError("no device produced logits (the plan has no head)")
    return next(iter(answers.values()))
