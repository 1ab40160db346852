"""Every device in this process: a mailbox carries the payloads (``plan verify``, the
degraded execution of parity plans, the ONNX check)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from snnas.engine._engine import Transport
from snnas.engine._program import Receive, Send

__all__ = ["MailboxTransport"]


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
