"""Twisted adapter of uTP: one UDP port (:class:`UtpSocket`, a ``DatagramProtocol``) and a
transport per connection (:class:`UtpTransport`) that stream protocols take for a TCP one.

:class:`UtpSocket` feeds each datagram to the :class:`~.mux.UtpMux` with the reactor's time,
flushes what the connections have to send once per reactor turn (``callLater(0)``: the acks and
packets for a whole batch of datagrams go out together, as libtorrent defers its acks until the
socket is drained), and ticks the connections' timers every ``TICK`` seconds. Bytes the protocol
writes go out at once, as far as the windows allow, in packets of their own per write call (as
libutp's ``utp_write``; see :meth:`UtpTransport._sent_written`). A connection the
peer completes (its first DATA) becomes a protocol from the factory's ``buildProtocol``; None
refuses it (RESET).

:class:`UtpTransport` is what the protocol sees: ``write``/``writeSequence``,
``loseConnection`` (FIN after the data), ``abortConnection`` (RESET), ``getPeer``/``getHost``,
producer registration, and ``pauseProducing``/``resumeProducing`` to stop and restart reading.
Producer and consumer behave as on a TCP transport: a registered streaming producer is paused
when more than ``bufferSize`` bytes wait to be sent (bytes in flight, bounded by the congestion
window, are the kernel's send buffer of this transport) and resumed when every byte written has
been sent; so :class:`~tgateway.backpressure.SendBound` bounds a uTP connection exactly as it
bounds a TCP one. While reading is paused, received bytes wait in the connection (at most its
receive buffer, whose free part is the window advertised to the peer). ``connectionLost`` comes in
a later reactor turn, as with TCP, with ``ConnectionDone`` after a FIN and ``ConnectionLost``
otherwise.
"""

from __future__ import annotations

import errno
import random
import socket
import sys
from collections.abc import Iterable
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IConsumer, IPushProducer, IReactorTime, ITransport
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.internet.protocol import Protocol as StreamProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .core import Addr, ConnectionEvents, UtpConnection
from .mux import UtpMux
from .sending import PACKET_SIZE

__all__ = ["UtpSocket", "UtpTransport", "TICK"]

TICK = 0.1  # seconds between timer checks (retransmission timeouts are 0.5 s at least)
SOCKET_BUFFER = 2 * 1024 * 1024  # asked of the kernel for the UDP socket (it may give less)
# Linux UDP generic segmentation offload (UDP_SEGMENT, Linux 4.18): one sendmsg carries up to 64
# datagrams of one size, which the kernel cuts apart; what makes sending cost one system call
# per 44 packets instead of one per packet.
UDP_SEGMENT = 103
GSO_BATCH = 65000 // PACKET_SIZE
_GSO_SIZE = PACKET_SIZE.to_bytes(2, sys.byteorder)


def _address(host: str, port: int) -> IPv4Address | IPv6Address:
    if ":" in host:
        return IPv6Address("UDP", host, port)
    return IPv4Address("UDP", host, port)


