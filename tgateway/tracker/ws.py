"""WebSocket (WebTorrent) tracker adapter on autobahn.

Each connection is a :class:`~tgateway.tracker.core.WsSession`. An announce is answered with
``{action, info_hash, interval, complete, incomplete}``; its offers go one-to-one to other
WebSocket peers of the swarm as ``{action, offer, offer_id, peer_id, info_hash}``; an answer is
routed back to the offering peer only if the tracker forwarded that offer to the answering
socket. Errors are ``{action, "failure reason", info_hash}`` (the client ignores messages for
other info-hashes, so ``info_hash`` is included whenever it is known). A closed socket counts as
``stopped`` in every swarm it joined.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.logger import Logger

from tgateway.bencode import DecodeError
from tgateway.tracker.core import SwarmStore, TrackerError, WsSession
from tgateway.tracker.wire import WsAnnounce, decode_ws

_log = Logger()
_OPEN = WebSocketServerProtocol.STATE_OPEN
_dumps = json.JSONEncoder(separators=(",", ":")).encode

#: Largest WebSocket message accepted (an announce with 10 offers of 2 KiB SDP is ~25 KiB).
MAX_MESSAGE = 64 * 1024


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
        session.handle.send_text(
            '{"action":"announce","interval":%d,"info_hash":%s,"complete":%d,"incomplete":%d}'
            % (self.interval, _dumps(msg.info_hash), complete, incomplete)
        )
        if targets:
            tail = ',"peer_id":%s,"info_hash":%s}' % (_dumps(msg.peer_id), _dumps(msg.info_hash))
            for target, (offer, offer_id) in zip(targets, offers):
                target.handle.send_text(
                    '{"action":"announce","offer":%s,"offer_id":%s%s'
                    % (_dumps(offer), _dumps(offer_id), tail)
                )

    def _answer(self, session: WsSession, msg: WsAnnounce) -> None:
        target = self.store.ws_answer(
            session, msg.info_hash_bytes, msg.peer_id, msg.to_peer_id, msg.offer_id
        )
        if target is None:
            return
        target.handle.send_text(
            _dumps(
                {
                    "action": "announce",
                    "answer": msg.answer,
                    "offer_id": msg.offer_id,
                    "peer_id": msg.peer_id,
                    "info_hash": msg.info_hash,
                }
            )
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
            stats = [(h, c, d, i) for h, (c, d, i) in zip(info_hashes, raw)]
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

    def onConnect(self, request: ConnectionRequest) -> None:
        return None

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
        self.transport.write(head + payload)


class WsTrackerFactory(WebSocketServerFactory):
    protocol = WsTrackerProtocol
    noisy = False

    def __init__(self, tracker: WsTracker, url: str | None = None) -> None:
        super().__init__(url)
        self.tracker = tracker
        self.setProtocolOptions(
            maxMessagePayloadSize=MAX_MESSAGE,
            maxFramePayloadSize=MAX_MESSAGE,
            autoPingInterval=60,
            autoPingTimeout=30,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=3,
            perMessageCompressionAccept=lambda offers: None,
        )
