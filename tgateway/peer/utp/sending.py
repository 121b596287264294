"""The sending half of a uTP connection (BEP 29), sans I/O: packets out, acks in, retransmission.

Bytes written are cut into packets of at most ``MSS`` payload bytes (the datagram stays under
1400 bytes, below the path MTU of Ethernet, PPPoE and most tunnels) and sent while the bytes in
flight stay within ``min(congestion window, the peer's advertised window)``
(:class:`~.ledbat.Ledbat`). Each packet is kept until acked, cumulatively (``ack_nr``) or by the
selective-ack extension. A packet is resent at once after 3 duplicate acks, or when 3 packets sent
after it were selectively acked (fast resend, at most 4 per ack, at most once per packet); after
the retransmission timeout every packet in flight is due again, the oldest is resent, the timeout
doubles, and after ``MAX_TIMEOUTS`` consecutive timeouts the connection is dead. A peer that
advertises no window gets one probe packet every ``ZERO_WINDOW_PROBE`` seconds.

These are functions of the :class:`~.core.UtpConnection` (``c``), called by its methods: the
connection is one object whose state they read and write directly, as its methods do. A send
buffer of its own would put an extra object and attribute lookup on every packet of a hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .receiving import recv_window, send_state
from .wire import (
    HEADER,
    HEADER_SIZE,
    MASK16,
    MASK32,
    ST_STATE,
    TV_DATA,
    TV_FIN,
    TV_SYN,
    Packet,
    sack_offsets,
    seq_after,
)

if TYPE_CHECKING:
    from .core import UtpConnection

__all__ = [
    "MSS", "PACKET_SIZE", "OutPacket", "account_acked", "process_acks", "resend_packet",
    "retransmission_timeout", "selective_ack", "send_data", "send_due", "send_fin", "transmit",
]

PACKET_SIZE = 1400  # largest datagram we send (header included)
MSS = PACKET_SIZE - HEADER_SIZE  # payload bytes per DATA packet
INITIAL_WINDOW = 4 * MSS
MAX_WINDOW = 1 << 20  # bytes in flight at most (our send buffer beyond what is queued)
MIN_RTO = 0.5
MAX_RTO = 30.0
INITIAL_RTO = 1.0
MAX_TIMEOUTS = 5  # consecutive retransmission timeouts before the connection is dead
MAX_SYN_TIMEOUTS = 2  # the same for an outgoing SYN
DUP_ACKS = 3
MAX_FAST_RESENDS = 4  # per selective ack
ZERO_WINDOW_PROBE = 2.0

_pack_into = HEADER.pack_into


class OutPacket:
    """A packet sent (or due) and not yet acked."""

    __slots__ = ("packet", "size", "sent", "tx", "resend")

    def __init__(self, packet: bytearray, size: int) -> None:
        self.packet = packet
        self.size = size  # payload bytes (what counts in flight)
        self.sent = 0.0
        self.tx = 0  # transmissions so far
        self.resend = False  # timed out: due again, not counted in flight


# ---------------------------------------------------------------------- acks in


def process_acks(c: UtpConnection, p: Packet, now: float) -> None:
    """Take what ``p`` acks (cumulatively and selectively) out of ``outbuf``, feed the RTT
    estimator and LEDBAT, note the peer's window, fast-resend what it shows lost, and notice our
    FIN acked."""
    in_flight_before = c.in_flight
    acked_bytes = 0
    min_rtt = float("inf")
    outbuf = c.outbuf
    n = (p.ack_nr - c.acked) & MASK16
    outstanding = (c.seq_nr - 1 - c.acked) & MASK16
    progressed = False
    if 0 < n <= outstanding:
        seq = c.acked
        for _ in range(n):
            seq = (seq + 1) & MASK16
            o = outbuf.pop(seq, None)
            if o is None:
                continue
            acked_bytes += o.size
            min_rtt = min(min_rtt, account_acked(c, o, now))
        c.acked = p.ack_nr
        if seq_after(c.acked, c._fast_resend_seq - 1):
            c._fast_resend_seq = (c.acked + 1) & MASK16
        c.dup_acks = 0
        progressed = True
    elif n == 0 and p.type == ST_STATE and outbuf:
        c.dup_acks += 1
    c.peer_wnd = p.wnd_size
    if p.wnd_size >= MSS:
        c._zero_since = None
    elif c._zero_since is None:
        c._zero_since = now
    mask = p.sack if p.extensions else None
    resend: list[int] = []
    if mask is not None and outbuf:
        acked_bytes_sack, rtt_sack, resend = selective_ack(c, p.ack_nr, mask, now)
        acked_bytes += acked_bytes_sack
        min_rtt = min(min_rtt, rtt_sack)
    if progressed or acked_bytes:
        c.timeouts = 0
        c._rto = c.rtt.rto
        c._rto_at = now + c._rto if outbuf else None
    # the one-way delay the peer measured for our packets drives the window
    if acked_bytes and p.timestamp_diff and p.timestamp_diff != 0x7FFFFFFF:
        c.delays.add(p.timestamp_diff, now)
        delay = c.delays.current
        if min_rtt != float("inf") and delay > min_rtt * 1e6:
            c.delays.shift(delay - int(min_rtt * 1e6))
            delay = int(min_rtt * 1e6)
        c.cc.on_ack(acked_bytes, delay, in_flight_before, c._limited)
        c._limited = False
    elif acked_bytes:
        c.cc.on_ack(acked_bytes, 0, in_flight_before, c._limited)
        c._limited = False
    # fast resend: three duplicate acks, or packets selectively acked after a missing one
    first = (c.acked + 1) & MASK16
    if c.dup_acks >= DUP_ACKS and first == c._fast_resend_seq and first in outbuf:
        resend.insert(0, first)
    if resend:
        for seq in resend[:MAX_FAST_RESENDS]:
            o = outbuf.get(seq)
            if o is None:
                continue
            if seq_after(seq, c._loss_seq):
                c._loss_seq = (c.seq_nr - 1) & MASK16
                c.cc.on_loss()
            c._fast_resend_seq = (seq + 1) & MASK16
            c.retransmits += 1
            resend_packet(c, o, seq, now)
        c.dup_acks = 0
    if progressed:
        if c.state == "closing" and c._fin_seq is not None and \
                not c._fin_acked and not seq_after(c._fin_seq, c.acked):
            c._fin_acked = True
            if c._eof_reached:
                c._finish("closed", clean=True)
                return
            # Both FINs make the end (as in libutp): the stream is over for the layer
            # above; the connection stays to ack the peer's FIN (or CLOSE_TIMEOUT).
            if c.events is not None:
                events, c.events = c.events, None
                events.closed("closed", True)
        c.host.needs_flush(c)  # the window moved: more may go out
    elif acked_bytes:
        c.host.needs_flush(c)


def account_acked(c: UtpConnection, o: OutPacket, now: float) -> float:
    """Account for an acked packet (taken out of ``outbuf`` by the caller); its round trip
    when it was sent once (Karn: a resent packet's ack says nothing of the RTT), else inf."""
    if o.resend:
        c._resend_due -= 1
    else:
        c.in_flight -= o.size
    if o.tx != 1:
        return float("inf")
    rtt = now - o.sent
    c.rtt.sample(rtt)
    return rtt


def selective_ack(c: UtpConnection, ack_nr: int, mask: bytes,
                  now: float) -> tuple[int, float, list[int]]:
    """Take the packets ``mask`` acks out of ``outbuf``: the bytes acked, the shortest round
    trip measured, and the packets now known lost (oldest first, not yet fast-resent)."""
    outbuf = c.outbuf
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
        min_rtt = min(min_rtt, account_acked(c, o, now))
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
        if o is None or o.tx == 0 or seq_after(c._fast_resend_seq, seq):
            continue
        lost.append(seq)
    lost.reverse()  # oldest first
    return acked_bytes, min_rtt, lost


# ---------------------------------------------------------------------- packets out


def send_due(c: UtpConnection, now: float) -> None:
    """Send what the windows allow (see :meth:`UtpConnection.flush`), then a pending ack unless
    a DATA packet just carried it."""
    sent = False
    if c.state in ("connected", "closing"):
        window = min(c.cc.cwnd, c.peer_wnd)
        if c.peer_wnd < MSS and c.in_flight == 0 and c._zero_since is not None \
                and now - c._zero_since >= ZERO_WINDOW_PROBE:
            window = MSS  # probe a closed window with one packet
            c._zero_since = now
        if c._resend_due:
            for seq, o in list(c.outbuf.items()):
                if not o.resend:
                    continue
                if c.in_flight + o.size > window and c.in_flight:
                    c._limited = True
                    break
                resend_packet(c, o, seq, now)
                sent = True
        buf = c._sendbuf
        if buf and not c._resend_due:
            sent = send_data(c, now, window) or sent
        if c._fin_wanted and c._fin_seq is None and not c._sendbuf:
            send_fin(c, now)
            sent = True
        if not buf and c.events is not None and sent:
            c.events.send_drained()
    if c._ack_due and not (sent and not c._reorder):
        send_state(c, now)
    c._ack_due = False


def send_data(c: UtpConnection, now: float, window: float) -> bool:
    """Cut written bytes into DATA packets while ``window`` allows, and send them in one batch;
    whether any went out."""
    buf = c._sendbuf
    ts = int(now * 1e6) & MASK32
    wnd = recv_window(c)
    outbuf = c.outbuf
    batch: list[bytearray] = []
    while buf:
        n = MSS if len(buf) > MSS else len(buf)
        if c.in_flight + n > window and c.in_flight:
            c._limited = True
            break
        seq = c.seq_nr
        pkt = bytearray(HEADER_SIZE)
        _pack_into(pkt, 0, TV_DATA, 0, c.send_id, ts, c.reply_micro, wnd, seq,
                   c.ack_nr)
        pkt += buf[:n]
        del buf[:n]
        o = OutPacket(pkt, n)
        o.sent = now
        o.tx = 1
        outbuf[seq] = o
        c.seq_nr = (seq + 1) & MASK16
        c.in_flight += n
        c.bytes_sent += n
        batch.append(pkt)
    if batch:
        c.packets_sent += len(batch)
        c.host.send_datagrams(batch, c.addr)
        c.last_sent = now
        if c._rto_at is None:
            c._rto = c.rtt.rto
            c._rto_at = now + c._rto
    return bool(batch)


def send_fin(c: UtpConnection, now: float) -> None:
    """Send our FIN (it takes a sequence number, is kept until acked) and start closing."""
    pkt = bytearray(HEADER_SIZE)
    o = OutPacket(pkt, 0)
    seq = c.seq_nr
    c.outbuf[seq] = o
    c._fin_seq = seq
    c.seq_nr = (seq + 1) & MASK16
    if c.state != "closing":
        c.state = "closing"
        c._closing_since = now
    transmit(c, o, seq, TV_FIN, c.send_id, now)
    if c._rto_at is None:
        c._rto_at = now + c._rto


def transmit(c: UtpConnection, o: OutPacket, seq: int, type_ver: int, conn_id: int,
             now: float) -> None:
    """Send ``o`` (a SYN or FIN: header only) with a fresh header."""
    _pack_into(o.packet, 0, type_ver, 0, conn_id, int(now * 1e6) & MASK32,
               c.reply_micro, recv_window(c), seq, c.ack_nr)
    o.sent = now
    o.tx += 1
    c.in_flight += o.size
    c.packets_sent += 1
    c.last_sent = now
    c.host.send_datagram(o.packet, c.addr)


def resend_packet(c: UtpConnection, o: OutPacket, seq: int, now: float) -> None:
    """Send ``o`` again with a fresh timestamp and ack_nr (type and id unchanged)."""
    if o.resend:
        o.resend = False
        c._resend_due -= 1
        c.in_flight += o.size
    pkt = o.packet
    _pack_into(pkt, 0, pkt[0], 0, (pkt[2] << 8) | pkt[3], int(now * 1e6) & MASK32,
               c.reply_micro, recv_window(c), seq, c.ack_nr)
    o.sent = now
    o.tx += 1
    c.packets_sent += 1
    c.last_sent = now
    c.host.send_datagram(pkt, c.addr)


# ---------------------------------------------------------------------- timeout


def retransmission_timeout(c: UtpConnection, now: float) -> None:
    """The retransmission timer fired: every packet in flight is due again, the oldest goes now,
    the timeout doubles; after ``MAX_TIMEOUTS`` (a SYN: ``MAX_SYN_TIMEOUTS``) in a row the
    connection is dead."""
    if not c.outbuf:
        c._rto_at = None
        return
    limit = MAX_SYN_TIMEOUTS if c.state == "syn_sent" else MAX_TIMEOUTS
    if c.timeouts >= limit:
        c._finish("timed out", clean=False)
        return
    c.timeouts += 1
    c._rto = min(MAX_RTO, c._rto * 2)
    c._rto_at = now + c._rto
    c.cc.on_timeout(c.in_flight)
    c._loss_seq = (c.seq_nr - 1) & MASK16
    oldest_seq = -1
    for seq, o in c.outbuf.items():
        if oldest_seq < 0:
            oldest_seq = seq
        if o.tx and not o.resend:
            o.resend = True
            c._resend_due += 1
            c.in_flight -= o.size
    if oldest_seq >= 0:
        o = c.outbuf[oldest_seq]
        c.retransmits += 1
        if c.state == "syn_sent":
            o.resend = False
            c._resend_due -= 1
            transmit(c, o, oldest_seq, TV_SYN, c.recv_id, now)
        else:
            resend_packet(c, o, oldest_seq, now)
    c.dup_acks = 0
