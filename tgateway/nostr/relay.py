"""One relay connection: the autobahn WebSocket client adapter of a :class:`RelaySession`.

The session (:mod:`tgateway.nostr.relay_session`) holds what outlives connections; this adapter
hands it each text frame and a ``send`` callable while a connection is open.

A relay that does not read what it is sent: the adapter bounds its transport
(:class:`~tgateway.backpressure.SendBound`). While more than ``SEND_HIGH`` bytes wait, the session
is told to hold its messages (:meth:`RelaySession.pause_writing`): pending publishes and
subscriptions stay in the session unsent, as they do between connections, and go out when the
transport has drained (:meth:`RelaySession.resume_writing`). A connection that does not drain
within ``SEND_STALL`` seconds is dropped; the pool's retry policy reconnects and the session sends
its pending work again, and the outbox retries what timed out meanwhile.
"""

from __future__ import annotations

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from tgateway.backpressure import SendBound
from tgateway.nostr.relay_session import RelaySession

__all__ = ["RelayClientFactory", "RelayClientProtocol", "SEND_HIGH", "SEND_LIMIT", "SEND_STALL"]

#: Queued bytes above which a relay connection holds further messages in the session.
SEND_HIGH = 64 * 1024
#: Bytes more that may be written while the transport is paused before the connection is
#: dropped: a backstop (the session writes nothing while paused; autobahn's pings do not count).
SEND_LIMIT = 256 * 1024
#: Seconds a relay connection may take to drain before it is dropped (and retried).
SEND_STALL = 30.0


class RelayClientProtocol(WebSocketClientProtocol):
    """One WebSocket connection to a relay; feeds text frames to the factory's session.

    A connection that closes before the handshake completes (the server answered plain HTTP,
    or nothing) is reported to the session as a failed attempt, so the pool's backoff grows
    for a relay that accepts TCP and then fails the upgrade.
    """

    log = Logger()
    factory: RelayClientFactory

    def __init__(self) -> None:
        super().__init__()
        self._is_open = False
        self._is_closed = False
        self.bound: SendBound | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        f = self.factory
        self.bound = SendBound(self, f.clock, high=f.send_high, limit=f.send_limit,
                               stall=f.send_stall)
        self.bound.attach(self.transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.bound is not None:
            self.bound.detach()
        super().connectionLost(reason)

    # SendOwner: the transport's buffer
    def sending_paused(self) -> None:
        if self._is_open:
            self.factory.session.pause_writing()

    def sending_resumed(self) -> None:
        if self._is_open and not self._is_closed:
            self.factory.session.resume_writing()

    def send_bound_exceeded(self, reason: str) -> None:
        self.log.warn("dropping the connection to {relay}: it does not read what we send "
                      "({reason})", relay=self.factory.session.url, reason=reason)
        self.dropConnection(abort=True)

    def onOpen(self) -> None:
        self._is_open = True
        self.factory.session.connection_made(self._send_text)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self.factory.session.dropped += 1
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            self.factory.session.dropped += 1
            return
        self.factory.session.receive(text, self.factory.clock.seconds())

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._is_closed = True
        if self._is_open:
            self.factory.session.connection_lost(self._send_text)
            return
        why = getattr(self, "wasNotCleanReason", None) or reason or "closed during the handshake"
        self.factory.session.connection_failed(f"no WebSocket: {why}")

    def _send_text(self, text: str) -> None:
        payload = text.encode("utf-8")
        bound = self.bound
        if bound is not None and bound.paused and not bound.wrote(len(payload)):
            return
        self.sendMessage(payload, isBinary=False)  # type: ignore[no-untyped-call]


class RelayClientFactory(WebSocketClientFactory):
    """Builds :class:`RelayClientProtocol` for one relay URL and its session."""

    protocol = RelayClientProtocol  # type: ignore[assignment]

    def __init__(
        self,
        session: RelaySession,
        clock: IReactorTime,
        *,
        max_message_size: int = 4 * 1024 * 1024,
        handshake_timeout: float = 15.0,
        ping_interval: float = 30.0,
        ping_timeout: float = 15.0,
        useragent: str = "tgateway",
        send_high: int = SEND_HIGH,
        send_limit: int = SEND_LIMIT,
        send_stall: float = SEND_STALL,
    ) -> None:
        super().__init__(url=session.url, reactor=clock, useragent=useragent)  # type: ignore[no-untyped-call]
        self.session = session
        self.clock = clock
        self.send_high = send_high
        self.send_limit = send_limit
        self.send_stall = send_stall
        self.setProtocolOptions(  # type: ignore[no-untyped-call]
            maxMessagePayloadSize=max_message_size,
            maxFramePayloadSize=max_message_size,
            openHandshakeTimeout=handshake_timeout,
            closeHandshakeTimeout=5,
            autoPingInterval=ping_interval,
            autoPingTimeout=ping_timeout,
        )
