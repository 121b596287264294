"""The TCP adapter and factory in memory: limits, unknown torrents, malformed input, backpressure."""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.slowreader import QueueingTransport
from tgateway.peer import wire
from tgateway.peer.core import UT_METADATA_ID, SessionConfig
from tgateway.peer.factory import PeerFactory
from tgateway.peer.protocol import SEND_BUFFER, SEND_OVER, SEND_STALL, PeerProtocol

from .test_core import PIECE_LENGTH, THEIR_ID, FakeTorrent, ext, req


class FakeReader:
    """read_block answered synchronously, or held until the test fires it."""

    def __init__(self, sync: bool = True) -> None:
        self.sync = sync
        self.reads: list[tuple[int, Deferred[bytes]]] = []

    def read_block(self, f: Any, index: int) -> Deferred[bytes]:
        data = bytes([index % 256]) * min(f.piece_length, f.size - index * f.piece_length)
        if self.sync:
            self.reads.append((index, succeed(data)))
            return succeed(data)
        d: Deferred[bytes] = Deferred()
        self.reads.append((index, d))
        return d

    def fire(self, i: int = 0) -> None:
        index, d = self.reads[i]
        d.callback(bytes([index % 256]) * PIECE_LENGTH)


def make_factory(reader: FakeReader | None = None, **kw: Any) -> tuple[PeerFactory, FakeTorrent, Clock]:
    t = FakeTorrent()
    clock = Clock()
    f = PeerFactory(
        clock=clock,
        reader=reader or FakeReader(),
        session_config=SessionConfig(peer_id=b"-TG0010-abcdefghijkl"),
        has_info_hash=lambda ih: ih == t.info_hash_bytes,
        get_by_info_hash=lambda h: succeed(t if h == t.info_hash_bytes.hex() else None),
        **kw,
    )
    return f, t, clock


def connect(f: PeerFactory, host: str = "10.0.0.1", port: int = 5000) -> tuple[PeerProtocol | None, StringTransport]:
    p = f.buildProtocol(IPv4Address("TCP", host, port))
    tr = StringTransport(peerAddress=IPv4Address("TCP", host, port))
    if p is not None:
        p.makeConnection(tr)
    return p, tr


def handshake(t: FakeTorrent, info_hash: bytes | None = None) -> bytes:
    return wire.encode_handshake(wire.reserved_bits(), info_hash or t.info_hash_bytes, THEIR_ID)


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def parse(data: bytes) -> list[wire.Message]:
    if data.startswith(wire.PROTOCOL):
        data = data[68:]
    out = []
    while data:
        (n,) = struct.unpack(">I", data[:4])
        out.append(wire.decode_message(data[4 : 4 + n]))
        data = data[4 + n :]
    return out


