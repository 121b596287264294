"""One uTP connection (BEP 29), sans I/O: a reliable, ordered byte stream over datagrams.

:class:`UtpConnection` takes decoded packets and ``now`` and produces datagrams (through its
:class:`ConnectionHost`, the demultiplexer) and stream events (through :class:`ConnectionEvents`,
the adapter's transport). It imports no reactor and no socket; every timer is checked in
:meth:`UtpConnection.tick`, which the adapter calls a few times a second.

This module is the state machine: setup, what the layer above calls, packets in, timers, closing.
The connection's two halves are functions of it in modules of their own: :mod:`.sending` (packets
out and in flight, acks in, fast resend, the retransmission timeout, zero-window probes) and
:mod:`.receiving` (delivery, the pause and reorder buffers, the receive window, acks out). They
read and write the connection's attributes as its methods do: one object per connection keeps the
per-packet path free of extra lookups.

Connection setup and ids (as libutp and libtorrent do it)
    The initiator picks a random ``R``: it receives on ``R`` and sends on ``R + 1``; its SYN
    carries ``R`` and its first sequence number ``s``. The acceptor receives on ``R + 1``, sends
    on ``R``, starts its own sequence at a random ``S`` and answers with a STATE (``seq_nr`` ``S``,
    ``ack_nr`` ``s``). The initiator then sets its ``ack_nr`` to ``S - 1``: STATE packets carry the
    next sequence number without using it, so the acceptor's first DATA is ``S``. An accepted
    connection stays *half-open* (``syn_recv``) until the initiator's first DATA arrives acking
    ``S - 1``: only then does the stream exist for the layer above (the demultiplexer budgets
    half-open connections, see :mod:`.mux`).

Closing
    :meth:`UtpConnection.close` sends a FIN after the data written; the stream ends for the
    layer above when the FIN is acked, the connection when the peer's FIN has arrived too (it is
    acked). A FIN from the peer (once everything before it has arrived) ends the stream: it is
    acked and answered with our FIN. RESET ends the connection either way
    (:meth:`UtpConnection.abort` sends one). A closing connection is dropped after
    ``CLOSE_TIMEOUT`` whatever the peer does, a half-open one after ``SYN_RECV_TIMEOUT``, one
    that hears nothing for ``IDLE_TIMEOUT``; keep-alives (a STATE acking ``ack_nr - 1``, as libutp
    sends) go out after ``KEEPALIVE`` seconds without sending.

Sequence and ack numbers wrap at 16 bits, timestamps at 32 bits; every comparison is modular.
"""

from __future__ import annotations

from typing import Protocol

from .ledbat import DelayHistory, Ledbat, RttEstimator
from .receiving import (
    MAX_REORDER,
    RECV_BUFFER,
    deliver_pending,
    receive_data,
    recv_window,
    send_state,
)
from .sending import (
    INITIAL_RTO,
    INITIAL_WINDOW,
    MAX_RTO,
    MAX_WINDOW,
    MIN_RTO,
    MSS,
    ZERO_WINDOW_PROBE,
    OutPacket,
    process_acks,
    retransmission_timeout,
    send_due,
    send_fin,
    transmit,
)
from .wire import (
    HEADER,
    HEADER_SIZE,
    MASK16,
    MASK32,
    ST_DATA,
    ST_FIN,
    ST_RESET,
    ST_STATE,
    ST_SYN,
    TV_RESET,
    TV_SYN,
    Packet,
)

__all__ = ["ConnectionEvents", "ConnectionHost", "UtpConnection", "Addr"]

Addr = tuple[str, int]

SYN_RTO = 3.0  # libutp and libtorrent wait 3 s for the first answer
KEEPALIVE = 29.0  # libutp's interval (NAT mappings)
IDLE_TIMEOUT = 240.0  # nothing received for this long: the peer is gone
SYN_RECV_TIMEOUT = 10.0  # a half-open connection gets this long to send its first DATA
CLOSE_TIMEOUT = 10.0  # a closing connection is dropped after this long

_pack = HEADER.pack


