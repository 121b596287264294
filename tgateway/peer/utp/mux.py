"""The uTP socket demultiplexer, sans I/O: one UDP port, many connections.

:class:`UtpMux` decodes each datagram (malformed ones are counted and dropped), finds its
connection by ``(address, port, connection id)`` and hands the packet over; it opens incoming
connections, times them out, and answers DATA and FIN for unknown connections with a RESET.

Bounds (nothing here grows with what a remote party sends):

* **Half-open connections** (a SYN answered, no DATA yet) have their own small budget
  (``max_half_open``, and ``max_half_open_per_ip`` per address): a SYN beyond it evicts the oldest
  half-open connection of the address holding the most, so a flood of SYNs from spoofed addresses
  (UDP needs no handshake to forge a source) costs one small record each and evicts itself,
  while a real client, which sends its first DATA one round trip after the SYN, gets through.
  Half-open connections are invisible to the layer above: only the first DATA, which must ack
  our random sequence number (so the peer did receive our answer), makes a stream, and only
  then does :meth:`MuxOutput.accept` (the peer's connection budget) decide.
* **All connections** (including closing ones) are capped at ``max_connections``.
* **RESETs** for unknown connections are rate-limited (a token bucket); a RESET is never
  answered, and a RESET is never larger than the packet that caused it.
"""

from __future__ import annotations

import random
from typing import Protocol

from tgateway.ratelimit import TokenBucket

from .core import Addr, ConnectionEvents, UtpConnection
from .wire import (
    HEADER,
    MASK16,
    ST_FIN,
    ST_RESET,
    ST_STATE,
    ST_SYN,
    TV_RESET,
    DecodeError,
    Packet,
    decode_packet,
)

__all__ = ["MuxOutput", "UtpMux"]


class MuxOutput(Protocol):
    """What the demultiplexer needs of its adapter."""

    def send_datagram(self, data: bytes | bytearray, addr: Addr) -> None:
        """Send one datagram."""

    def send_datagrams(self, data: list[bytearray], addr: Addr) -> None:
        """Send datagrams in order (all but the last ``PACKET_SIZE`` bytes long)."""

    def flush_needed(self) -> None:
        """Call :meth:`UtpMux.flush` soon (after the datagrams being read)."""

    def accept(self, conn: UtpConnection) -> ConnectionEvents | None:
        """A half-open connection sent its first DATA: return the stream's events (the layer
        above takes it) or None (refused: the connection is reset)."""


