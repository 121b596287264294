"""A leecher that requests and never reads: the gateway's buffer for it stays bounded (the peer
pauses when the transport's buffer is full, reads no further piece and no further request), on
real loopback TCP."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from tests.peer.test_core import THEIR_ID, FakeTorrent
from tests.peer.test_protocol import FakeReader
from tgateway.peer import wire
from tgateway.peer.core import SessionConfig
from tgateway.peer.factory import PeerFactory
from tgateway.peer.protocol import SEND_BUFFER, WRITE_BATCH

pytestmark = pytest.mark.integration


def buffered(transport: Any) -> int:
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


class SlowReaderTests(TestCase):
    timeout = 60

    async def test_slow_reader_is_not_buffered_for(self) -> None:
        t = FakeTorrent(size=16384 * 2 * 400, piece_length=32768)  # 400 pieces of 32 KiB
        reader = FakeReader()
        factory = PeerFactory(
            clock=reactor, reader=reader,
            session_config=SessionConfig(peer_id=b"-TG0010-abcdefghijkl", reqq=800),
            has_info_hash=lambda ih: ih == t.info_hash_bytes,
            get_by_info_hash=lambda h: defer.succeed(t),
        )
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        sock = socket.socket()

        async def stop() -> None:
            sock.close()
            await task.deferLater(reactor, 0.1, lambda: None)
            await defer.maybeDeferred(port.stopListening)
            factory.close_all()
            await task.deferLater(reactor, 0.1, lambda: None)

        self.addCleanup(stop)
        # A tiny receive buffer: the kernel soon stops taking bytes for this peer.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port.getHost().port))
        requests = b"".join(
            struct.pack(">IBIII", 13, wire.REQUEST, i // 2, (i % 2) * 16384, 16384)
            for i in range(800))
        sock.sendall(wire.encode_handshake(wire.reserved_bits(), t.info_hash_bytes, THEIR_ID)
                     + struct.pack(">IB", 1, wire.INTERESTED) + requests)
        for _ in range(40):
            await task.deferLater(reactor, 0.05, lambda: None)
        (conn,) = factory.connections
        held = buffered(conn.transport)
        self.assertTrue(conn._paused, "the transport never paused the peer")
        self.assertLessEqual(held, SEND_BUFFER + WRITE_BATCH + 16384 + 13)
        served = conn.session.uploaded
        # most of the 12.5 MiB asked for was not produced
        self.assertLess(served, 800 * 16384 / 2)
        # the rest still waits as requests (read but not handled, or unread in the socket),
        # not as bytes: nothing more is read from this peer until its buffer drains
        self.assertTrue(conn._backlog)
        self.assertNotIn(conn.transport, reactor.getReaders())
        reads = len(reader.reads)
        await task.deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(len(reader.reads), reads)  # no piece read while paused
