"""The sans-IO uTP connection and demultiplexer over an in-memory network with a fake clock
(tests/peer/utp_net.py): setup both ways, reliable in-order delivery under loss, reordering and
duplication, selective acks and fast resend, timeouts, the receive window, LEDBAT, FIN and RESET,
and the bounds on connections; and no datagram crashes the demultiplexer."""

from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.peer.utp_net import Network, Node, Stream
from tgateway.peer.utp import core, receiving, sending
from tgateway.peer.utp.core import UtpConnection
from tgateway.peer.utp.ledbat import Ledbat
from tgateway.peer.utp.sending import MSS
from tgateway.peer.utp.wire import (
    ST_DATA,
    ST_FIN,
    ST_RESET,
    ST_STATE,
    ST_SYN,
    Packet,
    encode_packet,
)


def _pair(net: Network, **kw: int) -> tuple[Node, Node]:
    return net.node("10.0.0.1", **kw), net.node("10.0.0.2", **kw)


def _open(net: Network, a: Node, b: Node) -> tuple[UtpConnection, Stream, UtpConnection, Stream]:
    """a connects to b; a's first DATA makes the stream at b."""
    conn, s = a.connect(b)
    net.run(1, until=lambda: s.connected_at is not None)
    assert conn.state == "connected"
    conn.write(b"hello")
    net.run(1, until=lambda: bool(b.accepted) and len(b.accepted[0][1].received) == 5)
    bconn, bs = b.accepted[0]
    assert bytes(bs.received) == b"hello"
    return conn, s, bconn, bs