class AdapterTests(SynchronousTestCase):
    def test_handshake_and_download(self) -> None:
        f, t, clock = make_factory()
        p, tr = connect(f)
        assert p is not None
        p.dataReceived(handshake(t))
        self.assertTrue(tr.value().startswith(wire.PROTOCOL))
        tr.clear()
        p.dataReceived(frame(bytes([wire.INTERESTED])))
        msgs = parse(tr.value())
        self.assertEqual(msgs, [wire.Simple(wire.UNCHOKE)])
        tr.clear()
        p.dataReceived(frame(req(2, 0, 16384)) + frame(req(2, 16384, 16384)))
        msgs = parse(tr.value())
        self.assertEqual(msgs, [wire.Piece(2, 0, b"\x02" * 16384),
                                wire.Piece(2, 16384, b"\x02" * 16384)])
        self.assertEqual(f.status()["unchoked"], 1)

    def test_unknown_info_hash_closes_at_once(self) -> None:
        f, t, clock = make_factory()
        p, tr = connect(f)
        assert p is not None
        p.dataReceived(handshake(t, b"\x01" * 20))
        self.assertTrue(tr.disconnecting)
        self.assertEqual(tr.value(), b"")

    def test_not_bittorrent_closes(self) -> None:
        f, t, clock = make_factory()
        p, tr = connect(f)
        assert p is not None
        p.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertFalse(tr.disconnecting)  # could be the start of an encrypted handshake
        p.dataReceived(b"x" * 700)  # no req1 hash within 512 bytes of padding
        self.assertTrue(tr.disconnecting)
        f.encryption = False
        p, tr = connect(f, "10.0.0.9")
        assert p is not None
        p.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertTrue(tr.disconnecting)

    def test_malformed_message_closes_only_that_connection(self) -> None:
        f, t, clock = make_factory()
        p1, tr1 = connect(f, "10.0.0.1")
        p2, tr2 = connect(f, "10.0.0.2")
        assert p1 is not None and p2 is not None
        p1.dataReceived(handshake(t))
        p2.dataReceived(handshake(t))
        p1.dataReceived(frame(bytes([wire.HAVE]) + b"\x00"))  # have with 1 byte
        self.assertTrue(tr1.disconnecting)
        self.assertFalse(tr2.disconnecting)
        p2.dataReceived(frame(bytes([wire.INTERESTED])))
        self.assertIn(wire.Simple(wire.UNCHOKE), parse(tr2.value()))

    def test_oversized_length_prefix_closes(self) -> None:
        f, t, clock = make_factory()
        p, tr = connect(f)
        assert p is not None
        p.dataReceived(handshake(t) + struct.pack(">I", 10_000_000))
        self.assertTrue(tr.disconnecting)

    def test_connection_limits(self) -> None:
        f, t, clock = make_factory(max_connections=3, max_connections_per_ip=2)
        conns = [connect(f, "10.0.0.1"), connect(f, "10.0.0.1")]
        self.assertIsNone(connect(f, "10.0.0.1")[0])  # two per address
        conns.append(connect(f, "10.0.0.2"))
        for p, _ in conns:
            assert p is not None
            p.dataReceived(handshake(t))
        self.assertEqual((f.established, f.unidentified_count), (3, 0))
        self.assertIsNone(connect(f, "10.0.0.3")[0])  # every established slot taken
        self.assertEqual(f.refused, 2)
        p = conns[2][0]
        assert p is not None
        p.connectionLost()
        self.assertIsNotNone(connect(f, "10.0.0.3")[0])
        self.assertEqual(f.per_ip, {"10.0.0.1": 2, "10.0.0.3": 1})

    def test_backpressure_stops_reading_pieces(self) -> None:
        reader = FakeReader(sync=False)
        f, t, clock = make_factory(reader)
        p, tr = connect(f)
        assert p is not None
        p.dataReceived(handshake(t) + frame(bytes([wire.INTERESTED])))
        tr.clear()
        p.dataReceived(b"".join(frame(req(i, 0, 16384)) for i in range(10)))
        self.assertEqual(len(reader.reads), 1)  # one read in flight, not ten
        tr.producer.pauseProducing()  # the transport's buffer is full
        reader.fire(0)
        self.assertEqual(tr.value(), b"")  # the block read is held, not written
        self.assertEqual(len(reader.reads), 1)  # and nothing more is read while paused
        tr.producer.resumeProducing()
        self.assertEqual(len(parse(tr.value())), 1)
        self.assertEqual(len(reader.reads), 2)
        reader.fire(1)
        self.assertEqual(len(reader.reads), 3)

    def test_upload_rate_cap(self) -> None:
        f, t, clock = make_factory(upload_rate=65536)
        p, tr = connect(f)
        assert p is not None
        p.dataReceived(handshake(t) + frame(bytes([wire.INTERESTED])))
        tr.clear()
        p.dataReceived(b"".join(frame(req(i, 0, 16384)) for i in range(10)))
        first = len(parse(tr.value()))
        self.assertEqual(first, 4)  # the burst: 4 blocks
        tr.clear()
        clock.advance(0.25)  # 16 KiB more
        self.assertEqual(len(parse(tr.value())), 1)
        clock.advance(10)
        self.assertEqual(len(parse(tr.value())), 5)  # the rest of the ten

    def test_idle_connections_time_out_via_tick(self) -> None:
        f, t, clock = make_factory()
        p, tr = connect(f)
        assert p is not None
        clock.advance(31)
        f.tick()
        self.assertTrue(tr.disconnecting)

    def test_pieces_queued_during_async_lookup_are_kept(self) -> None:
        t = FakeTorrent()
        pending: Deferred[Any] = Deferred()
        f, _, clock = make_factory()
        f.has_info_hash = lambda ih: True
        f.get_by_info_hash = lambda h: pending
        p, tr = connect(f)
        assert p is not None
        p.dataReceived(handshake(t) + frame(bytes([wire.INTERESTED])))
        self.assertEqual(tr.value(), b"")
        pending.callback(t)
        msgs = parse(tr.value())
        self.assertEqual(msgs[-1], wire.Simple(wire.UNCHOKE))
        self.assertIn(t.info_hash_bytes, f.files)

    def test_file_deleted_drops_its_connections(self) -> None:
        f, t, clock = make_factory()
        p, tr = connect(f)
        assert p is not None
        p.dataReceived(handshake(t))
        f.add_file(t)  # type: ignore[arg-type]
        f.remove_file(t)  # type: ignore[arg-type]
        self.assertTrue(tr.disconnecting)


