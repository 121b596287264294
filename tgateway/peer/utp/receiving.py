"""The receiving half of a uTP connection (BEP 29), sans I/O: delivery, reordering, acks out.

In-order payload goes straight to the layer above, or, while it does not read
(:meth:`~.core.UtpConnection.pause_reading`), into a buffer; out-of-order packets wait in a
reorder buffer (at most ``MAX_REORDER`` packets ahead). Both count against ``recv_buffer``: the
window advertised is what is left of it, and a packet that does not fit is dropped unacked (the
peer sends it again). Acks are sent once per :meth:`~.core.UtpConnection.flush` (the adapter
flushes after each batch of datagrams), with a selective ack while packets are missing.

Like :mod:`.sending`, these are functions of the :class:`~.core.UtpConnection` (``c``), called by
its methods, reading and writing its state directly (no second object on the per-packet path).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .wire import (
    EXT_SACK,
    HEADER,
    MASK16,
    MASK32,
    ST_DATA,
    ST_FIN,
    TV_STATE,
    Packet,
    encode_sack,
    seq_after,
)

if TYPE_CHECKING:
    from .core import UtpConnection

__all__ = ["accept_payload", "deliver_pending", "receive_data", "recv_window", "send_state"]

RECV_BUFFER = 256 * 1024  # received bytes we hold for the layer above (and advertise)
MAX_REORDER = 1024  # packets ahead of the next expected one we keep

_pack = HEADER.pack


# ---------------------------------------------------------------------- packets in


def receive_data(c: UtpConnection, p: Packet, now: float) -> None:
    """A DATA or FIN packet: deliver it in order (with what waited behind it), or keep it in the
    reorder buffer, or drop it (a duplicate, beyond the reorder limit, or no room)."""
    if c._eof_seq is not None and seq_after(p.seq_nr, c._eof_seq):
        return  # past the peer's FIN
    off = (p.seq_nr - c.ack_nr - 1) & MASK16
    if off >= 0x8000:  # already received: our ack was lost
        c.duplicates += 1
        c._ack_due = True
        c.host.needs_flush(c)
        return
    if off >= MAX_REORDER:
        return
    payload = p.payload if p.type == ST_DATA else b""
    if p.type == ST_FIN and c._eof_seq is None:
        c._eof_seq = p.seq_nr
    c._ack_due = True
    c.host.needs_flush(c)
    if off == 0:
        if payload:
            if not c.reading and len(payload) > recv_window(c):
                return  # no room: unacked, the peer sends it again
            accept_payload(c, payload)
        c.ack_nr = p.seq_nr
        reorder = c._reorder
        while reorder:
            nxt = (c.ack_nr + 1) & MASK16
            data = reorder.pop(nxt, None)
            if data is None:
                break
            c._reorder_bytes -= len(data)
            if data:
                accept_payload(c, data)
            c.ack_nr = nxt
        if c._eof_seq is not None and c.ack_nr == c._eof_seq:
            c._peer_finished(now)
        elif c.reading:
            deliver_pending(c)
        return
    if p.seq_nr in c._reorder:
        c.duplicates += 1
        return
    if len(payload) > recv_window(c):
        return
    c._reorder[p.seq_nr] = payload
    c._reorder_bytes += len(payload)


def accept_payload(c: UtpConnection, data: bytes) -> None:
    """In-order bytes, held until :func:`deliver_pending` hands them over."""
    c.bytes_received += len(data)
    c._pending.append(data)
    c._pending_bytes += len(data)


def deliver_pending(c: UtpConnection) -> None:
    """Hand held bytes to the layer above while it reads (not re-entered from its callback)."""
    if c._delivering:
        return
    c._delivering = True
    try:
        while c._pending and c.reading and c.state != "done":
            data = c._pending.pop(0)
            c._pending_bytes -= len(data)
            if c.events is not None:
                c.events.data_received(data)
    finally:
        c._delivering = False


def recv_window(c: UtpConnection) -> int:
    """The window we advertise: what is left of ``recv_buffer``."""
    return max(0, c.recv_buffer - c._pending_bytes - c._reorder_bytes)


# ---------------------------------------------------------------------- acks out


def send_state(c: UtpConnection, now: float, *, keepalive: bool = False) -> None:
    """Send a STATE acking ``ack_nr``, with a selective ack while packets are missing; a
    keep-alive acks ``ack_nr - 1`` (as libutp does) and leaves a due ack due."""
    ack = (c.ack_nr - 1) & MASK16 if keepalive else c.ack_nr
    ts = int(now * 1e6) & MASK32
    if c._reorder and not keepalive:
        base = (c.ack_nr + 2) & MASK16
        offs = [(s - base) & MASK16 for s in c._reorder]
        mask = encode_sack(o for o in offs if o < 8 * 32)
        pkt = _pack(TV_STATE, EXT_SACK, c.send_id, ts, c.reply_micro,
                    recv_window(c), c.seq_nr, ack) + bytes((0, len(mask))) + mask
    else:
        pkt = _pack(TV_STATE, 0, c.send_id, ts, c.reply_micro, recv_window(c),
                    c.seq_nr, ack)
    c.last_sent = now
    if not keepalive:
        c._ack_due = False
    c.host.send_datagram(pkt, c.addr)