@implementer(ITransport, IConsumer, IPushProducer)
class UtpTransport:
    """One uTP connection as a stream transport (see the module docstring)."""

    bufferSize = 64 * 1024  # Twisted's default; SendBound sets its own

    def __init__(self, sock: UtpSocket, conn: UtpConnection, protocol: StreamProtocol) -> None:
        self.socket = sock
        self.conn = conn
        self.protocol = protocol
        self.connected = True
        self.disconnecting = False
        self._producer: Any = None
        self._streaming = True
        self._producer_paused = False
        self._lost = False
        self._resume_call: Any = None

    def _now(self) -> float:
        return self.socket.clock.seconds()

    # ------------------------------------------------------------------ ITransport

    def write(self, data: bytes) -> None:
        if not self.connected or self.disconnecting:
            return
        self.conn.write(data)
        self._sent_written()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        if not self.connected or self.disconnecting:
            return
        conn = self.conn
        for chunk in data:
            conn.write(chunk)
        self._sent_written()

    def _sent_written(self) -> None:
        # What one write call gives goes out now, as far as the windows allow, in packets of
        # its own (as libutp's utp_write does): Transmission reads the BitTorrent handshake
        # from one packet and parses the bytes that came with it only when another packet
        # arrives, so the messages written after the handshake must not share its packet.
        self.conn.flush(self._now())
        self._check_full()

    def _check_full(self) -> None:
        if self._producer is not None and self._streaming and not self._producer_paused \
                and self.conn.unsent > self.bufferSize:
            self._producer_paused = True
            self._producer.pauseProducing()

    def loseConnection(self) -> None:
        if not self.connected or self.disconnecting:
            return
        self.disconnecting = True
        self.conn.close(self._now())

    def abortConnection(self) -> None:
        if not self.connected:
            return
        self.conn.abort(self._now())

    def getPeer(self) -> IPv4Address | IPv6Address:
        return _address(*self.conn.addr)

    def getHost(self) -> Any:
        return self.socket.host()

    # ------------------------------------------------------------------ IConsumer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self._producer is not None:
            raise RuntimeError(f"producer {self._producer!r} already registered")
        self._producer = producer
        self._streaming = streaming
        self._producer_paused = False
        if not streaming:
            producer.resumeProducing()
        else:
            self._check_full()

    def unregisterProducer(self) -> None:
        self._producer = None
        self._producer_paused = False

    # ------------------------------------------------------------------ IPushProducer (reading)

    def pauseProducing(self) -> None:
        if self._resume_call is not None and self._resume_call.active():
            self._resume_call.cancel()
        self._resume_call = None
        self.conn.pause_reading()

    def resumeProducing(self) -> None:
        # Delivered in a later turn, as a TCP transport would (no re-entrant dataReceived).
        if self._resume_call is None and not self.conn.reading and self.connected:
            self._resume_call = self.socket.clock.callLater(0, self._resume_reading)

    def _resume_reading(self) -> None:
        self._resume_call = None
        if self.connected:
            self.conn.resume_reading(self._now())

    def stopProducing(self) -> None:
        self.loseConnection()

    # ------------------------------------------------------------------ ConnectionEvents

    def data_received(self, data: bytes) -> None:
        try:
            self.protocol.dataReceived(data)
        except Exception:
            self.socket.log.failure("uTP protocol failed on data from {peer}",
                                    peer=self.conn.addr)
            self.abortConnection()

    def send_drained(self) -> None:
        producer = self._producer
        if producer is None:
            return
        if not self._streaming:
            producer.resumeProducing()
        elif self._producer_paused:
            self._producer_paused = False
            producer.resumeProducing()

    def closed(self, reason: str, clean: bool) -> None:
        if self._lost:
            return
        self._lost = True
        self.connected = False
        if self._resume_call is not None and self._resume_call.active():
            self._resume_call.cancel()
        self._resume_call = None
        why = Failure(ConnectionDone(reason) if clean else ConnectionLost(reason))
        self.socket.clock.callLater(0, self._connection_lost, why)

    def _connection_lost(self, why: Failure) -> None:
        producer, self._producer = self._producer, None
        if producer is not None and self._streaming:
            try:
                producer.stopProducing()
            except Exception:
                self.socket.log.failure("stopProducing failed")
        try:
            self.protocol.connectionLost(why)
        except Exception:
            self.socket.log.failure("uTP protocol failed in connectionLost")


class _Events:
    """ConnectionEvents of one connection: its transport, or (outgoing, before the SYN is
    answered) the Deferred waiting for it."""

    transport: UtpTransport

    def __init__(self, waiting: defer.Deferred[Any] | None) -> None:
        self.waiting = waiting

    def connected(self) -> None:
        t = self.transport
        d, self.waiting = self.waiting, None
        try:
            t.protocol.makeConnection(t)
        except Exception:
            t.socket.log.failure("uTP protocol failed in connectionMade")
            t.abortConnection()
            return
        if d is not None:
            d.callback(t.protocol)

    def data_received(self, data: bytes) -> None:
        self.transport.data_received(data)

    def send_drained(self) -> None:
        self.transport.send_drained()

    def closed(self, reason: str, clean: bool) -> None:
        d, self.waiting = self.waiting, None
        if d is not None:  # never connected: the protocol was never made
            self.transport._lost = True
            self.transport.connected = False
            d.errback(Failure(ConnectionLost(reason)))
            return
        self.transport.closed(reason, clean)