class Initiator:
    """The MSE initiator side (what libtorrent does when it opens an encrypted connection)."""

    def __init__(self, info_hash: bytes, provide: int, pad_a: int = 33, pad_c: int = 7) -> None:
        from tgateway.peer import mse

        self.mse = mse
        self.info_hash = info_hash
        self.provide = provide
        self.xa = int.from_bytes(os.urandom(20), "big")
        self.pad_a = pad_a
        self.pad_c = pad_c
        self.enc: Any = None
        self.dec: Any = None

    def hello(self) -> bytes:
        ya = pow(2, self.xa, self.mse.P).to_bytes(96, "big")
        return ya + os.urandom(self.pad_a)

    def second(self, yb: bytes, ia: bytes) -> bytes:
        m = self.mse
        s = pow(int.from_bytes(yb, "big"), self.xa, m.P).to_bytes(96, "big")
        sha = lambda *p: hashlib.sha1(b"".join(p)).digest()  # noqa: E731
        self.enc = m.rc4(sha(b"keyA", s, self.info_hash))
        self.dec = m.rc4(sha(b"keyB", s, self.info_hash))
        req2 = bytes(a ^ b for a, b in zip(sha(b"req2", self.info_hash), sha(b"req3", s), strict=True))
        body = (m.VC + self.provide.to_bytes(4, "big") + self.pad_c.to_bytes(2, "big")
                + b"\x00" * self.pad_c + len(ia).to_bytes(2, "big"))
        return sha(b"req1", s) + req2 + self.enc.update(body) + self.enc.update(ia)


class EncryptionTests(SynchronousTestCase):
    def run_handshake(self, provide: int) -> tuple[PeerProtocol, StringTransport, Initiator, FakeTorrent]:
        f, t, clock = make_factory(info_hashes=lambda: [b"\x09" * 20, FakeTorrent().info_hash_bytes])
        p, tr = connect(f)
        assert p is not None
        init = Initiator(t.info_hash_bytes, provide)
        p.dataReceived(init.hello())
        reply = tr.value()
        self.assertGreaterEqual(len(reply), 96)
        tr.clear()
        p.dataReceived(init.second(reply[:96], handshake(t)))
        data = tr.value()
        tr.clear()
        head = init.dec.update(data[:14])
        self.assertEqual(head[:8], b"\x00" * 8)
        return p, tr, init, init_select(head, data[14:], init)

    def test_plaintext_selected_when_offered(self) -> None:
        p, tr, init, rest = self.run_handshake(0x03)
        self.assertTrue(rest.startswith(wire.PROTOCOL))  # the stream after the handshake is plain
        p.dataReceived(frame(bytes([wire.INTERESTED])) + frame(req(1, 0, 16384)))
        msgs = parse(tr.value())
        self.assertEqual(msgs[-1], wire.Piece(1, 0, b"\x01" * 16384))

    def test_rc4_stream_when_required(self) -> None:
        p, tr, init, rest = self.run_handshake(0x02)
        self.assertTrue(rest.startswith(wire.PROTOCOL))  # decrypted by init_select
        p.dataReceived(init.enc.update(frame(bytes([wire.INTERESTED])) + frame(req(1, 0, 16384))))
        msgs = parse(init.dec.update(tr.value()))
        self.assertEqual(msgs[-1], wire.Piece(1, 0, b"\x01" * 16384))

    def test_unknown_torrent_closes(self) -> None:
        f, t, clock = make_factory(info_hashes=lambda: [])
        f.has_info_hash = lambda ih: False
        p, tr = connect(f)
        assert p is not None
        init = Initiator(t.info_hash_bytes, 0x03)
        p.dataReceived(init.hello())
        yb = tr.value()[:96]
        p.dataReceived(init.second(yb, handshake(t)))
        self.assertTrue(tr.disconnecting)


