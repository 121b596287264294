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
be queued, or when it stays congested for ``SEND_STALL`` seconds. Messages wait for the end of
the reactor turn in the connection (:meth:`Outbox.send_json`), at most ``FLUSH_SIZE``
bytes and one message before they are written to the transport, where the bound sees them.

Under load they wait a little longer: while other WebSocket sockets have input ready to be read,
the write is put off to the next reactor turn, for at most ``FLUSH_DELAY`` seconds
(:class:`InputWatch`). A socket then gets the messages of many announces in one ``send``
instead of one or two: on loopback each ``send`` costs more than handling an announce, and the
peers read fewer, larger segments. An idle tracker writes at the end of the turn, as before.

Offers and answers are forwarded as the JSON text the client sent (:func:`~.ws_wire.decode_ws`
keeps them raw), and replies are UTF-8 JSON, as ``bittorrent-tracker`` sends them.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Any

import msgspec
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet import tcp
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from tgateway.backpressure import SendBound
from tgateway.bencode import DecodeError
from tgateway.tracker.core import SwarmStore, TrackerError, WsSession
from tgateway.tracker.http import send_in_place
from tgateway.tracker.ws_wire import WsAnnounce, decode_ws

_log = Logger()
_OPEN = WebSocketServerProtocol.STATE_OPEN
_EPOLL = hasattr(select, "epoll")
#: JSON as UTF-8 bytes. Strings: ``"``, ``\\`` and control characters escaped, everything else
#: as UTF-8, as ``JSON.stringify`` does; the latin-1 binary strings (info_hash, peer_id, offer_id)
#: arrive as text from the decoder, so they go back out as the same characters.
_json: Callable[[Any], bytes] = msgspec.json.Encoder().encode
#: Frame heads of unmasked, final text frames with payloads of 0..125 bytes.
_SHORT_HEADS = [bytes((0x81, n)) for n in range(126)]


#: Largest WebSocket message accepted (an announce with 10 offers of 2 KiB SDP is ~25 KiB).
MAX_MESSAGE = 64 * 1024
#: Queued bytes above which a socket is congested (no offers or answers; not read).
SEND_HIGH = 64 * 1024
#: Bytes more that may be queued for a congested socket (replies to what it sent before) before
#: it is dropped.
SEND_LIMIT = 256 * 1024
#: Seconds a socket may stay congested before it is dropped.
SEND_STALL = 30.0
#: Bytes queued for one socket within a reactor turn above which they are written at once (so
#: the transport, and the send bound with it, sees them before the turn ends).
FLUSH_SIZE = 8 * 1024
#: Seconds the messages queued in a reactor turn may wait, while more input is ready, before
#: they are written (:class:`InputWatch`), and at most this many reactor turns.
FLUSH_DELAY = 0.002
FLUSH_TURNS = 64


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
        clock: IReactorTime,
        *,
        interval: int,
        full_scrape: bool = False,
    ) -> None:
        self.store = store
        self.clock = clock
        self._seconds: Callable[[], float] = clock.seconds
        self.interval = interval
        self.full_scrape = full_scrape
        self.counts: dict[tuple[str, str], int] = {}  # (action, ok|error) -> messages

    def _count(self, action: str, result: str) -> None:
        key = (action, result)
        self.counts[key] = self.counts.get(key, 0) + 1

    def on_message(self, session: WsSession, payload: bytes) -> None:
        try:
            msg = decode_ws(payload)
        except DecodeError as e:
            self._count("other", "error")
            session.handle.send_json(_json({"failure reason": str(e)}))
            return
        if isinstance(msg, WsAnnounce):
            answer = msg.answer
            if answer is not None:
                self._answer(session, msg, answer)
            else:
                self._announce(session, msg)
        else:
            self._scrape(session, msg.info_hashes)

    def _announce(self, session: WsSession, msg: WsAnnounce) -> None:
        try:
            complete, incomplete, targets = self.store.ws_announce(
                session, msg.info_hash_bytes, msg.peer_id, msg.seed, msg.event,
                msg.offer_ids, self._seconds(),
            )
        except TrackerError as e:
            self._count("announce", "error")
            session.handle.send_json(
                _json({"action": "announce", "failure reason": e.message, "info_hash": msg.info_hash})
            )
            return
        self._count("announce", "ok")
        info_hash = _json(msg.info_hash)
        session.handle.send_json(
            b'{"action":"announce","interval":%d,"info_hash":%b,"complete":%d,"incomplete":%d}'
            % (self.interval, info_hash, complete, incomplete)
        )
        if targets:
            # Each target gets its own offer (as bittorrent-tracker does: offer i to peer i),
            # forwarded as the JSON text the announcing client sent.
            tail = b',"peer_id":%b,"info_hash":%b}' % (_json(msg.peer_id), info_hash)
            offers = msg.offers
            offer_ids = msg.offer_ids
            for i, target in enumerate(targets):
                target.handle.send_json(
                    b'{"action":"announce","offer":%b,"offer_id":%b%b'
                    % (offers[i], _json(offer_ids[i]), tail)
                )

    def _answer(self, session: WsSession, msg: WsAnnounce, answer: bytes) -> None:
        target = self.store.ws_answer(
            session, msg.info_hash_bytes, msg.peer_id, msg.to_peer_id, msg.offer_id
        )
        if target is None:
            return
        target.handle.send_json(
            b'{"action":"announce","answer":%b,"offer_id":%b,"peer_id":%b,"info_hash":%b}'
            % (answer, _json(msg.offer_id), _json(msg.peer_id), _json(msg.info_hash))
        )

    def _scrape(self, session: WsSession, info_hashes: list[str]) -> None:
        if not info_hashes:
            if not self.full_scrape:
                self._count("scrape", "error")
                session.handle.send_json(
                    _json({"action": "scrape", "failure reason": "full scrape is disabled"})
                )
                return
            stats = [
                (ih.decode("latin-1"), c, d, i) for ih, c, d, i in self.store.scrape_all()
            ]
        else:
            raw = self.store.scrape([h.encode("latin-1") for h in info_hashes])
            stats = [(h, c, d, i) for h, (c, d, i) in zip(info_hashes, raw, strict=True)]
        self._count("scrape", "ok")
        files = {h: {"complete": c, "incomplete": i, "downloaded": d} for h, c, d, i in stats}
        session.handle.send_json(
            _json({"action": "scrape", "files": files, "flags": {"min_request_interval": self.interval}})
        )

    def on_close(self, session: WsSession) -> None:
        self.store.ws_close(session)