def _payload(n: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(n)


def _transfer(net: Network, conn: UtpConnection, dst: Stream, data: bytes, limit: float) -> None:
    start = len(dst.received)
    conn.write(data)
    net.run(limit, until=lambda: len(dst.received) >= start + len(data))
    assert bytes(dst.received[start:]) == data


def test_handshake_ids_and_half_open_until_first_data() -> None:
    net = Network()
    a, b = _pair(net)
    conn, s = a.connect(b)
    syn_src, syn_dst, syn = net.sent[0]
    assert syn.type == ST_SYN and syn.connection_id == conn.recv_id
    assert conn.send_id == (conn.recv_id + 1) & 0xFFFF
    net.run(0.1)
    # b answered with a STATE on the initiator's receive id, and holds a half-open connection
    # that the layer above has not seen
    state = [p for src, _, p in net.sent if src == b.addr][0]
    assert state.type == ST_STATE and state.connection_id == conn.recv_id
    assert state.ack_nr == syn.seq_nr
    assert s.connected_at is not None and b.accepted == []
    assert b.mux.half_open_count == 1
    # the initiator's first DATA acks the acceptor's sequence number minus one (STATE uses none)
    conn.write(b"x")
    net.run(0.1)
    data = [p for src, _, p in net.sent if src == a.addr and p.type == ST_DATA][0]
    assert data.ack_nr == (state.seq_nr - 1) & 0xFFFF
    assert len(b.accepted) == 1 and b.mux.half_open_count == 0
    bconn, bs = b.accepted[0]
    assert bconn.state == "connected" and bytes(bs.received) == b"x"
    # and the acceptor's first DATA is the STATE's sequence number
    bconn.write(b"y")
    net.run(0.1)
    back = [p for src, _, p in net.sent if src == b.addr and p.type == ST_DATA][0]
    assert back.seq_nr == state.seq_nr and bytes(s.received) == b"y"


def test_bulk_both_ways_byte_identical() -> None:
    net = Network(delay=0.005)
    a, b = _pair(net)
    conn, s, bconn, bs = _open(net, a, b)
    up, down = _payload(3_000_000, 1), _payload(500_000, 2)
    conn.write(up)
    bconn.write(down)
    net.run(60, until=lambda: len(bs.received) >= 5 + len(up) and len(s.received) >= len(down))
    assert bytes(bs.received[5:]) == up and bytes(s.received) == down
    assert conn.retransmits == 0 and bconn.retransmits == 0


def test_loss_reordering_and_duplicates() -> None:
    net = Network(delay=0.02, seed=5)
    a, b = _pair(net)
    conn, s, bconn, bs = _open(net, a, b)
    rng = random.Random(11)
    seen: dict[str, int] = {"drop": 0, "dup": 0, "late": 0}

    def chaos(p: Packet, src: object, dst: object) -> list[float]:
        r = rng.random()
        if r < 0.10:
            seen["drop"] += 1
            return []
        if r < 0.15:
            seen["dup"] += 1
            return [0.0, 0.03]
        if r < 0.25:
            seen["late"] += 1
            return [0.05]  # overtaken by the packets sent after it
        return [0.0]

    net.filter = chaos
    up, down = _payload(1_000_000, 3), _payload(300_000, 4)
    conn.write(up)
    bconn.write(down)
    net.run(300, until=lambda: len(bs.received) >= 5 + len(up) and len(s.received) >= len(down))
    assert bytes(bs.received[5:]) == up and bytes(s.received) == down
    assert min(seen.values()) > 50, seen
    assert conn.retransmits > 0 and bconn.duplicates > 0
    # both ends still agree and close cleanly through the same chaos
    conn.close(net.now)
    net.run(30, until=lambda: s.closed_with is not None and bs.closed_with is not None)
    assert s.closed_with is not None and s.closed_with[1]
    assert bs.closed_with == ("closed by peer", True)


def test_one_loss_is_resent_after_selective_acks_not_after_the_timeout() -> None:
    net = Network(delay=0.01)
    a, b = _pair(net)
    conn, s, bconn, bs = _open(net, a, b)
    dropped: list[int] = []

    def drop_one(p: Packet, src: object, dst: object) -> list[float]:
        if p.type == ST_DATA and src == a.addr and not dropped and p.payload and \
                len(bs.received) > 50_000:
            dropped.append(p.seq_nr)
            return []
        return [0.0]

    net.filter = drop_one
    sacks: list[Packet] = []
    data = _payload(300_000)
    conn.write(data)
    start = net.now
    net.run(10, until=lambda: len(bs.received) >= 5 + len(data))
    assert bytes(bs.received[5:]) == data and dropped
    sacks = [p for src, _, p in net.sent if src == b.addr and p.sack is not None]
    assert sacks, "the receiver never sent a selective ack"
    assert conn.retransmits == 1 and conn.cc.timeouts == 0
    assert net.now - start < sending.MIN_RTO + 0.5  # well before any retransmission timeout
    assert conn.cc.losses == 1


def test_sequence_numbers_wrap() -> None:
    net = Network()
    a, b = _pair(net)

    class High(random.Random):
        def getrandbits(self, k: int) -> int:
            return 0xFFF0

    a.mux.rng = High()
    b.mux.rng = High()
    conn, s, bconn, bs = _open(net, a, b)
    data = _payload(200 * MSS)
    _transfer(net, conn, bs, data, 30)
    _transfer(net, bconn, s, data, 30)
    assert conn.seq_nr < 0x100 and bconn.seq_nr < 0x100


def test_retransmission_timeout_backs_off_then_the_connection_dies() -> None:
    net = Network(delay=0.01)
    a, b = _pair(net)
    conn, s, bconn, bs = _open(net, a, b)
    net.filter = lambda p, src, dst: []  # the path goes dark
    conn.write(b"z" * 10_000)
    net.run(5)
    assert conn.cc.timeouts >= 2 and conn.cc.cwnd == MSS  # back to one packet
    net.run(120, until=lambda: s.closed_with is not None)
    assert s.closed_with == ("timed out", False) and conn.state == "done"
    assert a.mux.connections == {}


def test_lost_syn_and_lost_state_are_repeated() -> None:
    net = Network()
    a, b = _pair(net)
    lost = {"syn": 1, "state": 1}

    def lose_first(p: Packet, src: object, dst: object) -> list[float]:
        kind = "syn" if p.type == ST_SYN else "state" if p.type == ST_STATE else ""
        if lost.get(kind):
            lost[kind] -= 1
            return []
        return [0.0]

    net.filter = lose_first
    conn, s = a.connect(b)
    net.run(20, until=lambda: s.connected_at is not None)
    assert s.connected_at is not None and not any(lost.values())
    assert b.mux.half_open_count == 1 and len(b.mux.connections) == 1  # no second connection
    _transfer(net, conn, Stream(), b"", 0.1)


def test_syn_to_a_dead_address_gives_up() -> None:
    net = Network()
    a = net.node("10.0.0.1")
    s = Stream(clock=lambda: net.now)
    a.mux.connect(("10.0.0.9", 6881), s, net.now)
    net.run(60, until=lambda: s.closed_with is not None)
    assert s.closed_with == ("timed out", False) and a.mux.connections == {}


def test_receive_window_holds_the_sender() -> None:
    net = Network(delay=0.01)
    a, b = _pair(net, recv_buffer=64 * 1024)
    conn, s, bconn, bs = _open(net, a, b)
    bconn.pause_reading()  # the layer above stops reading
    data = _payload(1_000_000)
    conn.write(data)
    net.run(10)
    held = bconn._pending_bytes + bconn._reorder_bytes
    assert held <= 64 * 1024 and len(bs.received) == 5
    assert conn.peer_wnd < MSS and conn.unsent > 800_000  # the sender waits, its data queued
    bconn.resume_reading(net.now)
    net.run(60, until=lambda: len(bs.received) >= 5 + len(data))
    assert bytes(bs.received[5:]) == data


def test_fin_after_the_data_both_ways() -> None:
    net = Network(delay=0.01)
    a, b = _pair(net)
    conn, s, bconn, bs = _open(net, a, b)
    data = _payload(100_000)
    conn.write(data)
    conn.close(net.now)  # the FIN goes after every byte written
    conn.write(b"ignored")
    net.run(10, until=lambda: s.closed_with is not None)
    assert bytes(bs.received[5:]) == data
    assert bs.closed_with == ("closed by peer", True) and s.closed_with == ("closed", True)
    fins = [p for _, _, p in net.sent if p.type == ST_FIN]
    assert len(fins) == 2  # ours, and the peer's answer
    net.run(1)
    # both FINs acked: both connections gone without a RESET or a timeout
    assert a.mux.connections == {} and b.mux.connections == {}
    assert not [p for _, _, p in net.sent if p.type == ST_RESET]


def test_reset_ends_both_sides() -> None:
    net = Network()
    a, b = _pair(net)
    conn, s, bconn, bs = _open(net, a, b)
    bconn.abort(net.now)
    net.run(1)
    assert bs.closed_with == ("aborted", False)
    assert s.closed_with == ("reset by peer", False)
    assert a.mux.connections == {} and b.mux.connections == {}


def test_packets_for_unknown_connections_get_a_reset() -> None:
    net = Network()
    a, b = _pair(net)
    conn, s, bconn, bs = _open(net, a, b)
    b.mux.connections.clear()  # b restarted: it knows nothing of the connection
    conn.write(b"more")
    net.run(5, until=lambda: s.closed_with is not None)
    assert s.closed_with == ("reset by peer", False)
    assert b.mux.resets_sent >= 1
    # a RESET is never answered (no ping-pong)
    resets = [p for _, _, p in net.sent if p.type == ST_RESET]
    assert len(resets) == 1


def test_refused_by_the_layer_above() -> None:
    net = Network()
    a = net.node("10.0.0.1")
    b = net.node("10.0.0.2", accept=False)
    conn, s = a.connect(b)
    net.run(1)
    conn.write(b"hi")
    net.run(1)
    assert s.closed_with == ("reset by peer", False) and b.mux.refused == 1


def test_half_open_connections_are_bounded_and_evicted() -> None:
    net = Network()
    b = net.node("10.0.0.2", max_half_open=16, max_half_open_per_ip=4, max_connections=40)
    # a SYN flood from many (spoofed) addresses and ports
    for i in range(500):
        syn = Packet(ST_SYN, i, 1, 0, 1, 0, 65536)
        b.mux.datagram_received(encode_packet(syn), (f"10.1.{i % 50}.{i % 7}", 1000 + i), net.now)
        assert b.mux.half_open_count <= 16 and len(b.mux.connections) <= 40
    assert b.mux.evicted > 400
    # a real client still gets through
    a = net.node("10.0.0.1")
    conn, s, bconn, bs = _open(net, a, b)
    assert bconn.state == "connected"
    # and what is left half-open times out
    net.run(core.SYN_RECV_TIMEOUT + 1)
    assert b.mux.half_open_count == 0 and len(b.mux.connections) == 1


def test_connections_are_capped() -> None:
    net = Network()
    b = net.node("10.0.0.2", max_connections=3, max_half_open=8, max_half_open_per_ip=8)
    clients = [net.node(f"10.0.1.{i}") for i in range(5)]
    streams = []
    for c in clients:
        conn, s = c.connect(b)
        streams.append((conn, s))
    net.run(1)
    for conn, _ in streams:
        conn.write(b"x")
    net.run(30)
    assert len(b.accepted) == 3 and b.mux.syns_dropped >= 2  # each SYN of the two repeated
    assert sum(1 for _, s in streams if s.closed_with == ("timed out", False)) == 2


def test_idle_connections_keep_alive_and_a_silent_one_times_out() -> None:
    net = Network()
    a, b = _pair(net)
    conn, s, bconn, bs = _open(net, a, b)
    net.run(core.IDLE_TIMEOUT + 10)
    assert s.closed_with is None and bs.closed_with is None  # keep-alives kept it up
    net.filter = lambda p, src, dst: []
    net.run(core.IDLE_TIMEOUT + 10)
    assert bs.closed_with == ("idle", False)


def test_ledbat_grows_under_the_target_and_shrinks_over_it() -> None:
    cc = Ledbat(MSS, initial=4 * MSS, maximum=1 << 20)
    cc.slow_start = False
    w = cc.cwnd
    for _ in range(50):
        cc.on_ack(MSS, 10_000, int(cc.cwnd), True)  # 10 ms of queuing: under the target
    assert cc.cwnd > w
    w = cc.cwnd
    for _ in range(50):
        cc.on_ack(MSS, 300_000, int(cc.cwnd), True)  # 300 ms: over it
    assert cc.cwnd < w
    w = cc.cwnd
    cc.on_ack(MSS, 0, int(cc.cwnd), False)  # not held back by the window: no growth
    assert cc.cwnd == w
    cc.on_loss()
    assert cc.cwnd == max(MSS, w / 2)
    cc.on_timeout(in_flight=MSS)
    assert cc.cwnd == MSS


def test_queuing_delay_slows_the_sender() -> None:
    """A path whose queue grows with the data in flight: LEDBAT keeps the window near the delay
    target instead of filling the queue (a loss-based sender would grow until drops)."""
    net = Network(delay=0.01)
    a, b = _pair(net)
    conn, s, bconn, bs = _open(net, a, b)
    rate = 2_000_000  # bytes a second through the bottleneck
    state = {"busy_until": 0.0}

    def bottleneck(p: Packet, src: object, dst: object) -> list[float]:
        if src != a.addr:
            return [0.0]
        start = max(net.now, state["busy_until"])
        state["busy_until"] = start + (len(p.payload) + 20) / rate
        return [state["busy_until"] - net.now]

    net.filter = bottleneck
    data = _payload(6_000_000)
    conn.write(data)
    net.run(60, until=lambda: len(bs.received) >= 5 + len(data))
    assert bytes(bs.received[5:]) == data
    # the queue the sender built stays in the order of the 100 ms target (not the whole window)
    assert conn.cc.cwnd < 0.25 * rate, conn.cc.cwnd
    assert state["busy_until"] - net.now < 0.3


# --- no input crashes the demultiplexer -----------------------------------------------------

_header = st.builds(
    lambda tv, ext, cid, ts, diff, wnd, seq, ack, rest: struct.pack(
        ">BBHIIIHH", tv, ext, cid, ts, diff, wnd, seq, ack) + rest,
    st.sampled_from([0x01, 0x11, 0x21, 0x31, 0x41, 0x51, 0x02]), st.integers(0, 3),
    st.sampled_from([0, 1, 0xFFFF, 1000, 1001]), st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF), st.binary(max_size=40))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=60), _header), max_size=40),
       st.lists(st.floats(0, 30), max_size=40))
def test_no_datagram_sequence_crashes_the_demultiplexer(datagrams: list[bytes],
                                                        gaps: list[float]) -> None:
    net = Network()
    a, b = _pair(net, max_connections=8, max_half_open=4, max_half_open_per_ip=2)
    conn, s, bconn, bs = _open(net, a, b)
    conn.write(b"q" * 5000)
    # the attacker uses the victim connection's ids too (1000/1001 are common guesses above)
    forged = [struct.pack(">BBHIIIHH", 0x01, 0, bconn.recv_id, 0, 0, 9999, seq,
                          bconn.seq_nr) + b"evil" for seq in (bconn.ack_nr + 1, bconn.ack_nr + 5)]
    for i, d in enumerate(forged + datagrams):
        b.mux.datagram_received(d, a.addr if i % 2 else ("10.6.6.6", 4000 + i % 3), net.now)
        b.mux.flush(net.now)
        if i < len(gaps):
            net.now += gaps[i]
        b.mux.tick(net.now)
    assert len(b.mux.connections) <= 8 and b.mux.half_open_count <= 4
    for c in b.mux.connections.values():
        assert c._pending_bytes + c._reorder_bytes <= c.recv_buffer
        assert len(c._reorder) <= receiving.MAX_REORDER
