"""One uTP connection (BEP 29), sans I/O: a reliable, ordered byte stream over datagrams.

:class:`UtpConnection` takes decoded packets and ``now`` and produces datagrams (through its
:class:`ConnectionHost`, the demultiplexer) and stream events (through :class:`ConnectionEvents`,
the adapter's transport). It imports no reactor and no socket; every timer is checked in
:meth:`UtpConnection.tick`, which the adapter calls a few times a second.

Connection setup and ids (as libutp and libtorrent do it)
    The initiator picks a random ``R``: it receives on ``R`` and sends on ``R + 1``; its SYN
    carries ``R`` and its first sequence number ``s``. The acceptor receives on ``R + 1``, sends
    on ``R``, starts its own sequence at a random ``S`` and answers with a STATE (``seq_nr`` ``S``,
    ``ack_nr`` ``s``). The initiator then sets its ``ack_nr`` to ``S - 1``: STATE packets carry the
    next sequence number without using it, so the acceptor's first DATA is ``S``. An accepted
    connection stays *half-open* (``syn_recv``) until the initiator's first DATA arrives acking
    ``S - 1``: only then does the stream exist for the layer above (the demultiplexer budgets
    half-open connections, see :mod:`.mux`).

Sending
    Bytes written are cut into packets of at most ``MSS`` payload bytes (the datagram stays under
    1400 bytes, below the path MTU of Ethernet, PPPoE and most tunnels) and sent while the bytes
    in flight stay within ``min(congestion window, the peer's advertised window)``
    (:class:`~.ledbat.Ledbat`). Each packet is kept until acked, cumulatively (``ack_nr``) or by
    the selective-ack extension. A packet is resent at once after 3 duplicate acks, or when
    3 packets sent after it were selectively acked (fast resend, at most 4 per ack, at most once
    per packet); after the retransmission timeout every packet in flight is due again, the oldest
    is resent, the timeout doubles, and after ``MAX_TIMEOUTS`` consecutive timeouts the
    connection is dead. A peer that advertises no window gets one probe packet every
    ``ZERO_WINDOW_PROBE`` seconds.

Receiving
    In-order payload goes straight to the layer above, or, while it does not read
    (:meth:`UtpConnection.pause_reading`), into a buffer; out-of-order packets wait in a reorder
    buffer. Both count against ``recv_buffer``: the window advertised is what is left of it, and a
    packet that does not fit is dropped unacked (the peer sends it again). Acks are sent once per
    :meth:`UtpConnection.flush` (the adapter flushes after each batch of datagrams), with a
    selective ack while packets are missing.

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
from .wire import (
    EXT_SACK,
    HEADER,
    HEADER_SIZE,
    ST_DATA,
    ST_FIN,
    ST_RESET,
    ST_STATE,
    ST_SYN,
    VERSION,
    Packet,
    encode_sack,
    sack_offsets,
)

__all__ = ["ConnectionEvents", "ConnectionHost", "UtpConnection", "Addr", "MSS", "PACKET_SIZE"]

Addr = tuple[str, int]

MASK16 = 0xFFFF
MASK32 = 0xFFFFFFFF
PACKET_SIZE = 1400  # largest datagram we send (header included)
MSS = PACKET_SIZE - HEADER_SIZE  # payload bytes per DATA packet
INITIAL_WINDOW = 4 * MSS
MAX_WINDOW = 1 << 20  # bytes in flight at most (our send buffer beyond what is queued)
RECV_BUFFER = 256 * 1024  # received bytes we hold for the layer above (and advertise)
MAX_REORDER = 1024  # packets ahead of the next expected one we keep
MIN_RTO = 0.5
MAX_RTO = 30.0
INITIAL_RTO = 1.0
SYN_RTO = 3.0  # libutp and libtorrent wait 3 s for the first answer
MAX_TIMEOUTS = 5  # consecutive retransmission timeouts before the connection is dead
MAX_SYN_TIMEOUTS = 2  # the same for an outgoing SYN
DUP_ACKS = 3
MAX_FAST_RESENDS = 4  # per selective ack
KEEPALIVE = 29.0  # libutp's interval (NAT mappings)
IDLE_TIMEOUT = 240.0  # nothing received for this long: the peer is gone
SYN_RECV_TIMEOUT = 10.0  # a half-open connection gets this long to send its first DATA
CLOSE_TIMEOUT = 10.0  # a closing connection is dropped after this long
ZERO_WINDOW_PROBE = 2.0

_DATA_TV = (ST_DATA << 4) | VERSION
_FIN_TV = (ST_FIN << 4) | VERSION
_STATE_TV = (ST_STATE << 4) | VERSION
_RESET_TV = (ST_RESET << 4) | VERSION
_SYN_TV = (ST_SYN << 4) | VERSION
_pack_into = HEADER.pack_into
_pack = HEADER.pack


def _after(a: int, b: int) -> bool:
    """a comes after b in 16-bit sequence space."""
    return 0 < ((a - b) & MASK16) < 0x8000


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


class _Out:
    """A packet sent (or due) and not yet acked."""

    __slots__ = ("packet", "size", "sent", "tx", "resend")

    def __init__(self, packet: bytearray, size: int) -> None:
        self.packet = packet
        self.size = size  # payload bytes (what counts in flight)
        self.sent = 0.0
        self.tx = 0  # transmissions so far
        self.resend = False  # timed out: due again, not counted in flight


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
        self.outbuf: dict[int, _Out] = {}
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
        out = _Out(syn, 0)
        c.outbuf[c.seq_nr] = out
        c._syn_seq = c.seq_nr
        c.seq_nr = (c.seq_nr + 1) & MASK16
        c._rto = SYN_RTO
        c._transmit(out, c._syn_seq, _SYN_TV, c.recv_id, now)
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
        c._send_state(now)
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
        was = self._window()
        self._deliver_pending()
        if self.state != "done" and was < MSS <= self._window():
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
            self._process_acks(p, now)
            if self.events is not None:
                self.events.connected()
            self.host.needs_flush(self)
            return
        # An ack of something never sent: a stray or forged packet; ignore it entirely.
        if ((p.ack_nr - self.acked) & MASK16) > ((self.seq_nr - 1 - self.acked) & MASK16) and \
                ((self.acked - p.ack_nr) & MASK16) > MAX_REORDER:
            return
        self._note_timestamp(p, now)
        self._process_acks(p, now)
        if self.state == "done":
            return
        if kind == ST_DATA or kind == ST_FIN:
            self._incoming(p, now)

    def _note_timestamp(self, p: Packet, now: float) -> None:
        if p.timestamp:
            self.reply_micro = (int(now * 1e6) - p.timestamp) & MASK32

    def _process_acks(self, p: Packet, now: float) -> None:
        in_flight_before = self.in_flight
        acked_bytes = 0
        min_rtt = float("inf")
        outbuf = self.outbuf
        n = (p.ack_nr - self.acked) & MASK16
        outstanding = (self.seq_nr - 1 - self.acked) & MASK16
        progressed = False
        if 0 < n <= outstanding:
            seq = self.acked
            for _ in range(n):
                seq = (seq + 1) & MASK16
                o = outbuf.pop(seq, None)
                if o is None:
                    continue
                acked_bytes += o.size
                min_rtt = min(min_rtt, self._acked(o, now))
            self.acked = p.ack_nr
            if _after(self.acked, self._fast_resend_seq - 1):
                self._fast_resend_seq = (self.acked + 1) & MASK16
            self.dup_acks = 0
            progressed = True
        elif n == 0 and p.type == ST_STATE and outbuf:
            self.dup_acks += 1
        self.peer_wnd = p.wnd_size
        if p.wnd_size >= MSS:
            self._zero_since = None
        elif self._zero_since is None:
            self._zero_since = now
        mask = p.sack if p.extensions else None
        resend: list[int] = []
        if mask is not None and outbuf:
            acked_bytes_sack, rtt_sack, resend = self._selective_ack(p.ack_nr, mask, now)
            acked_bytes += acked_bytes_sack
            min_rtt = min(min_rtt, rtt_sack)
        if progressed or acked_bytes:
            self.timeouts = 0
            self._rto = self.rtt.rto
            self._rto_at = now + self._rto if outbuf else None
        # the one-way delay the peer measured for our packets drives the window
        if acked_bytes and p.timestamp_diff and p.timestamp_diff != 0x7FFFFFFF:
            self.delays.add(p.timestamp_diff, now)
            delay = self.delays.current
            if min_rtt != float("inf") and delay > min_rtt * 1e6:
                self.delays.shift(delay - int(min_rtt * 1e6))
                delay = int(min_rtt * 1e6)
            self.cc.on_ack(acked_bytes, delay, in_flight_before, self._limited)
            self._limited = False
        elif acked_bytes:
            self.cc.on_ack(acked_bytes, 0, in_flight_before, self._limited)
            self._limited = False
        # fast resend: three duplicate acks, or packets selectively acked after a missing one
        first = (self.acked + 1) & MASK16
        if self.dup_acks >= DUP_ACKS and first == self._fast_resend_seq and first in outbuf:
            resend.insert(0, first)
        if resend:
            for seq in resend[:MAX_FAST_RESENDS]:
                o = outbuf.get(seq)
                if o is None:
                    continue
                if _after(seq, self._loss_seq):
                    self._loss_seq = (self.seq_nr - 1) & MASK16
                    self.cc.on_loss()
                self._fast_resend_seq = (seq + 1) & MASK16
                self.retransmits += 1
                self._resend(o, seq, now)
            self.dup_acks = 0
        if progressed:
            if self.state == "closing" and self._fin_seq is not None and \
                    not self._fin_acked and not _after(self._fin_seq, self.acked):
                self._fin_acked = True
                if self._eof_reached:
                    self._finish("closed", clean=True)
                    return
                # Both FINs make the end (as in libutp): the stream is over for the layer
                # above; the connection stays to ack the peer's FIN (or CLOSE_TIMEOUT).
                if self.events is not None:
                    events, self.events = self.events, None
                    events.closed("closed", True)
            self.host.needs_flush(self)  # the window moved: more may go out
        elif acked_bytes:
            self.host.needs_flush(self)

    def _acked(self, o: _Out, now: float) -> float:
        """Account for an acked packet (taken out of ``outbuf`` by the caller); its round trip
        when it was sent once (Karn: a resent packet's ack says nothing of the RTT), else inf."""
        if o.resend:
            self._resend_due -= 1
        else:
            self.in_flight -= o.size
        if o.tx != 1:
            return float("inf")
        rtt = now - o.sent
        self.rtt.sample(rtt)
        return rtt

    def _selective_ack(self, ack_nr: int, mask: bytes, now: float) -> tuple[int, float, list[int]]:
        outbuf = self.outbuf
        base = (ack_nr + 2) & MASK16
        acked_bytes = 0
        min_rtt = float("inf")
        offsets = sack_offsets(mask)
        if not offsets:
            return 0, min_rtt, []
        for i in offsets:
            seq = (base + i) & MASK16
            o = outbuf.get(seq)
            if o is None or o.tx == 0:
                continue
            del outbuf[seq]
            acked_bytes += o.size
            min_rtt = min(min_rtt, self._acked(o, now))
        # A packet is lost when at least DUP_ACKS packets after it were received.
        lost: list[int] = []
        received = set(offsets)
        count = 0
        for i in range(offsets[-1], -2, -1):
            if i in received:
                count += 1
                continue
            if count < DUP_ACKS:
                continue
            seq = (base + i) & MASK16
            o = outbuf.get(seq)
            if o is None or o.tx == 0 or _after(self._fast_resend_seq, seq):
                continue
            lost.append(seq)
        lost.reverse()  # oldest first
        return acked_bytes, min_rtt, lost

    def _incoming(self, p: Packet, now: float) -> None:
        if self._eof_seq is not None and _after(p.seq_nr, self._eof_seq):
            return  # past the peer's FIN
        off = (p.seq_nr - self.ack_nr - 1) & MASK16
        if off >= 0x8000:  # already received: our ack was lost
            self.duplicates += 1
            self._ack_due = True
            self.host.needs_flush(self)
            return
        if off >= MAX_REORDER:
            return
        payload = p.payload if p.type == ST_DATA else b""
        if p.type == ST_FIN and self._eof_seq is None:
            self._eof_seq = p.seq_nr
        self._ack_due = True
        self.host.needs_flush(self)
        if off == 0:
            if payload:
                if not self.reading and len(payload) > self._window():
                    return  # no room: unacked, the peer sends it again
                self._accept(payload)
            self.ack_nr = p.seq_nr
            reorder = self._reorder
            while reorder:
                nxt = (self.ack_nr + 1) & MASK16
                data = reorder.pop(nxt, None)
                if data is None:
                    break
                self._reorder_bytes -= len(data)
                if data:
                    self._accept(data)
                self.ack_nr = nxt
            if self._eof_seq is not None and self.ack_nr == self._eof_seq:
                self._peer_finished(now)
            elif self.reading:
                self._deliver_pending()
            return
        if p.seq_nr in self._reorder:
            self.duplicates += 1
            return
        if len(payload) > self._window():
            return
        self._reorder[p.seq_nr] = payload
        self._reorder_bytes += len(payload)

    def _accept(self, data: bytes) -> None:
        self.bytes_received += len(data)
        self._pending.append(data)
        self._pending_bytes += len(data)

    def _deliver_pending(self) -> None:
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._pending and self.reading and self.state != "done":
                data = self._pending.pop(0)
                self._pending_bytes -= len(data)
                if self.events is not None:
                    self.events.data_received(data)
        finally:
            self._delivering = False

    def _window(self) -> int:
        return max(0, self.recv_buffer - self._pending_bytes - self._reorder_bytes)

    def _peer_finished(self, now: float) -> None:
        """Everything up to the peer's FIN arrived: deliver it, ack, answer with our FIN."""
        self.reading = True
        self._eof_reached = True
        self._deliver_pending()
        if self.state == "done":
            return
        self._send_state(now)
        if self._fin_acked:
            self._finish("closed", clean=True)
            return
        if self.state != "closing":
            self.state = "closing"
            self._closing_since = now
        self._fin_wanted = True
        self._sendbuf.clear()
        if self._fin_seq is None:
            self._send_fin(now)
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
            self._flush(now)
        finally:
            self._flushing = False

    def _flush(self, now: float) -> None:
        sent = False
        if self.state in ("connected", "closing"):
            window = min(self.cc.cwnd, self.peer_wnd)
            if self.peer_wnd < MSS and self.in_flight == 0 and self._zero_since is not None \
                    and now - self._zero_since >= ZERO_WINDOW_PROBE:
                window = MSS  # probe a closed window with one packet
                self._zero_since = now
            if self._resend_due:
                for seq, o in list(self.outbuf.items()):
                    if not o.resend:
                        continue
                    if self.in_flight + o.size > window and self.in_flight:
                        self._limited = True
                        break
                    self._resend(o, seq, now)
                    sent = True
            buf = self._sendbuf
            if buf and not self._resend_due:
                sent = self._send_data(now, window) or sent
            if self._fin_wanted and self._fin_seq is None and not self._sendbuf:
                self._send_fin(now)
                sent = True
            if not buf and self.events is not None and sent:
                self.events.send_drained()
        if self._ack_due and not (sent and not self._reorder):
            self._send_state(now)
        self._ack_due = False

    def _send_data(self, now: float, window: float) -> bool:
        buf = self._sendbuf
        ts = int(now * 1e6) & MASK32
        wnd = self._window()
        outbuf = self.outbuf
        batch: list[bytearray] = []
        while buf:
            n = MSS if len(buf) > MSS else len(buf)
            if self.in_flight + n > window and self.in_flight:
                self._limited = True
                break
            seq = self.seq_nr
            pkt = bytearray(HEADER_SIZE)
            _pack_into(pkt, 0, _DATA_TV, 0, self.send_id, ts, self.reply_micro, wnd, seq,
                       self.ack_nr)
            pkt += buf[:n]
            del buf[:n]
            o = _Out(pkt, n)
            o.sent = now
            o.tx = 1
            outbuf[seq] = o
            self.seq_nr = (seq + 1) & MASK16
            self.in_flight += n
            self.bytes_sent += n
            batch.append(pkt)
        if batch:
            self.packets_sent += len(batch)
            self.host.send_datagrams(batch, self.addr)
            self.last_sent = now
            if self._rto_at is None:
                self._rto = self.rtt.rto
                self._rto_at = now + self._rto
        return bool(batch)

    def _send_fin(self, now: float) -> None:
        pkt = bytearray(HEADER_SIZE)
        o = _Out(pkt, 0)
        seq = self.seq_nr
        self.outbuf[seq] = o
        self._fin_seq = seq
        self.seq_nr = (seq + 1) & MASK16
        if self.state != "closing":
            self.state = "closing"
            self._closing_since = now
        self._transmit(o, seq, _FIN_TV, self.send_id, now)
        if self._rto_at is None:
            self._rto_at = now + self._rto

    def _transmit(self, o: _Out, seq: int, type_ver: int, conn_id: int, now: float) -> None:
        _pack_into(o.packet, 0, type_ver, 0, conn_id, int(now * 1e6) & MASK32,
                   self.reply_micro, self._window(), seq, self.ack_nr)
        o.sent = now
        o.tx += 1
        self.in_flight += o.size
        self.packets_sent += 1
        self.last_sent = now
        self.host.send_datagram(o.packet, self.addr)

    def _resend(self, o: _Out, seq: int, now: float) -> None:
        """Send ``o`` again with a fresh timestamp and ack_nr (type and id unchanged)."""
        if o.resend:
            o.resend = False
            self._resend_due -= 1
            self.in_flight += o.size
        pkt = o.packet
        _pack_into(pkt, 0, pkt[0], 0, (pkt[2] << 8) | pkt[3], int(now * 1e6) & MASK32,
                   self.reply_micro, self._window(), seq, self.ack_nr)
        o.sent = now
        o.tx += 1
        self.packets_sent += 1
        self.last_sent = now
        self.host.send_datagram(pkt, self.addr)

    def _send_state(self, now: float, *, keepalive: bool = False) -> None:
        ack = (self.ack_nr - 1) & MASK16 if keepalive else self.ack_nr
        ts = int(now * 1e6) & MASK32
        if self._reorder and not keepalive:
            base = (self.ack_nr + 2) & MASK16
            offs = [(s - base) & MASK16 for s in self._reorder]
            mask = encode_sack(o for o in offs if o < 8 * 32)
            pkt = _pack(_STATE_TV, EXT_SACK, self.send_id, ts, self.reply_micro,
                        self._window(), self.seq_nr, ack) + bytes((0, len(mask))) + mask
        else:
            pkt = _pack(_STATE_TV, 0, self.send_id, ts, self.reply_micro, self._window(),
                        self.seq_nr, ack)
        self.last_sent = now
        if not keepalive:
            self._ack_due = False
        self.host.send_datagram(pkt, self.addr)

    def _send_reset(self, now: float) -> None:
        self.host.send_datagram(
            _pack(_RESET_TV, 0, self.send_id, int(now * 1e6) & MASK32, self.reply_micro, 0,
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
            self._timeout(now)
            if self.state == "done":
                return
        if state == "connected" and now - self.last_sent >= KEEPALIVE:
            self._send_state(now, keepalive=True)
        if self.peer_wnd < MSS and self._sendbuf and self._zero_since is not None and \
                now - self._zero_since >= ZERO_WINDOW_PROBE:
            self.host.needs_flush(self)

    def _timeout(self, now: float) -> None:
        if not self.outbuf:
            self._rto_at = None
            return
        limit = MAX_SYN_TIMEOUTS if self.state == "syn_sent" else MAX_TIMEOUTS
        if self.timeouts >= limit:
            self._finish("timed out", clean=False)
            return
        self.timeouts += 1
        self._rto = min(MAX_RTO, self._rto * 2)
        self._rto_at = now + self._rto
        self.cc.on_timeout(self.in_flight)
        self._loss_seq = (self.seq_nr - 1) & MASK16
        oldest_seq = -1
        for seq, o in self.outbuf.items():
            if oldest_seq < 0:
                oldest_seq = seq
            if o.tx and not o.resend:
                o.resend = True
                self._resend_due += 1
                self.in_flight -= o.size
        if oldest_seq >= 0:
            o = self.outbuf[oldest_seq]
            self.retransmits += 1
            if self.state == "syn_sent":
                o.resend = False
                self._resend_due -= 1
                self._transmit(o, oldest_seq, _SYN_TV, self.recv_id, now)
            else:
                self._resend(o, oldest_seq, now)
        self.dup_acks = 0

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
