"""WebSocket (WebTorrent) tracker adapter on autobahn.

Each connection is a :class:`~tgateway.tracker.core.WsSession`. An announce is answered with
``{action, info_hash, interval, complete, incomplete}``; its offers go one-to-one to other
WebSocket peers of the swarm as ``{action, offer, offer_id, peer_id, info_hash}``; an answer is
routed back to the offering peer only if the tracker forwarded that offer to the answering
socket. Errors are ``{action, "failure reason", info_hash}`` (the client ignores messages for
other info-hashes, so ``info_hash`` is included whenever it is known). A closed socket counts as
``stopped`` in every swarm it joined.

A socket that does not read what it is sent is bounded (:class:`~tgateway.backpressure.SendBound`):
above ``SEND_HIGH`` queued bytes it is *congested*: it gets no offers and no answers (they are
best effort; the offering client re-offers on its next announce) and nothing more is read from
it. It is dropped when more than ``SEND_LIMIT`` further bytes (replies to its own requests) would
be queued, or when it stays congested for ``SEND_STALL`` seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _jstr
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from tgateway.backpressure import SendBound
from tgateway.bencode import DecodeError
from tgateway.tracker.core import SwarmStore, TrackerError, WsSession
from tgateway.tracker.wire import WsAnnounce, decode_ws

_log = Logger()
_OPEN = WebSocketServerProtocol.STATE_OPEN
_dumps = json.JSONEncoder(separators=(",", ":")).encode
# The C encoder, built once (JSONEncoder.encode builds one per call). No circular-reference
# check: the values it encodes come from json decoding, which cannot make cycles.
_c_encode = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, None, _jstr, None, ":", ",", False, False, True
)


def _encode_obj(obj: Any) -> str:
    return "".join(_c_encode(obj, 0))


#: Largest WebSocket message accepted (an announce with 10 offers of 2 KiB SDP is ~25 KiB).
MAX_MESSAGE = 64 * 1024
#: Queued bytes above which a socket is congested (no offers or answers; not read).
SEND_HIGH = 64 * 1024
#: Bytes more that may be queued for a congested socket (replies to what it sent before) before
#: it is dropped.
SEND_LIMIT = 256 * 1024
#: Seconds a socket may stay congested before it is dropped.
SEND_STALL = 30.0


def _unmask(data: bytes, mask: bytes) -> bytes:
    """RFC 6455 unmasking with one big-integer XOR."""
    n = len(data)
    if not n:
        return data
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class WsTracker:
    """The protocol logic shared by every WebSocket connection."""

    def __init__(
        self,
        store: SwarmStore,
        clock: Any,
        *,
        interval: int,
        full_scrape: bool = False,
    ) -> None:
        self.store = store
        self.clock = clock
        self._seconds: Callable[[], float] = clock.seconds
        self.interval = interval
        self.full_scrape = full_scrape

    def on_message(self, session: WsSession, payload: bytes) -> None:
        try:
            msg = decode_ws(payload)
        except DecodeError as e:
            session.handle.send_text(_dumps({"failure reason": str(e)}))
            return
        if isinstance(msg, WsAnnounce):
            if msg.answer is not None:
                self._answer(session, msg)
            else:
                self._announce(session, msg)
        else:
            self._scrape(session, msg.info_hashes)

    def _announce(self, session: WsSession, msg: WsAnnounce) -> None:
        offers = msg.offers
        try:
            complete, incomplete, targets = self.store.ws_announce(
                session, msg.info_hash_bytes, msg.peer_id, msg.seed, msg.event,
                [o[1] for o in offers], self._seconds(),
            )
        except TrackerError as e:
            session.handle.send_text(
                _dumps({"action": "announce", "failure reason": e.message, "info_hash": msg.info_hash})
            )
            return
        info_hash = _jstr(msg.info_hash)
        session.handle.send_text(
            '{"action":"announce","interval":%d,"info_hash":%s,"complete":%d,"incomplete":%d}'  # noqa: UP031
            % (self.interval, info_hash, complete, incomplete)
        )
        if targets:
            tail = ',"peer_id":%s,"info_hash":%s}' % (  # noqa: UP031
                _jstr(msg.peer_id), info_hash)
            for target, (offer, offer_id) in zip(targets, offers, strict=False):
                target.handle.send_text(
                    '{"action":"announce","offer":%s,"offer_id":%s%s'  # noqa: UP031
                    % (_encode_obj(offer), _jstr(offer_id), tail)
                )

    def _answer(self, session: WsSession, msg: WsAnnounce) -> None:
        target = self.store.ws_answer(
            session, msg.info_hash_bytes, msg.peer_id, msg.to_peer_id, msg.offer_id
        )
        if target is None:
            return
        target.handle.send_text(
            '{"action":"announce","answer":%s,"offer_id":%s,"peer_id":%s,"info_hash":%s}'  # noqa: UP031
            % (_encode_obj(msg.answer), _jstr(msg.offer_id), _jstr(msg.peer_id), _jstr(msg.info_hash))
        )

    def _scrape(self, session: WsSession, info_hashes: list[str]) -> None:
        if not info_hashes:
            if not self.full_scrape:
                session.handle.send_text(
                    _dumps({"action": "scrape", "failure reason": "full scrape is disabled"})
                )
                return
            stats = [
                (ih.decode("latin-1"), c, d, i) for ih, c, d, i in self.store.scrape_all()
            ]
        else:
            raw = self.store.scrape([h.encode("latin-1") for h in info_hashes])
            stats = [(h, c, d, i) for h, (c, d, i) in zip(info_hashes, raw, strict=True)]
        files = {h: {"complete": c, "incomplete": i, "downloaded": d} for h, c, d, i in stats}
        session.handle.send_text(
            _dumps({"action": "scrape", "files": files, "flags": {"min_request_interval": self.interval}})
        )

    def on_close(self, session: WsSession) -> None:
        self.store.ws_close(session)


class WsTrackerProtocol(WebSocketServerProtocol):
    """One WebTorrent connection.

    Outgoing messages are written as single unmasked text frames straight to the transport:
    autobahn's general ``sendMessage`` path (fragmentation, compression, statistics) costs more
    than the announce itself. Parsing of incoming frames, the handshake, pings and the closing
    handshake stay with autobahn. (``log`` is autobahn's own txaio logger: do not shadow it, or
    every debug call of autobahn becomes a real log event.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.session = WsSession(self)
        self.bound: SendBound | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self.bound = SendBound(self, self.factory.tracker.clock, high=SEND_HIGH,
                               limit=SEND_LIMIT, stall=SEND_STALL)
        self.bound.attach(self.transport)
        self.factory.connections += 1

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.bound is not None:
            self.bound.detach()
            self.bound = None
            self.factory.connections -= 1
        super().connectionLost(reason)

    # SendOwner: the transport's buffer
    def sending_paused(self) -> None:
        self.session.congested = True

    def sending_resumed(self) -> None:
        self.session.congested = False

    def send_bound_exceeded(self, reason: str) -> None:
        self.factory.dropped_slow += 1
        # autobahn logs the drop with this reason (once per connection)
        self.wasNotCleanReason = f"the peer does not read what it is sent ({reason})"
        self.dropConnection(abort=True)

    def onConnect(self, request: ConnectionRequest) -> None:
        return None

    _fbuf = b""

    def dataReceived(self, data: bytes) -> None:
        """Parse complete, unfragmented, masked text frames here; give everything else (the
        handshake, control frames, fragments, binary or oversized frames) to autobahn.

        autobahn's general parser costs several times the tracker's own work per message.
        The fast path runs only while autobahn holds no partial frame of its own.
        """
        if self.state != _OPEN or self.data or self.current_frame is not None:
            super().dataReceived(data)
            return
        buf = self._fbuf + data if self._fbuf else data
        n = len(buf)
        pos = 0
        fallback = False
        on_message = self.factory.tracker.on_message
        session = self.session
        while n - pos >= 6:
            b1 = buf[pos + 1]
            if buf[pos] != 0x81 or not b1 & 0x80:
                fallback = True  # not FIN + text, or not masked (autobahn fails the latter)
                break
            length = b1 & 0x7F
            if length < 126:
                head = 6
            elif length == 126:
                if n - pos < 8:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 8
                if length > MAX_MESSAGE:
                    fallback = True
                    break
            else:
                fallback = True
                break
            end = pos + head + length
            if end > n:
                break
            payload = _unmask(buf[pos + head : end], buf[pos + head - 4 : pos + head])
            pos = end
            try:
                on_message(session, payload)
            except Exception:
                _log.failure("WebSocket tracker message failed")
            if self.state != _OPEN:
                return
        rest = buf[pos:] if pos else buf
        if fallback:
            self._fbuf = b""
            super().dataReceived(rest)
        else:
            self._fbuf = rest
            if len(rest) > MAX_MESSAGE + 16:
                self.dropConnection(abort=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            self.factory.tracker.on_message(self.session, payload)
        except Exception:
            _log.failure("WebSocket tracker message failed")

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        if not self.session.closed:
            self.factory.tracker.on_close(self.session)

    def send_text(self, text: str) -> None:
        """Send one text message (``text`` is ASCII JSON)."""
        if self.state != _OPEN:
            return
        payload = text.encode("ascii")
        n = len(payload)
        if n < 126:
            head = bytes((0x81, n))
        elif n < 65536:
            head = b"\x81\x7e" + n.to_bytes(2, "big")
        else:
            head = b"\x81\x7f" + n.to_bytes(8, "big")
        bound = self.bound
        if bound is not None and bound.paused and not bound.wrote(n + len(head)):
            return
        self.transport.write(head + payload)  # type: ignore[union-attr]


class WsTrackerFactory(WebSocketServerFactory):
    protocol = WsTrackerProtocol
    noisy = False

    def __init__(self, tracker: WsTracker, url: str | None = None) -> None:
        super().__init__(url)
        self.tracker = tracker
        self.connections = 0  # open WebSocket connections
        self.dropped_slow = 0  # connections dropped for not reading
        self.setProtocolOptions(
            maxMessagePayloadSize=MAX_MESSAGE,
            maxFramePayloadSize=MAX_MESSAGE,
            autoPingInterval=60,
            autoPingTimeout=30,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=3,
            perMessageCompressionAccept=lambda offers: None,
        )