class ConnectionHost(Protocol):
    """What a connection needs of its demultiplexer."""

    def send_datagram(self, data: bytes | bytearray, addr: Addr) -> None:
        """Send one datagram to ``addr``."""

    def send_datagrams(self, data: list[bytearray], addr: Addr) -> None:
        """Send several datagrams to ``addr``, in order (every one but the last is
        ``PACKET_SIZE`` bytes long: the adapter may hand them to the kernel in one call)."""

    def needs_flush(self, conn: UtpConnection) -> None:
        """``conn`` has acks or data to send: call its :meth:`~UtpConnection.flush` soon."""

    def finished(self, conn: UtpConnection) -> None:
        """``conn`` is over: forget it."""


class ConnectionEvents(Protocol):
    """What a connection tells the layer above (the adapter's transport)."""

    def connected(self) -> None:
        """The stream is open (an outgoing connection's SYN was answered)."""

    def data_received(self, data: bytes) -> None:
        """In-order stream bytes."""

    def send_drained(self) -> None:
        """Every byte written has been handed to the network (a producer may resume)."""

    def closed(self, reason: str, clean: bool) -> None:
        """The connection is over (``clean``: by FIN, else reset, timeout or abort)."""


class UtpConnection:
    """One connection's state machine (see the module docstring).

    States: ``syn_sent`` (outgoing, SYN not answered), ``syn_recv`` (incoming, half-open),
    ``connected``, ``closing`` (our FIN sent or due, or the peer's FIN received), ``done``.
    """

    def __init__(
        self,
        host: ConnectionHost,
        addr: Addr,
        *,
        recv_id: int,
        send_id: int,
        seq_nr: int,
        now: float,
        recv_buffer: int = RECV_BUFFER,
        max_window: int = MAX_WINDOW,
    ) -> None:
        self.host = host
        self.addr = addr
        self.recv_id = recv_id & MASK16
        self.send_id = send_id & MASK16
        self.events: ConnectionEvents | None = None
        self.state = "syn_sent"
        self.created = now
        self.last_received = now
        self.last_sent = now
        self.close_reason = ""
        self._syn_seq = 0  # the SYN's sequence number (ours or the peer's)
        self._closing_since = now
        # sending
        self.seq_nr = seq_nr & MASK16  # the next sequence number we use
        self.acked = (seq_nr - 1) & MASK16  # everything up to here was acked
        self.outbuf: dict[int, OutPacket] = {}
        self.in_flight = 0
        self._sendbuf = bytearray()
        self._fin_wanted = False
        self._fin_seq: int | None = None
        self._fin_acked = False  # our FIN was acked (we wait for the peer's, or the timeout)
        self._resend_due = 0  # packets marked by a timeout, not yet resent
        self._limited = False  # the window held data back since the last ack
        self.peer_wnd = MSS * 8  # until the peer says
        self._zero_since: float | None = None
        self.cc = Ledbat(MSS, initial=INITIAL_WINDOW, maximum=max_window)
        self.rtt = RttEstimator(initial_rto=INITIAL_RTO, min_rto=MIN_RTO, max_rto=MAX_RTO)
        self.delays = DelayHistory()
        self._rto_at: float | None = None
        self._rto = INITIAL_RTO
        self.timeouts = 0
        self.dup_acks = 0
        self._fast_resend_seq = self.seq_nr
        self._loss_seq = self.acked
        self.reply_micro = 0  # our clock minus the peer's last timestamp (sent back to it)
        # receiving
        self.ack_nr = 0  # the last in-order sequence number received
        self.recv_buffer = recv_buffer
        self._reorder: dict[int, bytes] = {}
        self._reorder_bytes = 0
        self._pending: list[bytes] = []  # in order, held while reading is paused
        self._pending_bytes = 0
        self.reading = True
        self._eof_seq: int | None = None
        self._eof_reached = False  # everything up to the peer's FIN arrived
        self._ack_due = False
        self._delivering = False
        self._flushing = False
        # statistics
        self.bytes_sent = 0
        self.bytes_received = 0
        self.packets_sent = 0
        self.retransmits = 0
        self.duplicates = 0

    # ------------------------------------------------------------------ construction

    @classmethod
    def outgoing(cls, host: ConnectionHost, addr: Addr, events: ConnectionEvents, *,
                 recv_id: int, seq_nr: int, now: float, **kw: int) -> UtpConnection:
        """A connection we open: sends the SYN (on ``recv_id``, sending on ``recv_id + 1``)."""
        c = cls(host, addr, recv_id=recv_id, send_id=recv_id + 1, seq_nr=seq_nr, now=now, **kw)
        c.events = events
        c.state = "syn_sent"
        syn = bytearray(HEADER_SIZE)
        out = OutPacket(syn, 0)
        c.outbuf[c.seq_nr] = out
        c._syn_seq = c.seq_nr
        c.seq_nr = (c.seq_nr + 1) & MASK16
        c._rto = SYN_RTO
        transmit(c, out, c._syn_seq, TV_SYN, c.recv_id, now)
        c._rto_at = now + SYN_RTO
        return c

    @classmethod
    def incoming(cls, host: ConnectionHost, addr: Addr, syn: Packet, *, seq_nr: int,
                 now: float, **kw: int) -> UtpConnection:
        """A connection the peer opens with ``syn``: answers with a STATE, half-open until the
        peer's first DATA (:meth:`established`)."""
        c = cls(host, addr, recv_id=syn.connection_id + 1, send_id=syn.connection_id,
                seq_nr=seq_nr, now=now, **kw)
        c.state = "syn_recv"
        c._syn_seq = syn.seq_nr
        c.ack_nr = syn.seq_nr
        c._note_timestamp(syn, now)
        c.peer_wnd = syn.wnd_size
        send_state(c, now)
        return c

    def is_first_data(self, p: Packet) -> bool:
        """``p`` is the DATA that completes a half-open connection: it acks our STATE."""
        return p.type == ST_DATA and p.ack_nr == self.acked

    def established(self, events: ConnectionEvents) -> None:
        """A half-open connection is accepted by the layer above."""
        self.events = events
        self.state = "connected"

    # ------------------------------------------------------------------ the layer above

    @property
    def unsent(self) -> int:
        """Bytes written and not yet sent."""
        return len(self._sendbuf)

    @property
    def open(self) -> bool:
        return self.state in ("syn_sent", "syn_recv", "connected")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` (ignored once closing, like a Twisted transport)."""
        if self.state in ("closing", "done") or self._fin_wanted or not data:
            return
        self._sendbuf += data
        self.host.needs_flush(self)

    def close(self, now: float) -> None:
        """Send everything written, then a FIN; the connection ends when the FIN is acked (or
        after ``CLOSE_TIMEOUT``)."""
        if self.state == "done" or self._fin_wanted:
            return
        if self.state in ("syn_sent", "syn_recv"):
            self.abort(now, "closed before connected")
            return
        self._fin_wanted = True
        self._closing_since = now
        self.host.needs_flush(self)

    def abort(self, now: float, reason: str = "aborted") -> None:
        """Send a RESET and end the connection now."""
        if self.state == "done":
            return
        if self.state != "syn_sent":
            self._send_reset(now)
        self._finish(reason, clean=False)

    def drop(self, reason: str) -> None:
        """End the connection without a word to the peer (an evicted half-open one)."""
        if self.state != "done":
            self._finish(reason, clean=False)

    def pause_reading(self) -> None:
        """Hold received bytes (up to ``recv_buffer``) instead of delivering them."""
        self.reading = False

    def resume_reading(self, now: float) -> None:
        """Deliver what was held, and tell the peer the window opened."""
        if self.reading:
            return
        self.reading = True
        was = recv_window(self)
        deliver_pending(self)
        if self.state != "done" and was < MSS <= recv_window(self):
            self._ack_due = True
            self.host.needs_flush(self)

    # ------------------------------------------------------------------ packets in

    def receive(self, p: Packet, now: float) -> None:
        """Handle one packet addressed to this connection (RESET included)."""
        if self.state == "done":
            return
        kind = p.type
        if kind == ST_RESET:
            self._finish("reset by peer", clean=False)
            return
        self.last_received = now
        if kind == ST_SYN:
            # Our STATE was lost: the initiator sends its SYN again.
            if self.state in ("syn_recv", "connected") and p.seq_nr == self._syn_seq:
                self._ack_due = True
                self.host.needs_flush(self)
            return
        if self.state == "syn_recv":
            return  # the demultiplexer completes a half-open connection (established)
        if self.state == "syn_sent":
            if kind != ST_STATE or p.ack_nr != self._syn_seq:
                return
            self.ack_nr = (p.seq_nr - 1) & MASK16
            self.state = "connected"
            self._note_timestamp(p, now)
            process_acks(self, p, now)
            if self.events is not None:
                self.events.connected()
            self.host.needs_flush(self)
            return
        # An ack of something never sent: a stray or forged packet; ignore it entirely.
        if ((p.ack_nr - self.acked) & MASK16) > ((self.seq_nr - 1 - self.acked) & MASK16) and \
                ((self.acked - p.ack_nr) & MASK16) > MAX_REORDER:
            return
        self._note_timestamp(p, now)
        process_acks(self, p, now)
        if self.state == "done":
            return
        if kind == ST_DATA or kind == ST_FIN:
            receive_data(self, p, now)

    def _note_timestamp(self, p: Packet, now: float) -> None:
        if p.timestamp:
            self.reply_micro = (int(now * 1e6) - p.timestamp) & MASK32

    def _peer_finished(self, now: float) -> None:
        """Everything up to the peer's FIN arrived: deliver it, ack, answer with our FIN."""
        self.reading = True
        self._eof_reached = True
        deliver_pending(self)
        if self.state == "done":
            return
        send_state(self, now)
        if self._fin_acked:
            self._finish("closed", clean=True)
            return
        if self.state != "closing":
            self.state = "closing"
            self._closing_since = now
        self._fin_wanted = True
        self._sendbuf.clear()
        if self._fin_seq is None:
            send_fin(self, now)
        if self.events is not None:
            events, self.events = self.events, None
            events.closed("closed by peer", True)

    # ------------------------------------------------------------------ packets out

    def flush(self, now: float) -> None:
        """Send what the windows allow: packets due again, new data, the FIN, a pending ack.
        Called again from within (a producer resumed by ``send_drained`` writes more), it asks
        the host for a later flush instead."""
        if self.state == "done":
            return
        if self._flushing:
            self.host.needs_flush(self)
            return
        self._flushing = True
        try:
            send_due(self, now)
        finally:
            self._flushing = False

    def _send_reset(self, now: float) -> None:
        self.host.send_datagram(
            _pack(TV_RESET, 0, self.send_id, int(now * 1e6) & MASK32, self.reply_micro, 0,
                  self.seq_nr, self.ack_nr), self.addr)

    # ------------------------------------------------------------------ timers

    def tick(self, now: float) -> None:
        """Retransmission timeout, keep-alive, and the timeouts of half-open, closing and
        silent connections."""
        state = self.state
        if state == "done":
            return
        if state == "syn_recv":
            if now - self.created >= SYN_RECV_TIMEOUT:
                self._finish("no data after SYN", clean=False)
            return
        if state == "closing" and now - self._closing_since >= CLOSE_TIMEOUT:
            self.abort(now, "close timed out")
            return
        if now - self.last_received >= IDLE_TIMEOUT:
            self.abort(now, "idle")
            return
        if self._rto_at is not None and now >= self._rto_at:
            retransmission_timeout(self, now)
            if self.state == "done":
                return
        if state == "connected" and now - self.last_sent >= KEEPALIVE:
            send_state(self, now, keepalive=True)
        if self.peer_wnd < MSS and self._sendbuf and self._zero_since is not None and \
                now - self._zero_since >= ZERO_WINDOW_PROBE:
            self.host.needs_flush(self)

    def _finish(self, reason: str, clean: bool) -> None:
        self.state = "done"
        self.close_reason = reason
        self.outbuf.clear()
        self._sendbuf = bytearray()
        self._reorder.clear()
        self._pending.clear()
        self._pending_bytes = self._reorder_bytes = self.in_flight = self._resend_due = 0
        self.host.finished(self)
        if self.events is not None:
            events, self.events = self.events, None
            events.closed(reason, clean)