class UtpSocket(DatagramProtocol):
    """The UDP side of the peer: uTP connections, accepted into ``factory``'s protocols."""

    log = Logger()
    noisy = False

    def __init__(
        self,
        factory: Factory | None,
        clock: IReactorTime,
        rng: random.Random,
        *,
        max_connections: int = 400,
        max_half_open: int = 64,
        max_half_open_per_ip: int = 8,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.mux = UtpMux(self, rng=rng, now=clock.seconds(), accepting=factory is not None,
                          max_connections=max_connections, max_half_open=max_half_open,
                          max_half_open_per_ip=max_half_open_per_ip)
        self._flush_call: Any = None
        self._ticker: LoopingCall | None = None
        self._sendto: Any = None
        self._sendmsg: Any = None  # with UDP_SEGMENT, while the kernel takes it
        self.send_errors = 0
        self.datagrams_in = 0
        self.datagrams_out = 0

    # ------------------------------------------------------------------ DatagramProtocol

    def startProtocol(self) -> None:
        transport: Any = self.transport
        sock = getattr(transport, "socket", None)
        if isinstance(sock, socket.socket):
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
                except OSError:
                    pass
            # Addresses come from received datagrams or connect(): skip the transport's checks
            # of every address on every write (three parses per datagram).
            self._sendto = sock.sendto
            if sys.platform.startswith("linux") and hasattr(sock, "sendmsg"):
                self._sendmsg = sock.sendmsg
        else:
            self._sendto = None
        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = self.clock
        self._ticker.start(TICK, now=False).addErrback(
            lambda f: self.log.failure("uTP timer failed", f))

    def stopProtocol(self) -> None:
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        self._ticker = None
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.datagrams_in += 1
        self.mux.datagram_received(data, (addr[0], addr[1]), self.clock.seconds())

    # ------------------------------------------------------------------ MuxOutput

    def send_datagram(self, data: bytes | bytearray, addr: Addr) -> None:
        try:
            if self._sendto is not None:
                self._sendto(data, addr)
            elif self.transport is not None:
                self.transport.write(data, addr)
            else:
                return
            self.datagrams_out += 1
        except OSError:  # a full socket buffer or an unreachable address: as if lost
            self.send_errors += 1

    def send_datagrams(self, data: list[bytearray], addr: Addr) -> None:
        sendmsg = self._sendmsg
        if sendmsg is None or len(data) < 2:
            for d in data:
                self.send_datagram(d, addr)
            return
        for i in range(0, len(data), GSO_BATCH):
            chunk = data[i:i + GSO_BATCH]
            if len(chunk) == 1:
                self.send_datagram(chunk[0], addr)
                continue
            try:
                sendmsg([b"".join(chunk)], [(socket.SOL_UDP, UDP_SEGMENT, _GSO_SIZE)], 0, addr)
                self.datagrams_out += len(chunk)
            except OSError as e:
                if e.errno in (errno.EINVAL, errno.ENOPROTOOPT, errno.EIO, errno.EOPNOTSUPP):
                    self._sendmsg = None  # no GSO here: one datagram per call from now on
                    for d in chunk:
                        self.send_datagram(d, addr)
                else:
                    self.send_errors += 1

    def flush_needed(self) -> None:
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        self.mux.flush(self.clock.seconds())

    def _tick(self) -> None:
        self.mux.tick(self.clock.seconds())

    def accept(self, conn: UtpConnection) -> ConnectionEvents | None:
        if self.factory is None:
            return None
        protocol = self.factory.buildProtocol(_address(*conn.addr))
        if protocol is None:
            return None
        transport = UtpTransport(self, conn, protocol)
        events = _Events(None)
        events.transport = transport
        try:
            protocol.makeConnection(transport)
        except Exception:
            self.log.failure("uTP protocol failed in connectionMade")
            transport.closed("protocol failed", False)
            return None
        if conn.state == "done":  # the protocol dropped it at once
            transport.closed(conn.close_reason or "aborted", False)
            return None
        return events

    # ------------------------------------------------------------------ the rest

    def connect(self, host: str, port: int, protocol: StreamProtocol) -> defer.Deferred[Any]:
        """Open a uTP connection to ``(host, port)`` for ``protocol``; fires with it once
        connected (its ``connectionMade`` has run), fails with ``ConnectionLost`` otherwise."""
        d: defer.Deferred[Any] = defer.Deferred()
        events = _Events(d)
        conn = self.mux.connect((host, port), events, self.clock.seconds())
        events.transport = UtpTransport(self, conn, protocol)
        return d

    def host(self) -> Any:
        transport: Any = self.transport
        return transport.getHost() if transport is not None else None

    def close_all(self) -> None:
        """Reset every connection (before the port stops listening)."""
        self.mux.close_all(self.clock.seconds())

    def status(self) -> dict[str, int]:
        out = self.mux.status()
        out["datagrams_in"] = self.datagrams_in
        out["datagrams_out"] = self.datagrams_out
        out["send_errors"] = self.send_errors
        return out
