"""HTTP tracker front end (BEP 3, 7, 23, 48): one request handler, two ways in.

* :class:`TrackerResource`: a twisted.web leaf the gateway mounts at ``/announce`` and
  ``/scrape`` on its own port. ``GET /announce`` with ``Upgrade: websocket`` is handed to
  autobahn's ``WebSocketResource`` (the WebTorrent tracker); any other GET is an HTTP announce.
* :class:`TrackerHTTPFactory`: the optional dedicated port. A small HTTP/1.1 keep-alive server
  that knows only ``GET /announce``, ``GET /scrape`` and the WebSocket upgrade (the connection is
  then handed to autobahn's protocol). twisted.web's request machinery costs more than the whole
  announce, so this is the fast path.

Errors are bencoded ``failure reason`` dicts with HTTP 200, as clients expect. The client
address comes from the connection; ``X-Forwarded-For`` and ``ip=`` count only when the
connection comes from one of the ``trusted_proxies`` (:mod:`tgateway.proxies`).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from tgateway.bencode import DecodeError
from tgateway.deadlines import HEAD_TIMEOUT, HeadDeadline
from tgateway.proxies import ProxyPolicy
from tgateway.tracker.core import SwarmStore, TrackerError
from tgateway.tracker.wire import (
    decode_announce_query,
    decode_scrape_query,
    encode_announce,
    encode_announce_dict,
    encode_failure,
    encode_scrape,
)

log = Logger()

_CACHE_MAX = 65536
_FULL = b"this swarm is full: you may not be listed"
_FAILURE = b"d14:failure reason"


class AddressBook:
    """Text IP address -> packed bytes (IPv4-mapped IPv6 folded to IPv4), cached."""

    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}

    def pack(self, host: str) -> bytes:
        """Packed address (4 or 16 bytes); raises ValueError for something that is not one."""
        packed = self._cache.get(host)
        if packed is None:
            try:
                packed = socket.inet_pton(socket.AF_INET, host)
            except OSError:
                try:
                    packed = socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
                except OSError:
                    raise ValueError(host) from None
                if packed[:12] == b"\x00" * 10 + b"\xff\xff":
                    packed = packed[12:]
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[host] = packed
        return packed


def unpack_ip(packed: bytes) -> bytes:
    """Text form of a packed address, as bytes (for the non-compact reply)."""
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, packed).encode("ascii")


class HttpTracker:
    """Turns announce and scrape query strings into bencoded reply bodies."""

    def __init__(
        self,
        store: SwarmStore,
        clock: IReactorTime,
        *,
        interval: int,
        min_interval: int,
        default_numwant: int,
        max_numwant: int,
        full_scrape: bool = False,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self.store = store
        self._seconds: Callable[[], float] = clock.seconds
        self.interval = interval
        self.min_interval = min_interval
        self.default_numwant = default_numwant
        self.max_numwant = max_numwant
        self.full_scrape = full_scrape
        self.proxies = ProxyPolicy(trusted_proxies)
        self.addresses = AddressBook()
        self.counts: dict[tuple[str, str], int] = {}  # (action, ok|error) -> requests

    def announce(self, qs: bytes, peer_host: str, forwarded_for: bytes | None = None) -> bytes:
        """The reply body for ``GET /announce?<qs>`` from ``peer_host``. Never raises."""
        reply = self._announce(qs, peer_host, forwarded_for)
        key = ("announce", "error" if reply.startswith(_FAILURE) else "ok")
        self.counts[key] = self.counts.get(key, 0) + 1
        return reply

    def _announce(self, qs: bytes, peer_host: str, forwarded_for: bytes | None) -> bytes:
        try:
            q = decode_announce_query(qs)
        except DecodeError as e:
            return encode_failure(str(e))
        host = peer_host
        if self.proxies:
            host = self.proxies.client(peer_host, forwarded_for, q.ip)
        try:
            packed = self.addresses.pack(host)
        except ValueError:
            return encode_failure("invalid client address")
        numwant = q.numwant
        if numwant is None:
            numwant = self.default_numwant
        elif numwant > self.max_numwant:
            numwant = self.max_numwant
        left = q.left if q.left is not None else -1
        try:
            complete, incomplete, downloaded, p4, p6 = self.store.announce(
                q.info_hash, q.peer_id, packed + q.port.to_bytes(2, "big"), left, q.event,
                numwant, self._seconds(),
            )
        except TrackerError as e:
            return encode_failure(e.message)
        # A swarm at max_peers_per_torrent still answers but may not have listed this peer.
        warning = _FULL if complete + incomplete >= self.store.max_peers else b""
        if q.compact:
            return encode_announce(
                complete, incomplete, downloaded, self.interval, self.min_interval,
                b"".join(p4), b"".join(p6) if p6 else b"", warning,
            )
        peers = []
        ids = self.store.peer_ids(q.info_hash) if not q.no_peer_id else None
        for key in p4 + p6:
            peer_id = ids.get(key, b"\x00" * 20) if ids is not None else None
            peers.append((unpack_ip(key[:-2]), int.from_bytes(key[-2:], "big"), peer_id))
        return encode_announce_dict(
            complete, incomplete, downloaded, self.interval, self.min_interval, peers, warning
        )

    def scrape(self, qs: bytes) -> bytes:
        """The reply body for ``GET /scrape?<qs>``. Never raises."""
        reply = self._scrape(qs)
        key = ("scrape", "error" if reply.startswith(_FAILURE) else "ok")
        self.counts[key] = self.counts.get(key, 0) + 1
        return reply

    def _scrape(self, qs: bytes) -> bytes:
        try:
            hashes = decode_scrape_query(qs)
        except DecodeError as e:
            return encode_failure(str(e))
        if not hashes:
            if not self.full_scrape:
                return encode_failure("full scrape is disabled; pass info_hash")
            return encode_scrape(self.store.scrape_all(), self.min_interval)
        stats = self.store.scrape(hashes)
        return encode_scrape(
            [(ih, c, d, i) for ih, (c, d, i) in zip(hashes, stats, strict=True)], self.min_interval
        )

    def handle(self, path: bytes, qs: bytes, peer_host: str, forwarded_for: bytes | None) -> bytes | None:
        """Dispatch on the last path segment (BEP 48: ``scrape`` replaces ``announce``)."""
        last = path.rsplit(b"/", 1)[-1]
        if last == b"announce":
            return self.announce(qs, peer_host, forwarded_for)
        if last == b"scrape":
            return self.scrape(qs)
        return None


# --------------------------------------------------------------------------- twisted.web


class TrackerResource(Resource):
    """Leaf resource for ``/announce`` and ``/scrape`` on the gateway's Site."""

    isLeaf = True

    def __init__(self, tracker: HttpTracker, ws_resource: Any = None) -> None:
        super().__init__()
        self.tracker = tracker
        self.ws_resource = ws_resource

    def render_GET(self, request: Request) -> bytes | int:
        if self.ws_resource is not None:
            upgrade = request.getHeader(b"upgrade")
            if upgrade is not None and upgrade.lower() == b"websocket":
                return self.ws_resource.render(request)  # type: ignore[no-any-return]
        path, _, qs = request.uri.partition(b"?")
        peer = request.getClientAddress()
        forwarded = request.getHeader(b"x-forwarded-for") if self.tracker.proxies else None
        body = self.tracker.handle(path, qs, getattr(peer, "host", ""), forwarded)
        if body is None:
            request.setResponseCode(404)
            body = encode_failure("not found")
        request.setHeader(b"content-type", b"text/plain")
        request.setHeader(b"cache-control", b"no-store")
        return body


