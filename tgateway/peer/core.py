"""The gateway's BitTorrent peer, sans I/O: one :class:`PeerSession` per connection (the upload
slots are :class:`~tgateway.peer.choker.Choker`'s).

The gateway is a seed of every stored file, so a session only uploads: it answers the handshake
(BEP 3, with the BEP 6 fast and BEP 10 extension bits), announces every piece (``have_all`` to
fast peers, a full bitfield to others), serves ``request`` s of at most 16 KiB inside the torrent,
honours ``cancel``, rejects what it will not serve (BEP 6 ``reject_request``), sends
``allowed_fast`` pieces a choked fast peer may still fetch, answers the BEP 10 extension handshake
(``m``, ``v``, ``metadata_size``, ``reqq``, ``yourip``) and BEP 9 ``ut_metadata`` requests with the
stored info dict in 16 KiB pieces.

Inputs are method calls carrying ``now``; outputs are calls on :class:`Output` (bytes to write,
close, "there is work", "interest changed"). Reading blocks from disk is the adapter's business:
it asks :meth:`PeerSession.next_request` for the next block to serve only while its transport
accepts data, so nothing is queued beyond the bounded request queue.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from tgateway.bencode import DecodeError

from . import wire
from .wire import Request

__all__ = ["Output", "PeerSession", "SessionConfig", "Torrent"]

UT_METADATA_ID = 3  # our local id for ut_metadata (BEP 10 "m")


class Torrent(Protocol):
    """What a session needs of a stored file (``tgateway.storage.model.StoredFile`` fits)."""

    @property
    def info_hash_bytes(self) -> bytes: ...
    @property
    def piece_count(self) -> int: ...
    @property
    def piece_length(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def info(self) -> bytes: ...


class Output(Protocol):
    def send(self, data: bytes) -> None:
        """Write bytes to the peer."""

    def close(self, reason: str) -> None:
        """Drop the connection (the session is closed already)."""

    def wake(self) -> None:
        """Requests are waiting to be served (the adapter starts pulling ``next_request``)."""

    def interest_changed(self) -> None:
        """The peer became interested or not interested (the choker reacts)."""


@dataclass(frozen=True)
class SessionConfig:
    peer_id: bytes
    version: bytes = b"tgateway 0.1"
    reqq: int = 500  # requests we accept queued per peer (advertised as BEP 10 "reqq")
    allowed_fast: int = 10  # BEP 6 allowed-fast set size for choked peers (0: none)
    handshake_timeout: float = 10.0  # an unidentified connection gets this long to handshake
    idle_timeout: float = 180.0  # nothing received for this long: close
    keepalive_interval: float = 60.0  # nothing sent for this long: send a keep-alive
    max_bad_requests: int = 200  # invalid requests tolerated before closing
    listen_port: int = 0  # our listening port, sent as BEP 10 "p" when set
    dht_port: int = 0  # the gateway's DHT node (BEP 5: reserved bit and PORT message); 0: none


class PeerSession:
    """One connection's protocol state. States: handshake → lookup → active → closed."""

    def __init__(
        self,
        out: Output,
        config: SessionConfig,
        now: float,
        *,
        peer_ip: bytes | None = None,
    ) -> None:
        self.out = out
        self.config = config
        self.peer_ip = peer_ip  # packed 4 or 16 bytes: BEP 10 yourip, BEP 6 allowed fast
        self.state = "handshake"
        self.created = now
        self.last_received = now
        self.last_sent = now
        self.torrent: Torrent | None = None
        self.handshake: wire.Handshake | None = None
        self.fast = False
        self.extensions = False
        self.peer_ut_metadata = 0  # the peer's id for ut_metadata, 0 if it has none
        self.peer_client = b""
        # choking
        self.am_choking = True
        self.peer_interested = False
        self.optimistic = False
        self.allowed: frozenset[int] = frozenset()
        # requests
        self.queue: deque[Request] = deque()
        self.inflight: Request | None = None
        self.bad_requests = 0
        # accounting
        self.uploaded = 0
        self.round_uploaded = 0  # reset by the choker each round
        self.metadata_sent = 0
        self.close_reason = ""

    # ------------------------------------------------------------------ helpers

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    def _send(self, data: bytes, now: float) -> None:
        self.last_sent = now
        self.out.send(data)

    def close(self, reason: str) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        self.close_reason = reason
        self.queue.clear()
        self.out.close(reason)

    def piece_size(self, index: int) -> int:
        t = self.torrent
        assert t is not None
        return min(t.piece_length, t.size - index * t.piece_length)

    # ------------------------------------------------------------------ handshake

    def handshake_received(self, data: bytes, now: float) -> bytes | None:
        """The peer's 68-byte handshake. Returns the info-hash to look up (the caller then calls
        :meth:`start` with the torrent, or :meth:`close` when it is not ours)."""
        if self.state != "handshake":
            self.close("second handshake")
            return None
        try:
            hs = wire.decode_handshake(data)
        except DecodeError:
            self.close("bad handshake")
            return None
        self.handshake = hs
        self.fast = hs.fast
        self.extensions = hs.extensions
        self.last_received = now
        self.state = "lookup"
        return hs.info_hash

    def start(self, torrent: Torrent, now: float) -> None:
        """Answer the handshake for ``torrent``: handshake, extension handshake, pieces, fast set."""
        if self.state != "lookup":
            return
        self.torrent = torrent
        self.state = "active"
        cfg = self.config
        reserved = wire.reserved_bits(dht=bool(cfg.dht_port))
        parts = [wire.encode_handshake(reserved, torrent.info_hash_bytes, cfg.peer_id)]
        if self.extensions:
            fields: dict[bytes, Any] = {
                b"m": {b"ut_metadata": UT_METADATA_ID},
                b"v": cfg.version,
                b"metadata_size": len(torrent.info),
                b"reqq": cfg.reqq,
            }
            if self.peer_ip is not None:
                fields[b"yourip"] = self.peer_ip
            if cfg.listen_port:
                fields[b"p"] = cfg.listen_port
            parts.append(wire.encode_ext_handshake(fields))
        count = torrent.piece_count
        if self.fast:
            parts.append(wire.encode_simple(wire.HAVE_ALL))
            if cfg.allowed_fast and self.peer_ip is not None and len(self.peer_ip) == 4:
                fast_set = wire.allowed_fast_set(
                    self.peer_ip, torrent.info_hash_bytes, count, cfg.allowed_fast)
                self.allowed = frozenset(fast_set)
                parts.extend(wire.encode_index(wire.ALLOWED_FAST, i) for i in fast_set)
        else:
            parts.append(wire.encode_bitfield(wire.full_bitfield(count)))
        hs = self.handshake
        if cfg.dht_port and hs is not None and hs.reserved[7] & wire.DHT_BIT:
            parts.append(wire.encode_port(cfg.dht_port))
        self._send(b"".join(parts), now)

    # ------------------------------------------------------------------ messages

    def message_received(self, body: bytes, now: float) -> None:
        """One message body (no length prefix). Malformed input closes the session."""
        if self.state != "active":
            if self.state != "closed":
                self.close("message before the handshake completed")
            return
        self.last_received = now
        try:
            msg = wire.decode_message(body)
        except DecodeError as e:
            self.close(f"malformed message: {e}")
            return
        if isinstance(msg, wire.Request):
            if msg.id == wire.REQUEST:
                self._on_request(msg, now)
            elif msg.id == wire.CANCEL:
                self._on_cancel(msg, now)
            # reject_request: we never request, ignore
        elif isinstance(msg, wire.Simple):
            self._on_simple(msg.id, now)
        elif isinstance(msg, wire.Have):
            if msg.index >= self._count():
                self.close("have: piece index out of range")
        elif isinstance(msg, wire.Bitfield):
            self._on_bitfield(msg.bits)
        elif isinstance(msg, wire.Extended):
            self._on_extended(msg, now)
        elif isinstance(msg, wire.IndexMessage):
            if msg.index >= self._count():
                self.close("piece index out of range")
        # keep-alive, piece (we are a seed), port: nothing to do

    def _count(self) -> int:
        assert self.torrent is not None
        return self.torrent.piece_count

    def _on_simple(self, mid: int, now: float) -> None:
        if mid == wire.INTERESTED:
            if not self.peer_interested:
                self.peer_interested = True
                self.out.interest_changed()
        elif mid == wire.NOT_INTERESTED:
            if self.peer_interested:
                self.peer_interested = False
                self.out.interest_changed()
        elif mid == wire.HAVE_ALL:
            if not self.fast:
                self.close("have_all without the fast extension")
            else:
                self.close("peer is a seed too")
        elif mid == wire.HAVE_NONE:
            if not self.fast:
                self.close("have_none without the fast extension")
        # choke/unchoke from the peer: we never download, nothing to do

    def _on_bitfield(self, bits: bytes) -> None:
        count = self._count()
        if len(bits) != (count + 7) // 8:
            self.close("bitfield of the wrong length")
            return
        if bits == wire.full_bitfield(count):
            self.close("peer is a seed too")

    def _valid(self, r: Request) -> bool:
        t = self.torrent
        assert t is not None
        if r.index >= t.piece_count or r.length == 0 or r.length > wire.BLOCK_MAX:
            return False
        return r.begin + r.length <= self.piece_size(r.index)

    def _reject(self, r: Request, now: float) -> None:
        if self.fast:
            self._send(wire.encode_request(wire.REJECT, r.index, r.begin, r.length), now)

    def _on_request(self, r: Request, now: float) -> None:
        if not self._valid(r):
            self.bad_requests += 1
            if self.bad_requests > self.config.max_bad_requests:
                self.close("too many invalid requests")
                return
            self._reject(r, now)
            return
        if self.am_choking and r.index not in self.allowed:
            self._reject(r, now)  # a non-fast peer's request while choked is dropped (BEP 3)
            return
        if len(self.queue) >= self.config.reqq:
            self._reject(r, now)
            return
        was_empty = not self.queue
        self.queue.append(r)
        if was_empty:
            self.out.wake()

    def _on_cancel(self, c: Request, now: float) -> None:
        r = Request(wire.REQUEST, c.index, c.begin, c.length)
        try:
            self.queue.remove(r)
        except ValueError:
            return  # already sent, or being read: the piece goes out anyway (BEP 6 allows it)
        self._reject(r, now)  # BEP 6: every request gets a piece or a reject

    def _on_extended(self, msg: wire.Extended, now: float) -> None:
        if not self.extensions:
            self.close("extended message without the extension bit")
            return
        if msg.ext_id == 0:
            try:
                d, _ = wire.decode_ext_dict(msg.payload)
            except DecodeError as e:
                self.close(f"bad extension handshake: {e}")
                return
            m = d.get(b"m")
            if isinstance(m, dict):
                ut = m.get(b"ut_metadata")
                if isinstance(ut, int) and 0 <= ut <= 255:
                    self.peer_ut_metadata = ut  # 0 disables (BEP 10)
            v = d.get(b"v")
            if isinstance(v, bytes):
                self.peer_client = v[:64]
            return
        if msg.ext_id == UT_METADATA_ID:
            self._on_metadata(msg.payload, now)
        # other ids: not ours, ignore

    def _on_metadata(self, payload: bytes, now: float) -> None:
        try:
            d, _ = wire.decode_ext_dict(payload)
        except DecodeError as e:
            self.close(f"bad ut_metadata message: {e}")
            return
        kind = d.get(b"msg_type")
        piece = d.get(b"piece")
        if not isinstance(kind, int) or not isinstance(piece, int):
            self.close("ut_metadata message without msg_type or piece")
            return
        if kind != 0:
            return  # data or reject sent to a seed: ignore
        if not self.peer_ut_metadata:
            return  # it cannot receive an answer
        assert self.torrent is not None
        info = self.torrent.info
        pieces = (len(info) + wire.METADATA_PIECE - 1) // wire.METADATA_PIECE
        if not 0 <= piece < pieces:
            self._send(wire.encode_metadata_reject(self.peer_ut_metadata, piece), now)
            return
        data = info[piece * wire.METADATA_PIECE : (piece + 1) * wire.METADATA_PIECE]
        self.metadata_sent += 1
        self._send(wire.encode_metadata_data(self.peer_ut_metadata, piece, len(info), data), now)

    # ------------------------------------------------------------------ serving

    def next_request(self) -> Request | None:
        """The next request to serve, or None. The caller reads its piece and then calls
        :meth:`block_ready`. One request is in flight at a time."""
        if self.state != "active" or self.inflight is not None or not self.queue:
            return None
        r = self.queue.popleft()
        self.inflight = r
        return r

    def serve(self, r: Request, piece: bytes, now: float) -> bytes | None:
        """The piece holding ``r`` was read. Returns the 13-byte header of the ``piece`` message,
        to be written followed by ``piece[r.begin:r.begin + r.length]``; None when nothing is to
        be sent (choked meanwhile: rejected; session gone)."""
        if self.inflight is r:
            self.inflight = None
        if self.state != "active":
            return None
        if self.am_choking and r.index not in self.allowed:
            self._reject(r, now)
            return None
        if r.begin + r.length > len(piece):
            self.close("stored piece is shorter than the torrent says")
            return None
        self.last_sent = now
        self.uploaded += r.length
        self.round_uploaded += r.length
        return wire.piece_header(r.index, r.begin, r.length)

    def block_ready(self, r: Request, piece: bytes, now: float) -> None:
        """:meth:`serve`, sending the message through ``Output.send``."""
        head = self.serve(r, piece, now)
        if head is not None:
            self.out.send(head + piece[r.begin : r.begin + r.length])

    def block_failed(self, r: Request, now: float) -> None:
        """Reading the piece failed: reject (fast) and drop the connection."""
        if self.inflight is r:
            self.inflight = None
        if self.state == "active":
            self._reject(r, now)
            self.close("reading a piece failed")

    # ------------------------------------------------------------------ choking

    def set_choked(self, choke: bool, now: float) -> None:
        if self.state != "active" or choke == self.am_choking:
            return
        self.am_choking = choke
        if choke:
            self._send(wire.encode_simple(wire.CHOKE), now)
            kept: deque[Request] = deque()
            for r in self.queue:
                if r.index in self.allowed:
                    kept.append(r)
                else:
                    self._reject(r, now)  # fast peers get rejects; others assume them dropped
            self.queue = kept
        else:
            self._send(wire.encode_simple(wire.UNCHOKE), now)

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> None:
        """Timeouts and keep-alives; call every few seconds."""
        cfg = self.config
        if self.state in ("handshake", "lookup"):
            if now - self.created >= cfg.handshake_timeout:
                self.close("handshake timeout")
            return
        if self.state != "active":
            return
        if now - self.last_received > cfg.idle_timeout:
            self.close("idle timeout")
            return
        if now - self.last_sent >= cfg.keepalive_interval:
            self._send(wire.KEEP_ALIVE, now)