def init_select(head: bytes, rest: bytes, init: Initiator) -> bytes:
    """Check crypto_select; return the rest of the stream as plaintext."""
    select = int.from_bytes(head[8:12], "big")
    assert head[12:14] == b"\x00\x00"
    if select == 0x02:
        return bytes(init.dec.update(rest))
    assert select == 0x01
    return rest


class CloseTests(SynchronousTestCase):
    def test_closing_connection_is_aborted_if_it_does_not_flush(self) -> None:
        f, t, clock = make_factory()
        p, tr = connect(f)
        assert p is not None
        aborted: list[bool] = []
        tr.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
        p.dataReceived(handshake(t, b"\x01" * 20))
        self.assertTrue(tr.disconnecting)
        clock.advance(9)
        self.assertEqual(aborted, [])
        clock.advance(2)
        self.assertEqual(aborted, [True])

    def test_abort_timer_cancelled_when_the_connection_goes(self) -> None:
        f, t, clock = make_factory()
        p, tr = connect(f)
        assert p is not None
        p.dataReceived(handshake(t, b"\x01" * 20))
        p.connectionLost()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(f.connections, {})


class StreamFuzzTests(SynchronousTestCase):
    def test_random_streams_never_raise(self) -> None:
        from hypothesis import given, settings
        from hypothesis import strategies as st

        @settings(max_examples=200, deadline=None)
        @given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
        def run(chunks: list[bytes], plain: bool) -> None:
            f, t, clock = make_factory()
            p, tr = connect(f)
            assert p is not None
            if plain:
                p.dataReceived(handshake(t))
            for c in chunks:
                p.dataReceived(c)
            clock.advance(200)
            f.tick()
            f.rechoke()
            p.connectionLost()

        run()


def connect_queueing(f: PeerFactory, host: str = "10.0.0.1") -> tuple[PeerProtocol, QueueingTransport]:
    p = f.buildProtocol(IPv4Address("TCP", host, 5000))
    assert p is not None
    tr = QueueingTransport(peerAddress=IPv4Address("TCP", host, 5000))
    p.makeConnection(tr)
    return p, tr