class UtpMux:
    """Connections by ``(host, port, recv_id)`` (see the module docstring)."""

    def __init__(
        self,
        out: MuxOutput,
        *,
        rng: random.Random,
        now: float,
        accepting: bool = True,
        max_connections: int = 400,
        max_half_open: int = 64,
        max_half_open_per_ip: int = 8,
        resets_per_second: float = 100.0,
        recv_buffer: int | None = None,
    ) -> None:
        self.out = out
        self.rng = rng
        self.accepting = accepting
        self.max_connections = max_connections
        self.max_half_open = max_half_open
        self.max_half_open_per_ip = max_half_open_per_ip
        self.recv_buffer = recv_buffer
        self.connections: dict[tuple[str, int, int], UtpConnection] = {}
        # half-open connections by address, oldest first
        self.half_open: dict[str, dict[UtpConnection, None]] = {}
        self.half_open_count = 0
        self._dirty: dict[UtpConnection, None] = {}
        self._resets = TokenBucket.full(resets_per_second, resets_per_second, now)
        # counters for status()
        self.accepted = 0
        self.refused = 0
        self.evicted = 0
        self.malformed = 0
        self.unknown = 0
        self.resets_sent = 0
        self.syns_dropped = 0

    # ------------------------------------------------------------------ ConnectionHost

    def send_datagram(self, data: bytes | bytearray, addr: Addr) -> None:
        self.out.send_datagram(data, addr)

    def send_datagrams(self, data: list[bytearray], addr: Addr) -> None:
        self.out.send_datagrams(data, addr)

    def needs_flush(self, conn: UtpConnection) -> None:
        if not self._dirty:
            self.out.flush_needed()
        self._dirty[conn] = None

    def finished(self, conn: UtpConnection) -> None:
        key = (conn.addr[0], conn.addr[1], conn.recv_id)
        if self.connections.get(key) is conn:
            del self.connections[key]
        self._forget_half_open(conn)
        self._dirty.pop(conn, None)

    # ------------------------------------------------------------------ datagrams in

    def datagram_received(self, data: bytes, addr: Addr, now: float) -> None:
        """One datagram from ``addr`` (host, port)."""
        try:
            p = decode_packet(data)
        except DecodeError:
            self.malformed += 1
            return
        host, port = addr[0], addr[1]
        conn_id = p.connection_id
        kind = p.type
        if kind == ST_RESET:
            conn = self._find_for_reset(host, port, conn_id)
            if conn is not None:
                conn.receive(p, now)
            return
        if kind == ST_SYN:
            self._syn(p, (host, port), now)
            return
        conn = self.connections.get((host, port, conn_id))
        if conn is None:
            self.unknown += 1
            if kind != ST_STATE:  # an ack (a late duplicate, a keep-alive) waits for nothing
                self._reset_unknown(p, (host, port), now)
            return
        if conn.state == "syn_recv":
            if kind == ST_FIN:
                conn.abort(now, "FIN before any data")
                return
            if not conn.is_first_data(p):
                return
            self._forget_half_open(conn)
            events = self.out.accept(conn)
            if events is None:
                self.refused += 1
                conn.abort(now, "refused")
                return
            self.accepted += 1
            conn.established(events)
        conn.receive(p, now)

    def _find_for_reset(self, host: str, port: int, conn_id: int) -> UtpConnection | None:
        """A RESET names the id the sender sends on (our receive id), or, from some clients,
        its own; look for both, as libutp does."""
        conns = self.connections
        conn = conns.get((host, port, conn_id))
        if conn is not None:
            return conn
        for other in ((conn_id + 1) & MASK16, (conn_id - 1) & MASK16):
            conn = conns.get((host, port, other))
            if conn is not None and conn.send_id == conn_id:
                return conn
        return None

    def _syn(self, p: Packet, addr: Addr, now: float) -> None:
        host, port = addr
        recv_id = (p.connection_id + 1) & MASK16
        existing = self.connections.get((host, port, recv_id))
        if existing is not None:
            if existing.send_id == p.connection_id:
                existing.receive(p, now)  # a repeated SYN: answer again
            return
        if not self.accepting:
            return
        if self.half_open_count >= self.max_half_open or \
                len(self.half_open.get(host, ())) >= self.max_half_open_per_ip:
            self._evict_half_open(host)
        if len(self.connections) >= self.max_connections:
            self.syns_dropped += 1
            return
        kw = {} if self.recv_buffer is None else {"recv_buffer": self.recv_buffer}
        conn = UtpConnection.incoming(self, addr, p, seq_nr=self.rng.getrandbits(16), now=now,
                                      **kw)
        self.connections[(host, port, recv_id)] = conn
        self.half_open.setdefault(host, {})[conn] = None
        self.half_open_count += 1

    def _evict_half_open(self, host: str) -> None:
        """Drop the oldest half-open connection of ``host`` if it is at its own limit, else of
        the address that holds the most."""
        mine = self.half_open.get(host)
        if mine is not None and len(mine) >= self.max_half_open_per_ip:
            conns = mine
        elif self.half_open:
            conns = max(self.half_open.values(), key=len)
        else:
            return
        victim = next(iter(conns))
        self.evicted += 1
        self._forget_half_open(victim)
        victim.drop("evicted: too many half-open connections")

    def _forget_half_open(self, conn: UtpConnection) -> None:
        conns = self.half_open.get(conn.addr[0])
        if conns is None or conns.pop(conn, 0) is not None:
            return
        self.half_open_count -= 1
        if not conns:
            del self.half_open[conn.addr[0]]

    def _reset_unknown(self, p: Packet, addr: Addr, now: float) -> None:
        """A packet for no connection of ours (we restarted, or it closed): tell the sender, so
        it does not wait for its timeouts. Its receive id is, for a connection it opened, one
        below the id it sends on."""
        if self._resets.take(now) > 0:
            return
        seq = p.seq_nr
        self.resets_sent += 1
        self.out.send_datagram(
            HEADER.pack(TV_RESET, 0, (p.connection_id - 1) & MASK16, int(now * 1e6) & 0xFFFFFFFF,
                        0, 0, self.rng.getrandbits(16), seq), addr)

    # ------------------------------------------------------------------ outgoing

    def connect(self, addr: Addr, events: ConnectionEvents, now: float) -> UtpConnection:
        """Open a connection to ``addr`` (``events.connected`` once the peer answers)."""
        host, port = addr
        for _ in range(64):
            recv_id = self.rng.getrandbits(16)
            if (host, port, recv_id) not in self.connections:
                break
        else:
            raise OSError("no free uTP connection id for this peer")
        kw = {} if self.recv_buffer is None else {"recv_buffer": self.recv_buffer}
        conn = UtpConnection.outgoing(self, (host, port), events, recv_id=recv_id,
                                      seq_nr=self.rng.getrandbits(16), now=now, **kw)
        self.connections[(host, port, conn.recv_id)] = conn
        return conn

    # ------------------------------------------------------------------ timers and output

    def flush(self, now: float) -> None:
        """Send what every connection that asked for it has to send."""
        while self._dirty:
            dirty, self._dirty = self._dirty, {}
            for conn in dirty:
                conn.flush(now)

    def tick(self, now: float) -> None:
        for conn in list(self.connections.values()):
            conn.tick(now)
        self.flush(now)

    def close_all(self, now: float) -> None:
        """Reset every connection (the port is closing)."""
        for conn in list(self.connections.values()):
            conn.abort(now, "shutting down")

    def status(self) -> dict[str, int]:
        return {
            "connections": len(self.connections),
            "half_open": self.half_open_count,
            "accepted": self.accepted,
            "refused": self.refused,
            "evicted": self.evicted,
            "malformed": self.malformed,
            "unknown": self.unknown,
            "resets_sent": self.resets_sent,
            "syns_dropped": self.syns_dropped,
        }
