"""TCP adapter of the peer core: frames bytes, reads pieces through the chunk reader, limits.

:class:`PeerProtocol` splits the stream with :class:`~tgateway.peer.wire.Framer`, hands each item
to its :class:`~tgateway.peer.core.PeerSession` and writes what the session sends. Its transport
is bounded by a :class:`~tgateway.backpressure.SendBound`: while more than ``SEND_BUFFER`` bytes
wait for the peer, it asks the session for no further request to serve and reads nothing more
from the peer (messages already read wait, unparsed requests wait in the peer's socket), so at
most one piece read and the transport's own buffer are pending per peer, never a queue of blocks
or of answers (a burst of ``ut_metadata`` requests cannot make 16 KiB answers pile up). A peer
that does not drain its buffer for ``SEND_STALL`` seconds is dropped, and so is one for which
more than ``SEND_OVER`` bytes would be written while paused.

What connections share (torrents, the chunk reader, the choker, the upload rate, the connection
limits) is the :class:`~tgateway.peer.factory.PeerFactory`'s.

A connection whose first bytes are not the plaintext handshake is taken as an MSE (protocol
encryption) handshake (:mod:`tgateway.peer.mse`); after it, the stream is plaintext when the
client offered that, else RC4 in both directions.
"""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING, Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from tgateway.backpressure import SendBound
from tgateway.bencode import DecodeError
from tgateway.storage.model import StoredFile

from . import wire
from .core import PeerSession
from .mse import MseError, MseResponder
from .wire import Request

if TYPE_CHECKING:
    from .factory import PeerFactory

__all__ = ["PeerProtocol"]

BASE_MAX_MESSAGE = 64 * 1024  # plus the bitfield size of the torrent
WRITE_BATCH = 128 * 1024  # piece messages handed to the transport in one writeSequence
SEND_BUFFER = 512 * 1024  # the transport pauses us above this many buffered bytes
SEND_OVER = 1024 * 1024  # bytes more written while paused (answers to what was read): dropped
SEND_STALL = 120.0  # seconds a paused transport may take to drain before the peer is dropped
# Bytes per send() call (Twisted's default is 128 KiB): fewer, larger sends mean fewer wake-ups
# of the receiving process, which on a busy machine is most of the cost of sending.
SEND_LIMIT = 512 * 1024
CLOSE_GRACE = 10.0  # seconds a closing connection may take to flush before it is aborted


def _packed(host: str) -> bytes | None:
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.packed