# --------------------------------------------------------------------------- dedicated port

_MAX_HEAD = 8192
_RESPONSE = (b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nX-Content-Type-Options: nosniff\r\n"
             b"Content-Length: %d\r\n%s\r\n")
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class TrackerHTTPProtocol(Protocol):
    """Minimal HTTP/1.1 server for the tracker: GET only, keep-alive, pipelining, no bodies.

    A connection is closed after ``idle_timeout`` seconds without a byte, and a request head
    must be complete within ``head_timeout`` seconds of its first byte (``tgateway.deadlines``:
    408, then close). The protocol is its transport's push producer: when the transport's write
    buffer is full (a client that pipelines requests and reads no answers) it stops answering
    and stops reading until the buffer has drained, so one connection queues at most the
    transport's buffer plus one answer."""

    factory: TrackerHTTPFactory

    def __init__(self) -> None:
        self._buf = b""
        self._host = ""
        self._idle: Any = None
        self._head: HeadDeadline | None = None
        self._paused = False
        self._producing = False  # registered as the transport's producer

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self._host = getattr(peer, "host", "")
        self._idle = self.factory.clock.callLater(self.factory.idle_timeout, self._timeout)
        self._head = HeadDeadline(self.factory.clock.callLater, self.factory.head_timeout,
                                  self._head_timed_out)
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self._producing = True

    # IPushProducer: the transport pauses us while its write buffer is over its bufferSize.

    def pauseProducing(self) -> None:
        self._paused = True
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self._buf:
            self.dataReceived(b"")  # the requests read before the pause
        if not self._paused and self._producing:
            self.transport.resumeProducing()  # type: ignore[union-attr]

    def stopProducing(self) -> None:
        self._buf = b""

    def _unregister(self) -> None:
        if self._producing:
            self._producing = False
            self.transport.unregisterProducer()  # type: ignore[union-attr]

    def _close(self) -> None:
        # A transport with a producer registered waits for it before closing.
        self._unregister()
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _timeout(self) -> None:
        self._idle = None
        self._close()

    def _head_timed_out(self) -> None:
        self._buf = b""
        self._reply(408, encode_failure("the request head took too long"), True)

    def connectionLost(self, reason: Any = None) -> None:
        self._producing = False
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if self._head is not None:
            self._head.head_complete()

    def _reply(self, status: int, body: bytes, close: bool) -> None:
        head = _RESPONSE % (status, _REASONS[status], len(body), b"Connection: close\r\n" if close else b"")
        send_in_place(self.transport, head + body)
        if close:
            self._close()

    def dataReceived(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        if self._idle is not None:
            self._idle.reset(self.factory.idle_timeout)
        if self._paused:
            self._buf = buf
            return
        head_deadline = self._head
        while buf:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    self._buf = b""
                    self._reply(431, encode_failure("request too large"), True)
                    return
                self._buf = buf
                if head_deadline is not None:
                    head_deadline.head_started()
                return
            if head_deadline is not None:
                head_deadline.head_complete()
            head = buf[:end]
            rest = buf[end + 4 :]
            line_end = head.find(b"\r\n")
            if line_end < 0:
                line, headers = head, b""
            else:
                line, headers = head[:line_end], head[line_end:].lower()
            parts = line.split(b" ")
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                self._buf = b""
                self._reply(400, encode_failure("bad request"), True)
                return
            method, target, version = parts
            if headers and (b"\r\nupgrade:" in headers and b"websocket" in headers):
                self._upgrade(head + b"\r\n\r\n" + rest)
                return
            if b"\r\ncontent-length:" in headers or b"\r\ntransfer-encoding:" in headers:
                if not _zero_length(headers):
                    self._buf = b""
                    self._reply(400, encode_failure("request bodies are not accepted"), True)
                    return
            if version == b"HTTP/1.1":
                close = b"\r\nconnection: close" in headers
            else:
                close = b"\r\nconnection: keep-alive" not in headers
            if method != b"GET":
                self._buf = b""
                self._reply(405, encode_failure("only GET"), True)
                return
            path, _, qs = target.partition(b"?")
            forwarded = None
            if self.factory.tracker.proxies and b"\r\nx-forwarded-for:" in headers:
                forwarded = _header(head, b"x-forwarded-for")
            try:
                body = self.factory.tracker.handle(path, qs, self._host, forwarded)
            except Exception:
                log.failure("tracker request failed")
                body = encode_failure("internal error")
            if body is None:
                self._reply(404, encode_failure("not found"), close)
            else:
                self._reply(200, body, close)
            if close:
                self._buf = b""
                return
            buf = rest
            if self._paused:  # the client is not reading the answers: wait for it
                self._buf = buf
                return
        self._buf = b""

    def _upgrade(self, data: bytes) -> None:
        """Hand the connection to autobahn's WebSocket server protocol."""
        ws_factory = self.factory.ws_factory
        if ws_factory is None:
            self._reply(404, encode_failure("no WebSocket tracker here"), True)
            return
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        self._unregister()
        transport = self.transport
        proto = ws_factory.buildProtocol(transport.getPeer())  # type: ignore[union-attr]
        transport.protocol = proto  # type: ignore[union-attr]
        proto.makeConnection(transport)
        proto.dataReceived(data)


def send_in_place(transport: Any, data: bytes) -> None:
    """Write ``data``, trying the socket at once when nothing is queued before it.

    A reply is ~100 bytes and the socket buffer is nearly always free, so sending in place saves
    the writable-event round trip through the reactor, which costs as much as the announce. On a
    partial send, or on a transport that is not plain TCP, the rest goes through ``write``.
    (Plain TCP is a ``tcp.Connection`` itself: a wrapper such as TLS's ``TLSMemoryBIOProtocol``
    hands unknown attributes, ``socket`` among them, to the connection it wraps, and its bytes
    must go through its own ``write``.)
    """
    if (
        isinstance(transport, tcp.Connection)
        and transport.TLS is False
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
        and transport.connected
        and not transport.disconnecting
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:
            sent = 0  # would block, or an error that write()/doWrite will report properly
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def _zero_length(headers: bytes) -> bool:
    if b"\r\ntransfer-encoding:" in headers:
        return False
    i = headers.find(b"\r\ncontent-length:")
    value = headers[i + 17 :].split(b"\r\n", 1)[0].strip()
    return value == b"0"


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            return v.strip()
    return None


class TrackerHTTPFactory(Factory):
    """Factory for the dedicated HTTP+WebSocket tracker port."""

    protocol = TrackerHTTPProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(self, tracker: HttpTracker, clock: IReactorTime, ws_factory: Any = None,
                 idle_timeout: float = 120.0, head_timeout: float = HEAD_TIMEOUT) -> None:
        self.tracker = tracker
        self.clock = clock
        self.ws_factory = ws_factory
        self.idle_timeout = idle_timeout
        self.head_timeout = head_timeout

    def buildProtocol(self, addr: IAddress | None) -> TrackerHTTPProtocol:  # type: ignore[override]
        p = TrackerHTTPProtocol()
        p.factory = self
        return p
