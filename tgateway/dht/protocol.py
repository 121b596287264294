"""UDP adapter for the DHT core: datagrams in, datagrams and per-query timers out.

The adapter decodes nothing itself: it hands each datagram to :meth:`DhtNode.datagram_received`
with the time from the injected clock, writes what the core sends, and runs one
``clock.callLater`` per outgoing query that calls :meth:`DhtNode.timeout` if no answer came. No
datagram and no send error ever raises out of it.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from twisted.internet import udp
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

if TYPE_CHECKING:
    from tgateway.dht.node import DhtNode

__all__ = ["DhtProtocol", "V6OnlyPort"]


class DhtProtocol(DatagramProtocol):
    """Implements the core's ``Output``; ``node`` is attached after construction."""

    log = Logger()
    noisy = False  # the service logs the bound port itself

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.node: DhtNode | None = None
        self._timers: dict[bytes, IDelayedCall] = {}
        self._sendto: Any = None
        self.send_errors = 0

    # ------------------------------------------------------------------ Twisted side

    def startProtocol(self) -> None:
        sock = getattr(self.transport, "socket", None)
        # Straight to the socket: Twisted's udp.Port.write re-validates the address each time,
        # which is a measurable share of the per-packet cost on the query hot path.
        self._sendto = getattr(sock, "sendto", None) if sock is not None else None

    def stopProtocol(self) -> None:
        self._sendto = None
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        node = self.node
        if node is None:
            return
        try:
            node.datagram_received(data, (addr[0], addr[1]), self.clock.seconds())
        except Exception:
            self.log.failure("DHT datagram handling failed")

    # ------------------------------------------------------------------ core's Output

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        sendto = self._sendto
        try:
            if sendto is not None:
                sendto(data, addr)
            elif self.transport is not None:
                self.transport.write(data, addr)
        except (OSError, ValueError, TypeError, OverflowError):
            # Unreachable host, full buffer, wrong address family: UDP is lossy anyway.
            self.send_errors += 1
        except Exception:
            self.send_errors += 1
            self.log.failure("DHT send failed")

    def set_timer(self, tid: bytes, delay: float) -> None:
        old = self._timers.pop(tid, None)
        if old is not None and old.active():
            old.cancel()
        self._timers[tid] = self.clock.callLater(delay, self._fire, tid)

    def cancel_timer(self, tid: bytes) -> None:
        call = self._timers.pop(tid, None)
        if call is not None and call.active():
            call.cancel()

    def _fire(self, tid: bytes) -> None:
        self._timers.pop(tid, None)
        node = self.node
        if node is None:
            return
        try:
            node.timeout(tid, self.clock.seconds())
        except Exception:
            self.log.failure("DHT query timeout handling failed")


class V6OnlyPort(udp.Port):
    """A UDP port whose IPv6 socket does not also take IPv4 (BEP 32: one table per family)."""

    def createInternetSocket(self) -> socket.socket:
        s = super().createInternetSocket()
        if self.addressFamily == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        return s