class SlowReaderTests(SynchronousTestCase):
    """A peer that asks and does not read: over a transport that queues like TCP."""

    def metadata_peer(self) -> tuple[PeerFactory, PeerProtocol, QueueingTransport, Clock]:
        f, t, clock = make_factory()
        p, tr = connect_queueing(f)
        hs = wire.encode_handshake(wire.reserved_bits(extensions=True), t.info_hash_bytes, THEIR_ID)
        p.dataReceived(hs + frame(ext(0, {b"m": {b"ut_metadata": 7}})))
        tr.drain()
        tr.clear()
        return f, p, tr, clock

    def test_a_burst_of_requests_is_answered_only_as_fast_as_it_is_read(self) -> None:
        f, p, tr, clock = self.metadata_peer()
        ask = frame(ext(UT_METADATA_ID, {b"msg_type": 0, b"piece": 0}))
        p.dataReceived(ask * 300)  # one read: 300 requests for 16 KiB each, 4.8 MB of answers
        self.assertLessEqual(tr.most_queued, SEND_BUFFER + 16500)
        self.assertFalse(tr.reading)  # nothing more is read from this peer
        answered = p.session.metadata_sent
        self.assertLess(answered, 40)
        p.dataReceived(ask)  # (a transport may still deliver what it had read)
        self.assertEqual(p.session.metadata_sent, answered)
        while p.session.metadata_sent < 301:  # as the peer reads, the rest is answered
            tr.drain()
            self.assertLessEqual(tr.queued, SEND_BUFFER + 16500)
        tr.drain()
        self.assertTrue(tr.reading)
        self.assertFalse(tr.disconnecting)

    def test_a_peer_that_does_not_drain_is_dropped(self) -> None:
        f, p, tr, clock = self.metadata_peer()
        p.dataReceived(frame(ext(UT_METADATA_ID, {b"msg_type": 0, b"piece": 0})) * 100)
        clock.advance(SEND_STALL - 1)
        self.assertFalse(tr.aborted)
        clock.advance(1)
        self.assertTrue(tr.aborted)
        self.assertIn("does not read", p.session.close_reason)
        p.connectionLost()
        self.assertEqual(f.connections, {})
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_answers_written_while_paused_are_limited(self) -> None:
        f, p, tr, clock = self.metadata_peer()
        tr.write(b"\x00" * (SEND_BUFFER + 1))  # full: paused
        ask = ext(UT_METADATA_ID, {b"msg_type": 0, b"piece": 0})
        for _ in range(SEND_OVER // 16384 + 1):
            p.session.message_received(ask, 0.0)  # handled although paused (read earlier)
        self.assertTrue(tr.aborted)
        self.assertIn("does not read", p.session.close_reason)
        self.assertLessEqual(tr.most_queued, SEND_BUFFER + 1 + SEND_OVER)


class UnidentifiedTests(SynchronousTestCase):
    """Connections without a complete handshake: own budget, own deadline."""

    def test_silent_connections_time_out_after_the_handshake_deadline(self) -> None:
        f, t, clock = make_factory()
        p, tr = connect(f)
        assert p is not None
        clock.advance(9.9)
        self.assertFalse(tr.disconnecting)
        clock.advance(0.1)
        self.assertTrue(tr.disconnecting)
        self.assertEqual(p.session.close_reason, "handshake timeout")

    def test_a_flood_of_silent_connections_cannot_keep_a_real_peer_out(self) -> None:
        f, t, clock = make_factory(max_connections=200, max_connections_per_ip=8)
        self.assertEqual(f.max_unidentified, 50)
        silent = []
        for a in range(25):  # 8 per address from 25 addresses
            for _ in range(8):
                p, tr = connect(f, f"10.0.1.{a}")
                assert p is not None
                silent.append((p, tr))
        self.assertEqual(f.unidentified_count, 50)  # the budget: 150 were evicted on the way
        self.assertEqual(f.evicted, 150)
        self.assertEqual(sum(1 for _, tr in silent if tr.disconnecting), 150)
        for p, _ in silent:
            if p.transport.disconnecting:  # type: ignore[union-attr]
                p.connectionLost()
        self.assertEqual(f.unidentified_count, 50)
        # a real peer, then more silent ones from the flooding addresses: they evict their own
        real, real_tr = connect(f, "192.0.2.7")
        assert real is not None
        for a in range(25):
            self.assertIsNotNone(connect(f, f"10.0.1.{a}")[0])
        self.assertFalse(real_tr.disconnecting)
        real.dataReceived(handshake(t) + frame(bytes([wire.INTERESTED])) + frame(req(0, 0, 16384)))
        self.assertFalse(real_tr.disconnecting)
        self.assertIn(wire.Piece(0, 0, b"\x00" * 16384), parse(real_tr.value()))
        self.assertEqual((f.established, f.unidentified_count), (1, 49))

    def test_eviction_takes_the_oldest_of_the_busiest_address(self) -> None:
        f, t, clock = make_factory(max_unidentified=3)
        a1, a1_tr = connect(f, "10.0.0.1")
        b1, b1_tr = connect(f, "10.0.0.2")
        b2, b2_tr = connect(f, "10.0.0.2")
        c1, c1_tr = connect(f, "10.0.0.3")
        self.assertEqual([tr.disconnecting for tr in (a1_tr, b1_tr, b2_tr)], [False, True, False])
        assert b1 is not None
        b1.connectionLost()
        self.assertEqual(f.per_ip, {"10.0.0.1": 1, "10.0.0.2": 1, "10.0.0.3": 1})
        self.assertEqual(f.status()["evicted"], 1)

    def test_identified_connections_do_not_use_the_unidentified_budget(self) -> None:
        f, t, clock = make_factory(max_connections=2, max_unidentified=2)
        peers = [connect(f, f"10.0.0.{n}") for n in (1, 2)]
        for p, _ in peers:
            assert p is not None
            p.dataReceived(handshake(t))
        self.assertEqual((f.established, f.unidentified_count), (2, 0))
        clock.advance(60)  # established peers are past the handshake deadline
        self.assertFalse(any(tr.disconnecting for _, tr in peers))
        self.assertIsNone(connect(f, "10.0.0.3")[0])  # no established slot free: refused
        p, _ = peers[0]
        assert p is not None
        p.connectionLost()
        late, late_tr = connect(f, "10.0.0.3")
        self.assertIsNotNone(late)
        other, other_tr = connect(f, "10.0.0.4")
        assert late is not None and other is not None
        late.dataReceived(handshake(t))
        other.dataReceived(handshake(t))  # completes when every established slot is taken
        self.assertEqual(other.session.close_reason, "too many connections")
        self.assertEqual(f.established, 2)