class WsTrackerProtocol(WebSocketServerProtocol):
    """One WebTorrent connection.

    Outgoing messages are single unmasked text frames, queued per connection in its
    :class:`Outbox` (the session's handle) and written when the reactor turn ends
    (:meth:`WsTrackerFactory.flush`): one announce makes messages for up
    to ``numwant`` other sockets, and a turn handles many announces, so a socket often gets
    several messages in one turn. They go out in one ``send``, tried in place (a socket's buffer
    is nearly always free), which saves the transport's write bookkeeping and two epoll
    changes per socket and turn. autobahn's general ``sendMessage`` path (fragmentation,
    compression, statistics) is not used; autobahn's own writes (handshake, pongs, close
    frames) all go through :meth:`sendData`, which writes what is queued before them, so they
    never overtake a message. Parsing of unusual incoming frames, the handshake, pings and the
    closing handshake stay with autobahn. (``log`` is autobahn's own txaio logger: do not
    shadow it, or every debug call of autobahn becomes a real log event.)
    """

    factory: WsTrackerFactory

    def __init__(self) -> None:
        super().__init__()
        self.outbox = Outbox(self)
        self.session = WsSession(self.outbox)
        self.bound: SendBound | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self.bound = SendBound(self, self.factory.tracker.clock, high=SEND_HIGH,
                               limit=SEND_LIMIT, stall=SEND_STALL)
        self.bound.attach(self.transport)
        self.outbox.connected(self.factory, self.bound)
        self.factory.connections += 1
        self.factory.input.watch(self.transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.outbox.disconnected()
        if self.bound is not None:
            self.bound.detach()
            self.bound = None
            self.factory.connections -= 1
            self.factory.input.unwatch(self.transport)
        super().connectionLost(reason)

    # SendOwner: the transport's buffer
    def sending_paused(self) -> None:
        self.session.congested = True
        self.factory.input.unwatch(self.transport)  # not read while congested

    def sending_resumed(self) -> None:
        self.session.congested = False
        self.factory.input.watch(self.transport)

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

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """autobahn's one way to the transport: queued messages go first."""
        if self.outbox.frames is not None:
            self.outbox.flush()
        super().sendData(data, sync, chopsize)


class Outbox:
    """What one connection is sent during a reactor turn; the handle of its session.

    Its own small object (slots), not attributes of the protocol: autobahn's protocol instances
    carry a hundred-odd attributes, and this is touched for every message sent."""

    __slots__ = ("proto", "factory", "bound", "frames", "size")

    def __init__(self, proto: WsTrackerProtocol) -> None:
        self.proto = proto
        self.factory: WsTrackerFactory | None = None
        self.bound: SendBound | None = None
        self.frames: list[bytes] | None = None  # queued in this reactor turn
        self.size = 0

    def connected(self, factory: WsTrackerFactory, bound: SendBound) -> None:
        self.factory = factory
        self.bound = bound

    def disconnected(self) -> None:
        self.frames = None
        self.bound = None

    def send_json(self, payload: bytes) -> None:
        """Queue one text message (``payload``: UTF-8 JSON) for the end of this reactor turn.

        While the transport is over the send bound's ``high`` mark the message is counted
        against its ``limit`` first (the bound may drop the connection instead). What is queued
        for a connection that is not open when it is flushed is dropped."""
        n = len(payload)
        if n < 126:
            head = _SHORT_HEADS[n]
        elif n < 65536:
            head = b"\x81\x7e" + n.to_bytes(2, "big")
        else:
            head = b"\x81\x7f" + n.to_bytes(8, "big")
        bound = self.bound
        if bound is None:
            return  # not connected, or no longer
        if bound.paused and not bound.wrote(n + len(head)):
            return
        frames = self.frames
        if frames is None:
            self.frames = [head, payload]
            self.size = n
            self.factory.queue(self)  # type: ignore[union-attr]  # set with bound
        else:
            frames.append(head)
            frames.append(payload)
            self.size += n
            if self.size > FLUSH_SIZE:
                self.flush()

    def flush(self) -> None:
        """Write the frames queued for this connection."""
        frames = self.frames
        if frames is None:
            return
        self.frames = None
        proto = self.proto
        if proto.state == _OPEN and proto.transport is not None:
            send_in_place(proto.transport, b"".join(frames))


class InputWatch:
    """Whether any WebSocket tracker socket has input ready to be read: an epoll set (Linux) of
    the sockets' descriptors, level-triggered, asked with a zero timeout.

    Only plain TCP sockets are watched (what :func:`send_in_place` writes to directly); without
    epoll, or with no watched socket ready, :meth:`ready` is False and writes are not put off.
    A descriptor closed by the transport leaves the set by itself (the kernel removes it).
    """

    def __init__(self) -> None:
        self._epoll: Any = None  # made with the first socket (closed when collected)
        self._fds: dict[Any, int] = {}

    def watch(self, transport: Any) -> None:
        if not _EPOLL or not isinstance(transport, tcp.Connection):
            return
        fd = transport.fileno()
        if fd < 0 or transport in self._fds:
            return
        if self._epoll is None:
            self._epoll = select.epoll()
        try:
            self._epoll.register(fd, select.EPOLLIN)
        except OSError:
            return
        self._fds[transport] = fd

    def unwatch(self, transport: Any) -> None:
        fd = self._fds.pop(transport, None)
        if fd is not None:
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass  # closed already: the kernel took it out of the set

    def ready(self) -> bool:
        return bool(self._fds) and bool(self._epoll.poll(0, 1))


class WsTrackerFactory(WebSocketServerFactory):
    """Builds :class:`WsTrackerProtocol` and writes what they queued once per reactor turn."""

    protocol = WsTrackerProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(self, tracker: WsTracker, url: str | None = None) -> None:
        super().__init__(url)
        self.tracker = tracker
        self.connections = 0  # open WebSocket connections
        self.dropped_slow = 0  # connections dropped for not reading
        self._queued: list[Outbox] = []
        self._flush_call: IDelayedCall | None = None
        self.input = InputWatch()
        self._queued_at = 0.0  # when the first message of what is queued was queued
        self._put_off = 0  # reactor turns the write was put off
        self.setProtocolOptions(
            maxMessagePayloadSize=MAX_MESSAGE,
            maxFramePayloadSize=MAX_MESSAGE,
            autoPingInterval=60,
            autoPingTimeout=30,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=3,
            perMessageCompressionAccept=lambda offers: None,
        )

    def queue(self, outbox: Outbox) -> None:
        """``outbox`` has messages queued: flush it when this reactor turn ends."""
        self._queued.append(outbox)
        if self._flush_call is None:
            self._queued_at = self.tracker._seconds()
            self._put_off = 0
            self._flush_call = self.tracker.clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Write what every connection queued (called with ``callLater(0)``: it runs right
        after the reactor has handled the events of this turn), or put it off by one more turn
        while other sockets have input ready, up to ``FLUSH_DELAY`` and ``FLUSH_TURNS``."""
        self._flush_call = None
        if (
            self._put_off < FLUSH_TURNS
            and self.tracker._seconds() - self._queued_at < FLUSH_DELAY
            and self.input.ready()
        ):
            self._put_off += 1
            self._flush_call = self.tracker.clock.callLater(0, self.flush)
            return
        queued = self._queued
        self._queued = []
        for outbox in queued:
            try:
                outbox.flush()
            except Exception:
                _log.failure("WebSocket tracker write failed")
