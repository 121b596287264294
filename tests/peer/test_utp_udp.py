"""The Twisted adapter of uTP on a real UDP socket (loopback): a connection is a stream transport
for an ordinary protocol, both ways; writes are flow-controlled like TCP; FIN and RESET end it as
ConnectionDone and ConnectionLost; garbage on the port changes nothing."""

from __future__ import annotations

import os
import random
import socket
from typing import Any

import pytest
from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tgateway.peer.utp.udp import UtpSocket

pytestmark = pytest.mark.integration


class Echo(Protocol):
    def __init__(self) -> None:
        self.lost: defer.Deferred[list[Failure]] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.lost.callback([reason])


class Collect(Protocol):
    def __init__(self, want: int) -> None:
        self.want = want
        self.got = bytearray()
        self.chunks: list[int] = []
        self.done: defer.Deferred[None] = defer.Deferred()
        self.lost: defer.Deferred[list[Failure]] = defer.Deferred()
        self.made = False

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.got += data
        self.chunks.append(len(data))
        if len(self.got) >= self.want and not self.done.called:
            self.done.callback(None)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.lost.callback([reason])


class EchoFactory(Factory):
    def __init__(self) -> None:
        self.protocols: list[Echo] = []

    def buildProtocol(self, addr: Any) -> Echo:
        p = Echo()
        p.factory = self
        self.protocols.append(p)
        return p


def _timeout(d: defer.Deferred[Any], seconds: float) -> defer.Deferred[Any]:
    return d.addTimeout(seconds, reactor)


class Greeter(Protocol):
    """Writes a 68-byte greeting and then more, in two writes of the same reactor turn."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(b"h" * 68)  # type: ignore[union-attr]
        self.transport.write(b"m" * 154)  # type: ignore[union-attr]


class UtpOnUdpTests(TestCase):
    timeout = 60

    def listen(self, factory: Any) -> tuple[UtpSocket, UtpSocket, Any, Any]:
        """A server socket for ``factory`` and a client socket on loopback UDP ports, both
        stopped when the test ends."""
        server = UtpSocket(factory, reactor, random.Random(1))
        client = UtpSocket(None, reactor, random.Random(2))
        sport = reactor.listenUDP(0, server, "127.0.0.1")
        self.addCleanup(sport.stopListening)
        cport = reactor.listenUDP(0, client, "127.0.0.1")
        self.addCleanup(cport.stopListening)
        return server, client, sport, cport

    async def test_a_stream_both_ways_then_fin_and_reset(self) -> None:
        factory = EchoFactory()
        server, client, sport, cport = self.listen(factory)
        data = os.urandom(2_000_000)
        proto = Collect(len(data))
        got = await _timeout(client.connect("127.0.0.1", sport.getHost().port, proto), 10)
        self.assertIs(got, proto)
        self.assertTrue(proto.made)
        self.assertEqual(proto.transport.getPeer().port, sport.getHost().port)  # type: ignore[union-attr]
        proto.transport.write(data)  # type: ignore[union-attr]
        await _timeout(proto.done, 30)
        self.assertEqual(bytes(proto.got), data)  # echoed back, in order
        self.assertEqual(len(factory.protocols), 1)
        echo = factory.protocols[0]
        self.assertEqual(echo.transport.getPeer().port, cport.getHost().port)  # type: ignore[union-attr]
        # FIN: both sides see a clean close
        proto.transport.loseConnection()  # type: ignore[union-attr]
        [why] = await _timeout(proto.lost, 10)
        self.assertTrue(why.check(ConnectionDone))
        self.assertTrue((await _timeout(echo.lost, 10))[0].check(ConnectionDone))
        # RESET: a connection aborted is lost on the other side
        proto2 = Collect(1)
        await _timeout(client.connect("127.0.0.1", sport.getHost().port, proto2), 10)
        proto2.transport.write(b"x")  # type: ignore[union-attr]
        await _timeout(proto2.done, 10)
        factory.protocols[1].transport.abortConnection()  # type: ignore[union-attr]
        self.assertTrue((await _timeout(proto2.lost, 10))[0].check(ConnectionLost))
        self.assertEqual(server.mux.connections, {})
        self.assertEqual(client.mux.connections, {})

    async def test_garbage_on_the_port_changes_nothing_and_the_port_still_works(self) -> None:
        factory = EchoFactory()
        server, client, sport, cport = self.listen(factory)
        # (cleanups run last first: connections closed before the ports stop)
        self.addCleanup(server.close_all)
        self.addCleanup(client.close_all)
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(raw.close)
        rng = random.Random(5)
        for _ in range(2000):
            raw.sendto(rng.randbytes(rng.randrange(0, 100)), ("127.0.0.1", sport.getHost().port))
        await _timeout(defer.Deferred(lambda d: None).addTimeout(0.5, reactor)
                       .addErrback(lambda f: None), 5)
        self.assertEqual(server.datagrams_in, 2000)
        self.assertGreater(server.mux.malformed, 1000)
        self.assertLessEqual(len(server.mux.connections), server.mux.max_connections)
        proto = Collect(5)
        await _timeout(client.connect("127.0.0.1", sport.getHost().port, proto), 10)
        proto.transport.write(b"alive")  # type: ignore[union-attr]
        await _timeout(proto.done, 10)
        self.assertEqual(bytes(proto.got), b"alive")

    async def test_a_streaming_producer_is_paused_above_the_buffer_and_resumed_when_drained(
        self,
    ) -> None:
        server, client, sport, cport = self.listen(EchoFactory())
        proto = Collect(1)
        await _timeout(client.connect("127.0.0.1", sport.getHost().port, proto), 10)
        t: Any = proto.transport
        events: list[str] = []

        class Producer:
            def pauseProducing(self) -> None:
                events.append("pause")

            def resumeProducing(self) -> None:
                events.append("resume")

            def stopProducing(self) -> None:
                events.append("stop")

        t.bufferSize = 100_000
        t.registerProducer(Producer(), True)
        t.write(b"a" * 50_000)
        self.assertEqual(events, [])
        t.write(b"a" * 200_000)
        self.assertEqual(events, ["pause"])
        proto.want = 250_000
        await _timeout(proto.done, 20)
        self.assertEqual(events, ["pause", "resume"])
        t.loseConnection()
        await _timeout(proto.lost, 10)

    async def test_each_write_goes_out_in_packets_of_its_own(self) -> None:
        # as libutp's utp_write does; Transmission relies on it (tgateway/peer/core.py, start)
        server, client, sport, cport = self.listen(Factory.forProtocol(Greeter))
        proto = Collect(222)
        await _timeout(client.connect("127.0.0.1", sport.getHost().port, proto), 10)
        proto.transport.write(b"hello")  # type: ignore[union-attr]
        await _timeout(proto.done, 10)
        self.assertEqual(proto.chunks, [68, 154])
        proto.transport.loseConnection()  # type: ignore[union-attr]
        await _timeout(proto.lost, 10)
