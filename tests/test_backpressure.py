"""SendBound: the transport's producer calls, the limit on bytes written while paused, the stall."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.slowreader import QueueingTransport
from tgateway.backpressure import SendBound


class Owner:
    def __init__(self) -> None:
        self.events: list[str] = []

    def sending_paused(self) -> None:
        self.events.append("paused")

    def sending_resumed(self) -> None:
        self.events.append("resumed")

    def send_bound_exceeded(self, reason: str) -> None:
        self.events.append(reason)


class HttpChannelStandIn:
    """What a twisted.web channel leaves registered on the transport it hands over."""

    def pauseProducing(self) -> None:
        raise AssertionError("the old producer must not be called any more")

    resumeProducing = stopProducing = pauseProducing


class SendBoundTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.owner = Owner()
        self.transport = QueueingTransport()
        self.bound = SendBound(self.owner, self.clock, high=1000, limit=500, stall=30.0)
        self.bound.attach(self.transport)

    def test_attach_sets_the_threshold_and_takes_the_producer_slot(self) -> None:
        self.assertIs(self.transport.producer, self.bound)
        self.assertTrue(self.transport.streaming)
        self.assertEqual(self.transport.bufferSize, 1000)
        upgraded = QueueingTransport()
        upgraded.registerProducer(HttpChannelStandIn(), True)
        bound = SendBound(Owner(), self.clock, high=1000, limit=500, stall=30.0)
        bound.attach(upgraded)
        self.assertIs(upgraded.producer, bound)
        upgraded.write(b"x" * 1001)
        self.assertTrue(bound.paused)

    def test_pause_stops_reading_and_resume_restarts_it(self) -> None:
        self.transport.write(b"x" * 999)
        self.assertEqual(self.owner.events, [])
        self.transport.write(b"x" * 2)
        self.transport.write(b"x")  # the transport repeats pauseProducing: told once
        self.assertEqual(self.owner.events, ["paused"])
        self.assertTrue(self.bound.paused)
        self.assertFalse(self.transport.reading)
        self.transport.drain(1000)
        self.assertTrue(self.bound.paused)  # resumed only once everything is taken
        self.transport.drain()
        self.assertEqual(self.owner.events, ["paused", "resumed"])
        self.assertFalse(self.bound.paused)
        self.assertTrue(self.transport.reading)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.bound.pauses, 1)

    def test_bytes_written_while_paused_are_limited(self) -> None:
        self.transport.write(b"x" * 1001)
        self.assertTrue(self.bound.wrote(300))
        self.assertTrue(self.bound.wrote(200))
        self.assertFalse(self.bound.wrote(1))
        self.assertEqual(self.owner.events, ["paused", "limit"])
        self.assertFalse(self.bound.wrote(1))  # once told, every further write is refused
        self.assertEqual(self.owner.events, ["paused", "limit"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_each_pause_gets_the_whole_limit(self) -> None:
        self.transport.write(b"x" * 1001)
        self.assertTrue(self.bound.wrote(500))
        self.transport.drain()
        self.transport.write(b"x" * 1001)
        self.assertTrue(self.bound.wrote(500))

    def test_a_stalled_transport_is_reported_once(self) -> None:
        self.transport.write(b"x" * 1001)
        self.clock.advance(29)
        self.transport.drain(500)  # some progress is not enough: all of it must go
        self.assertEqual(self.owner.events, ["paused"])
        self.clock.advance(1)
        self.assertEqual(self.owner.events, ["paused", "stalled"])
        self.clock.advance(100)
        self.assertEqual(self.owner.events, ["paused", "stalled"])

    def test_drained_in_time_is_not_stalled(self) -> None:
        self.transport.write(b"x" * 1001)
        self.clock.advance(29)
        self.transport.drain()
        self.clock.advance(100)
        self.assertEqual(self.owner.events, ["paused", "resumed"])

    def test_detach_cancels_the_stall_timer(self) -> None:
        self.transport.write(b"x" * 1001)
        self.bound.detach()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(100)
        self.assertEqual(self.owner.events, ["paused"])
        self.bound.stopProducing()  # what the transport calls when it closes: harmless