class PeerProtocol(protocol.Protocol):
    log = Logger()

    def __init__(self, factory: PeerFactory, host: str) -> None:
        self.factory = factory
        self.host = host
        self.session: PeerSession | None = None
        self.framer = wire.Framer(BASE_MAX_MESSAGE)
        self.file: StoredFile | None = None
        # Items read but not handled yet: while the torrent is looked up, or while the transport
        # is paused (the peer does not read what we send).
        self._backlog: list[bytes] | None = None
        self.identified = False  # the BitTorrent handshake is complete (counted as established)
        self._deadline: IDelayedCall | None = None
        self.bound: SendBound | None = None
        self._paused = False
        self._pumping = False
        self._reading: Request | None = None
        self._held: tuple[Request, bytes] | None = None  # read, waiting for the rate cap
        self._cur_index = -1  # the piece last read for this peer, kept while it asks for more
        self._cur_piece: bytes | None = None
        self._rate_timer: IDelayedCall | None = None
        self._abort_timer: IDelayedCall | None = None
        self._lost = False
        # Protocol encryption (MSE): undecided until the first bytes show which handshake it is.
        self._head: bytes | None = b""
        self._mse: MseResponder | None = None
        self._decrypt: Any = None
        self._encrypt: Any = None

    # ------------------------------------------------------------------ Twisted

    def connectionMade(self) -> None:
        f = self.factory
        self.session = PeerSession(self, f.session_config, f.clock.seconds(),
                                   peer_ip=_packed(self.host))
        f.connection_made(self)
        transport: Any = self.transport
        if hasattr(transport, "SEND_LIMIT"):
            transport.SEND_LIMIT = SEND_LIMIT
        self.bound = SendBound(self, f.clock, high=SEND_BUFFER, limit=SEND_OVER, stall=SEND_STALL)
        self.bound.attach(transport)
        self._deadline = f.clock.callLater(f.session_config.handshake_timeout,
                                           self._handshake_deadline)

    def _handshake_deadline(self) -> None:
        self._deadline = None
        if self.session is not None:
            self.session.tick(self.factory.clock.seconds())

    def evict(self, reason: str) -> None:
        """Drop this (unidentified) connection at once, to make room."""
        if self.session is not None:
            self.session.close(reason)
        transport: Any = self.transport
        if transport is not None and not self._lost:
            transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        session = self.session
        if session is None or session.closed:
            return
        if self._head is not None:  # which handshake: plaintext or encrypted?
            head = self._head + data
            n = min(len(head), len(wire.PROTOCOL))
            if head[:n] == wire.PROTOCOL[:n]:
                if n < len(wire.PROTOCOL):
                    self._head = head
                    return
            elif self.factory.encryption:
                self._mse = MseResponder(self.factory.find_skey, os.urandom)
            else:
                session.close("not a BitTorrent handshake")
                return
            self._head = None
            data = head
        if self._mse is not None:
            try:
                reply = self._mse.feed(data)
            except MseError as e:
                session.close(f"encryption handshake: {e}")
                return
            if reply and self.transport is not None:
                self.transport.write(reply)
            if not self._mse.done:
                return
            self._decrypt, self._encrypt = self._mse.decrypt, self._mse.encrypt
            data = self._mse.payload
            self._mse = None
        elif self._decrypt is not None:
            data = self._decrypt.update(data)
        try:
            items = self.framer.feed(data)
        except DecodeError as e:
            session.close(f"framing: {e}")
            return
        if self._backlog is not None:
            self._backlog.extend(items)
            return
        self._handle(items)

    def _handle(self, items: list[bytes]) -> None:
        session = self.session
        assert session is not None
        now = self.factory.clock.seconds()
        for i, item in enumerate(items):
            if session.closed:
                return
            if session.state == "handshake":
                info_hash = session.handshake_received(item, now)
                if info_hash is None:
                    return
                found = self.factory.lookup(info_hash)
                if found is None:
                    session.close("unknown info-hash")
                    return
                if not self._identify():
                    return
                if isinstance(found, Deferred):
                    self._backlog = list(items[i + 1 :])
                    transport: Any = self.transport
                    transport.pauseProducing()
                    found.addCallbacks(self._found, self._lookup_failed)
                    return
                self._begin(found, now)
            elif self._paused:
                # The peer does not take what we send: handle none of its further messages
                # (reading is paused too) until the transport has drained.
                self._backlog = list(items[i:])
                return
            else:
                session.message_received(item, now)

    def _identify(self) -> bool:
        """The handshake is complete: leave the unidentified budget for an established slot."""
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        assert self.session is not None
        if not self.factory.identified(self):
            self.session.close("too many connections")
            return False
        return True

    def _found(self, f: StoredFile | None) -> None:
        session = self.session
        transport: Any = self.transport
        assert session is not None and transport is not None
        backlog, self._backlog = self._backlog or [], None
        if session.closed:
            return
        if f is None:
            session.close("unknown info-hash")
            return
        if not self._paused:
            transport.resumeProducing()
        self._begin(f, self.factory.clock.seconds())
        self._handle(backlog)

    def _lookup_failed(self, failure: Failure) -> None:
        self.log.failure("torrent lookup failed", failure)
        self._backlog = None
        if self.session is not None:
            self.session.close("lookup failed")

    def _begin(self, f: StoredFile, now: float) -> None:
        assert self.session is not None
        self.file = f
        self.framer.max_length = BASE_MAX_MESSAGE + (f.piece_count + 7) // 8
        self.session.start(f, now)
        self.factory.session_started(self)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._lost = True
        for timer in (self._abort_timer, self._rate_timer, self._deadline):
            if timer is not None and timer.active():
                timer.cancel()
        self._rate_timer = self._deadline = None
        if self.bound is not None:
            self.bound.detach()
        self._held = None
        self._cur_piece = None
        self._backlog = None
        if self.session is not None and not self.session.closed:
            self.session.close("connection lost")
        self.factory.connection_lost(self)

    # ------------------------------------------------------------------ core's Output

    def send(self, data: bytes) -> None:
        if not self._lost and self.transport is not None:
            bound = self.bound
            if bound is not None and bound.paused and not bound.wrote(len(data)):
                return
            if self._encrypt is not None:
                data = self._encrypt.update(data)
            self.transport.write(data)
            self.factory.bytes_sent += len(data)

    def close(self, reason: str) -> None:
        self.factory.log_close(self, reason)
        transport: Any = self.transport
        if self._lost or transport is None:
            return
        try:
            transport.unregisterProducer()
        except Exception:
            pass
        transport.loseConnection()
        # A peer that stops reading would keep a closing connection (and its buffer) forever.
        self._abort_timer = self.factory.clock.callLater(CLOSE_GRACE, transport.abortConnection)

    def wake(self) -> None:
        self._pump()

    def interest_changed(self) -> None:
        if self.session is not None:
            self.factory.choker.interest_changed(self.session, self.factory.clock.seconds())

    # ------------------------------------------------------------------ serving

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            self._pump_loop()
        finally:
            self._pumping = False

    def _pump_loop(self) -> None:
        session = self.session
        f = self.file
        transport = self.transport
        if session is None or f is None or transport is None:
            return
        factory = self.factory
        reader = factory.reader
        now = factory.clock.seconds()
        out: list[bytes] = []
        size = 0
        try:
            while not self._paused and self._reading is None and not session.closed:
                if self._held is not None:
                    r, piece = self._held
                    self._held = None
                else:
                    nxt = session.next_request()
                    if nxt is None:
                        self._cur_piece = None  # idle: keep no piece alive for this peer
                        self._cur_index = -1
                        return
                    r = nxt
                    if r.index == self._cur_index and self._cur_piece is not None:
                        piece = self._cur_piece
                    else:
                        box: list[bytes] = []
                        d = reader.read_block(f, r.index)
                        d.addCallback(box.append)
                        if not box:
                            self._reading = r
                            d.addCallbacks(lambda _, r=r, box=box: self._loaded(r, box[0]),
                                           lambda failure, r=r: self._load_failed(r, failure))
                            return
                        piece = box[0]
                        self._cur_index, self._cur_piece = r.index, piece
                if factory.bucket is not None:
                    wait = factory.rate_wait(r.length, now)
                    if wait > 0:
                        self._held = (r, piece)
                        if self._rate_timer is None or not self._rate_timer.active():
                            self._rate_timer = factory.clock.callLater(wait, self._rate_ready)
                        return
                head = session.serve(r, piece, now)
                if head is not None:
                    out.append(head)
                    out.append(piece[r.begin : r.begin + r.length])  # transports want bytes
                    size += r.length + 13
                    if size >= WRITE_BATCH:
                        # May call pauseProducing (the transport's buffer is full).
                        if self._encrypt is not None:
                            out = [self._encrypt.update(b) for b in out]
                        transport.writeSequence(out)
                        factory.bytes_sent += size
                        out = []
                        size = 0
        finally:
            if out and not self._lost:
                if self._encrypt is not None:
                    out = [self._encrypt.update(b) for b in out]
                transport.writeSequence(out)
                factory.bytes_sent += size

    def _loaded(self, r: Request, piece: bytes) -> None:
        self._reading = None
        if self._lost:
            return
        self._cur_index, self._cur_piece = r.index, piece
        self._held = (r, piece)
        self._pump()

    def _load_failed(self, r: Request, failure: Failure) -> None:
        self._reading = None
        self.log.failure("reading piece {index} failed", failure, index=r.index)
        if self.session is not None:
            self.session.block_failed(r, self.factory.clock.seconds())

    def _rate_ready(self) -> None:
        self._rate_timer = None
        self._pump()

    # ------------------------------------------------------------------ SendOwner

    def sending_paused(self) -> None:
        self._paused = True

    def sending_resumed(self) -> None:
        if not self._paused:
            return
        self._paused = False
        session = self.session
        if self._backlog is not None and session is not None and session.state == "active":
            backlog, self._backlog = self._backlog, None
            self._handle(backlog)
        self._pump()

    def send_bound_exceeded(self, reason: str) -> None:
        if self.session is not None:
            self.session.close(f"the peer does not read what it is sent ({reason})")
        transport: Any = self.transport
        if transport is not None and not self._lost:
            transport.abortConnection()
