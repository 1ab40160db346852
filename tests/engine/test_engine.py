"""The engine's loop and its in-process transports, on hand-made programs."""

import pytest
import torch

from snnas.engine import MailboxTransport, Receive, Send, SimulatedTransport, run
from snnas.errors import PlanError

SHAPE = (2, 1, 1)


def _send(to, point=0, nbytes=8):
    return Send("transfer", point, 0, to, (0, 2), "float32", SHAPE, nbytes)


def _recv(src, point=0, nbytes=8):
    return Receive("transfer", point, src, 0, 0, (0, 2), "float32", SHAPE, nbytes)


def _sender(to, value, point=0):
    yield ("send", _send(to, point), torch.full((1, *SHAPE), value))
    return None


def _receiver(src, point=0):
    got = yield ("recv", _recv(src, point), None)
    return got.clone()


def test_a_payload_goes_from_sender_to_receiver():
    answers = run({0: _receiver(1), 1: _sender(0, 3.0)}, MailboxTransport())
    assert answers[0].tolist() == [[[[3.0]], [[3.0]]]]


def test_programs_that_wait_on_each_other_are_refused():
    def both(me, other):
        got = yield ("recv", _recv(other), None)
        yield ("send", _send(other), got)

    with pytest.raises(
        PlanError, match=r"cannot finish: devices wait on .*\{0: \(1, 0\), 1: \(0, 0\)\}"
    ):
        run({0: both(0, 1), 1: both(1, 0)}, MailboxTransport())


def test_a_payload_of_the_wrong_shape_is_refused():
    def wrong():
        yield ("send", _send(0), torch.zeros(1, 3, 1, 1))

    with pytest.raises(PlanError, match=r"device 0 expected \(1, 2, 1, 1\) float32 from device 1"):
        run({0: _receiver(1), 1: wrong()}, MailboxTransport())


def test_a_link_carries_one_transfer_at_a_time():
    """Device 1 sends two payloads (0.25 s of software each, then 1 s each on its link);
    device 0 receives both (0.5 s each). The first arrives at 1.25 s, taken by 1.75 s; the
    second waits for the link: 1.25 + 1 = 2.25 s, taken by 2.75 s."""

    def two():
        yield ("send", _send(0, 0), torch.zeros(1, *SHAPE))
        yield ("send", _send(0, 1), torch.zeros(1, *SHAPE))

    def takes_two():
        yield ("recv", _recv(1, 0), None)
        yield ("recv", _recv(1, 1), None)

    clock = {0: 0.0, 1: 0.0}
    transport = SimulatedTransport(clock, lambda nbytes: nbytes / 8.0, send_s=0.25, recv_s=0.5)
    run({0: takes_two(), 1: two()}, transport)
    assert clock == {0: 2.75, 1: 0.5}
    assert transport.link_free == {1: 2.25}
