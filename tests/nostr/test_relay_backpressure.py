"""A relay that does not read what the gateway sends: the autobahn adapter over a transport that
queues like TCP. Messages wait in the session, the connection's queue stays bounded, and a
connection that does not drain is dropped (the pool then reconnects and sends them again)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.slowreader import QueueingTransport
from tgateway.nostr.event import Event, EventTemplate, sign
from tgateway.nostr.relay import SEND_HIGH, SEND_STALL, RelayClientFactory
from tgateway.nostr.relay_session import RelaySession

from .fakerelay import NO_TIMERS

KEY = b"\x11" * 32
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def big_note(n: int) -> Event:
    return sign(EventTemplate(kind=1, created_at=1000 + n, content=f"{n} " + "x" * 2000), KEY)


def client_messages(data: bytes) -> list[Any]:
    """The JSON messages in masked client text frames."""
    out = []
    while data:
        n = data[1] & 0x7F
        pos = 2
        if n == 126:
            n, pos = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, pos = int.from_bytes(data[2:10], "big"), 10
        mask, pos = data[pos:pos + 4], pos + 4
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data[pos:pos + n]))
        if data[0] & 0x0F == 0x1:
            out.append(json.loads(payload))
        data = data[pos + n:]
    return out


class SlowRelayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.session = RelaySession("ws://relay.test")
        self.factory = RelayClientFactory(self.session, self.clock)
        self.factory.setProtocolOptions(**NO_TIMERS)
        self.results: list[tuple[bool, str]] = []

    def open(self) -> tuple[Any, QueueingTransport]:
        addr = IPv4Address("TCP", "127.0.0.1", 7447)
        transport = QueueingTransport(peerAddress=addr)
        proto = self.factory.buildProtocol(addr)
        proto.makeConnection(transport)
        key = re.search(rb"Sec-WebSocket-Key: (\S+)", transport.value()).group(1)  # type: ignore[union-attr]
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        transport.drain()
        transport.clear()
        proto.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        self.assertTrue(self.session.connected)
        self.assertIs(transport.producer, proto.bound)
        return proto, transport

    def events_written(self, transport: QueueingTransport) -> list[str]:
        return [m[1]["id"] for m in client_messages(transport.value()) if m[0] == "EVENT"]

    def test_messages_wait_in_the_session_while_the_relay_does_not_read(self) -> None:
        proto, transport = self.open()
        events = [big_note(n) for n in range(100)]  # 100 events of 2 KB
        for e in events:
            self.session.publish(e, lambda a, m: self.results.append((a, m)))
        written = self.events_written(transport)
        self.assertLess(len(written), 40)  # what fits under the threshold, in order
        self.assertEqual(written, [e.id for e in events[:len(written)]])
        self.assertLessEqual(transport.most_queued, SEND_HIGH + 4096)
        self.assertFalse(transport.reading)
        self.assertEqual(self.session.pending_publishes, 100)  # the rest waits, unsent
        # the relay reads: the rest goes out, never more than the threshold queued at once
        while len(self.events_written(transport)) < 100:
            transport.drain()
        self.assertEqual(self.events_written(transport), [e.id for e in events])
        self.assertLessEqual(transport.most_queued, SEND_HIGH + 4096)
        self.assertTrue(transport.reading)
        proto.connectionLost(Failure(ConnectionAborted()))

    def test_a_relay_that_does_not_drain_is_dropped_and_the_work_resent(self) -> None:
        proto, transport = self.open()
        events = [big_note(n) for n in range(40)]
        for e in events:
            self.session.publish(e, lambda a, m: self.results.append((a, m)))
        first = self.events_written(transport)
        self.clock.advance(SEND_STALL - 1)
        self.assertFalse(transport.aborted)
        self.clock.advance(1)
        self.assertTrue(transport.aborted)  # dropped; the pool's retry policy reconnects
        proto.connectionLost(Failure(ConnectionAborted()))
        self.assertFalse(self.session.connected)
        self.assertEqual(self.session.pending_publishes, 40)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        proto, transport = self.open()  # the new connection starts with the oldest
        self.assertEqual(self.events_written(transport)[:len(first)], first)
        while len(self.events_written(transport)) < 40:
            transport.drain()
        self.assertEqual(self.events_written(transport), [e.id for e in events])
        proto.dataReceived(b"\x81" + bytes([len(f'["OK","{events[0].id}",true,""]')])
                           + f'["OK","{events[0].id}",true,""]'.encode())
        self.assertEqual(self.results, [(True, "")])
        proto.connectionLost(Failure(ConnectionAborted()))
