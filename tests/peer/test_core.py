"""The peer-wire core driven in memory: handshake, pieces, requests, choking, ut_metadata."""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from tgateway import bencode
from tgateway.peer import wire
from tgateway.peer.choker import Choker
from tgateway.peer.core import UT_METADATA_ID, PeerSession, SessionConfig

PIECE_LENGTH = 32768
SIZE = PIECE_LENGTH * 20 + 1000  # 21 pieces, the last one short
OUR_ID = b"-TG0010-abcdefghijkl"
THEIR_ID = b"-XX0001-000000000000"


@dataclass
class FakeTorrent:
    size: int = SIZE
    piece_length: int = PIECE_LENGTH
    info: bytes = field(default_factory=lambda: bencode.encode(
        {b"length": SIZE, b"name": b"f", b"piece length": PIECE_LENGTH, b"pieces": b"x" * 20 * 21
         + b"y" * 40000}))

    @property
    def info_hash_bytes(self) -> bytes:
        return hashlib.sha1(self.info).digest()

    @property
    def piece_count(self) -> int:
        return (self.size + self.piece_length - 1) // self.piece_length


class Recorder:
    def __init__(self) -> None:
        self.sent = bytearray()
        self.closed: str | None = None
        self.wakes = 0
        self.interest = 0

    def send(self, data: bytes) -> None:
        self.sent += data

    def close(self, reason: str) -> None:
        self.closed = reason

    def wake(self) -> None:
        self.wakes += 1

    def interest_changed(self) -> None:
        self.interest += 1

    def messages(self) -> list[wire.Message]:
        """Decode what was sent (after the handshake, if any) and clear it."""
        data = bytes(self.sent)
        self.sent.clear()
        if data.startswith(wire.PROTOCOL):
            data = data[68:]
        out = []
        while data:
            (n,) = struct.unpack(">I", data[:4])
            out.append(wire.decode_message(data[4 : 4 + n]))
            data = data[4 + n :]
        return out


def reserved(fast: bool = True, ext: bool = True) -> bytes:
    return wire.reserved_bits(fast=fast, extensions=ext)


def connect(fast: bool = True, ext: bool = True, torrent: FakeTorrent | None = None,
            **cfg: object) -> tuple[PeerSession, Recorder, FakeTorrent]:
    t = torrent or FakeTorrent()
    rec = Recorder()
    s = PeerSession(rec, SessionConfig(peer_id=OUR_ID, **cfg), 0.0,  # type: ignore[arg-type]
                    peer_ip=bytes([10, 0, 0, 1]))
    ih = s.handshake_received(wire.encode_handshake(reserved(fast, ext), t.info_hash_bytes,
                                                    THEIR_ID), 0.0)
    assert ih == t.info_hash_bytes
    s.start(t, 0.0)
    return s, rec, t


def msg(mid: int, payload: bytes = b"") -> bytes:
    return bytes((mid,)) + payload


def req(index: int, begin: int, length: int, mid: int = wire.REQUEST) -> bytes:
    return msg(mid, struct.pack(">III", index, begin, length))


# ------------------------------------------------------------------------------ handshake


def test_handshake_answer_fast_peer_gets_have_all_allowed_fast_and_ext_handshake() -> None:
    s, rec, t = connect()
    data = bytes(rec.sent)
    hs = wire.decode_handshake(data[:68])
    assert hs.info_hash == t.info_hash_bytes and hs.peer_id == OUR_ID
    assert hs.fast and hs.extensions
    msgs = rec.messages()
    ext = msgs[0]
    assert isinstance(ext, wire.Extended) and ext.ext_id == 0
    d = bencode.decode(ext.payload)
    assert d[b"m"] == {b"ut_metadata": UT_METADATA_ID}
    assert d[b"metadata_size"] == len(t.info)
    assert d[b"reqq"] == 500 and d[b"v"].startswith(b"tgateway")
    assert d[b"yourip"] == bytes([10, 0, 0, 1])
    assert msgs[1] == wire.Simple(wire.HAVE_ALL)
    fast = [m.index for m in msgs[2:] if isinstance(m, wire.IndexMessage)]
    assert len(fast) == 10 and len(set(fast)) == 10
    assert fast == wire.allowed_fast_set(bytes([10, 0, 0, 1]), t.info_hash_bytes, 21, 10)


def test_plain_peer_gets_full_bitfield_with_zero_spare_bits() -> None:
    s, rec, t = connect(fast=False, ext=False)
    msgs = rec.messages()
    assert msgs == [wire.Bitfield(b"\xff\xff\xf8")]


def test_allowed_fast_matches_bep6_vector() -> None:
    # BEP 6: 80.4.4.200, info-hash of 0xaa bytes, 1313 pieces, k=7.
    got = wire.allowed_fast_set(bytes([80, 4, 4, 200]), b"\xaa" * 20, 1313, 7)
    assert got == [1059, 431, 808, 1217, 287, 376, 1188]
    got9 = wire.allowed_fast_set(bytes([80, 4, 4, 200]), b"\xaa" * 20, 1313, 9)
    assert got9 == [1059, 431, 808, 1217, 287, 376, 1188, 353, 508]


def test_bad_handshake_closes() -> None:
    rec = Recorder()
    s = PeerSession(rec, SessionConfig(peer_id=OUR_ID), 0.0)
    assert s.handshake_received(b"\x13BitTorrent protocoX" + bytes(48), 0.0) is None
    assert rec.closed


def test_message_before_start_closes() -> None:
    rec = Recorder()
    s = PeerSession(rec, SessionConfig(peer_id=OUR_ID), 0.0)
    s.message_received(msg(wire.INTERESTED), 0.0)
    assert rec.closed


def test_framer_handshake_then_messages_and_limits() -> None:
    t = FakeTorrent()
    hs = wire.encode_handshake(reserved(), t.info_hash_bytes, THEIR_ID)
    stream = hs + b"\x00\x00\x00\x00" + wire.encode_simple(wire.INTERESTED) + req(1, 0, 16384)[:3]
    f = wire.Framer(1000)
    items = []
    for i in range(len(stream)):  # byte by byte
        items += f.feed(stream[i : i + 1])
    assert items == [hs, b"", bytes([wire.INTERESTED])]
    assert f.buffered == 3
    try:
        wire.Framer(10).feed(hs + struct.pack(">I", 11))
    except wire.DecodeError:
        pass
    else:
        raise AssertionError("oversized message accepted")
    try:
        wire.Framer(10).feed(b"GET / HTTP/1.1\r\n")
    except wire.DecodeError:
        pass
    else:
        raise AssertionError("HTTP accepted as a handshake")


# ------------------------------------------------------------------------------ requests


def unchoke(s: PeerSession, rec: Recorder) -> None:
    s.message_received(msg(wire.INTERESTED), 0.0)
    s.set_choked(False, 0.0)
    rec.messages()


def test_request_piece_served_from_next_request() -> None:
    s, rec, t = connect()
    unchoke(s, rec)
    s.message_received(req(3, 16384, 16384), 1.0)
    assert rec.wakes == 1
    r = s.next_request()
    assert r is not None and (r.index, r.begin, r.length) == (3, 16384, 16384)
    assert s.next_request() is None  # one in flight
    piece = bytes(range(256)) * 128
    s.block_ready(r, piece, 1.0)
    assert rec.messages() == [wire.Piece(3, 16384, piece[16384:32768])]
    assert s.uploaded == 16384 and s.round_uploaded == 16384


def test_last_piece_is_short() -> None:
    s, rec, t = connect()
    unchoke(s, rec)
    s.message_received(req(20, 0, 1000), 1.0)
    s.message_received(req(20, 0, 1001), 1.0)
    r = s.next_request()
    assert r is not None and r.length == 1000
    assert rec.messages() == [wire.Request(wire.REJECT, 20, 0, 1001)]


def test_oversized_and_out_of_range_requests_are_rejected() -> None:
    s, rec, t = connect()
    unchoke(s, rec)
    bad = [(0, 0, 16385), (21, 0, 16384), (0, 32768 - 100, 200), (0, 0, 0), (2**32 - 1, 0, 1)]
    for index, begin, length in bad:
        s.message_received(req(index, begin, length), 1.0)
    assert rec.messages() == [wire.Request(wire.REJECT, *b) for b in bad]
    assert s.next_request() is None and not rec.closed


def test_too_many_bad_requests_close() -> None:
    s, rec, t = connect(max_bad_requests=3)
    for _ in range(4):
        s.message_received(req(0, 0, 99999), 1.0)
    assert rec.closed == "too many invalid requests"


def test_non_fast_peer_bad_request_is_dropped_silently() -> None:
    s, rec, t = connect(fast=False)
    unchoke(s, rec)
    s.message_received(req(0, 0, 99999), 1.0)
    assert rec.messages() == [] and not rec.closed


def test_cancel_removes_queued_request_and_rejects_it() -> None:
    s, rec, t = connect()
    unchoke(s, rec)
    s.message_received(req(1, 0, 16384), 1.0)
    s.message_received(req(1, 16384, 16384), 1.0)
    s.message_received(req(1, 16384, 16384, wire.CANCEL), 1.0)
    assert rec.messages() == [wire.Request(wire.REJECT, 1, 16384, 16384)]
    r = s.next_request()
    assert r is not None and r.begin == 0
    s.block_ready(r, b"\x00" * PIECE_LENGTH, 1.0)
    assert s.next_request() is None
    # cancelling something not queued does nothing
    s.message_received(req(5, 0, 16384, wire.CANCEL), 1.0)
    assert [m for m in rec.messages() if not isinstance(m, wire.Piece)] == []


def test_request_while_choked_rejected_unless_allowed_fast() -> None:
    s, rec, t = connect()
    rec.messages()
    fast = sorted(s.allowed)
    slow = next(i for i in range(21) if i not in s.allowed)
    s.message_received(req(slow, 0, 16384), 1.0)
    assert rec.messages() == [wire.Request(wire.REJECT, slow, 0, 16384)]
    s.message_received(req(fast[0], 0, 16384), 1.0)
    r = s.next_request()
    assert r is not None and r.index == fast[0]
    s.block_ready(r, b"\x01" * PIECE_LENGTH, 1.0)
    assert rec.messages() == [wire.Piece(fast[0], 0, b"\x01" * 16384)]


def test_choking_rejects_queued_requests() -> None:
    s, rec, t = connect()
    unchoke(s, rec)
    slow = [i for i in range(21) if i not in s.allowed][:2]
    for i in slow:
        s.message_received(req(i, 0, 16384), 1.0)
    s.set_choked(True, 2.0)
    assert rec.messages() == [wire.Simple(wire.CHOKE)] + [
        wire.Request(wire.REJECT, i, 0, 16384) for i in slow]
    assert s.next_request() is None


def test_queue_is_bounded_by_reqq() -> None:
    s, rec, t = connect(reqq=4)
    unchoke(s, rec)
    for b in range(6):
        s.message_received(req(b, 0, 16384), 1.0)
    assert len(s.queue) == 4
    assert rec.messages() == [wire.Request(wire.REJECT, 4, 0, 16384),
                              wire.Request(wire.REJECT, 5, 0, 16384)]


def test_seed_peer_is_dropped() -> None:
    s, rec, t = connect()
    s.message_received(msg(wire.HAVE_ALL), 1.0)
    assert rec.closed == "peer is a seed too"
    s, rec, t = connect(fast=False)
    s.message_received(msg(wire.BITFIELD, wire.full_bitfield(21)), 1.0)
    assert rec.closed == "peer is a seed too"
    s, rec, t = connect(fast=False)
    s.message_received(msg(wire.BITFIELD, b"\x00\x00\x00"), 1.0)
    assert rec.closed is None
    s.message_received(msg(wire.BITFIELD, b"\x00\x00"), 1.0)
    assert rec.closed == "bitfield of the wrong length"


def test_keepalive_and_idle_timeout() -> None:
    s, rec, t = connect()
    rec.messages()
    s.tick(59.0)
    assert rec.sent == b""
    s.tick(60.0)
    assert bytes(rec.sent) == wire.KEEP_ALIVE
    s.message_received(b"", 100.0)  # their keep-alive
    s.tick(279.0)
    assert rec.closed is None
    s.tick(281.0)
    assert rec.closed == "idle timeout"


def test_handshake_timeout() -> None:
    rec = Recorder()
    s = PeerSession(rec, SessionConfig(peer_id=OUR_ID), 0.0)
    s.tick(31.0)
    assert rec.closed == "handshake timeout"


# ------------------------------------------------------------------------------ ut_metadata


def ext(ext_id: int, d: dict[bytes, object], tail: bytes = b"") -> bytes:
    return msg(wire.EXTENDED, bytes((ext_id,)) + bencode.encode(d) + tail)


def test_ut_metadata_exchange() -> None:
    s, rec, t = connect()
    rec.messages()
    s.message_received(ext(0, {b"m": {b"ut_metadata": 7}, b"v": b"test 1.0"}), 1.0)
    assert s.peer_ut_metadata == 7 and s.peer_client == b"test 1.0"
    pieces = (len(t.info) + 16383) // 16384
    assert pieces == 3
    got = b""
    for i in range(pieces):
        s.message_received(ext(UT_METADATA_ID, {b"msg_type": 0, b"piece": i}), 1.0)
        (m,) = rec.messages()
        assert isinstance(m, wire.Extended) and m.ext_id == 7
        d, data = wire.decode_ext_dict(m.payload)
        assert d == {b"msg_type": 1, b"piece": i, b"total_size": len(t.info)}
        got += data
    assert got == t.info
    s.message_received(ext(UT_METADATA_ID, {b"msg_type": 0, b"piece": pieces}), 1.0)
    (m,) = rec.messages()
    assert isinstance(m, wire.Extended)
    assert bencode.decode(m.payload) == {b"msg_type": 2, b"piece": pieces}


def test_ut_metadata_without_peer_support_is_not_answered() -> None:
    s, rec, t = connect()
    rec.messages()
    s.message_received(ext(UT_METADATA_ID, {b"msg_type": 0, b"piece": 0}), 1.0)
    assert rec.messages() == [] and rec.closed is None


def test_extended_without_bit_closes() -> None:
    s, rec, t = connect(ext=False)
    s.message_received(ext(0, {b"m": {}}), 1.0)
    assert rec.closed


# ------------------------------------------------------------------------------ fuzzing

MESSAGE_IDS = list(range(0, 22))


@settings(max_examples=400, deadline=None)
@given(mid=st.sampled_from(MESSAGE_IDS), payload=st.binary(max_size=64),
       fast=st.booleans(), extensions=st.booleans())
def test_any_message_never_raises(mid: int, payload: bytes, fast: bool, extensions: bool) -> None:
    s, rec, t = connect(fast=fast, ext=extensions)
    unchoke(s, rec)
    s.message_received(bytes((mid,)) + payload, 1.0)
    while True:
        r = s.next_request()
        if r is None:
            break
        s.block_ready(r, b"\x00" * s.piece_size(r.index), 1.0)
    s.tick(2.0)


@settings(max_examples=200, deadline=None)
@given(ext_id=st.sampled_from([0, UT_METADATA_ID, 9]), payload=st.binary(max_size=80))
def test_any_extended_payload_never_raises(ext_id: int, payload: bytes) -> None:
    s, rec, t = connect()
    s.message_received(ext(0, {b"m": {b"ut_metadata": 2}}), 1.0)
    s.message_received(msg(wire.EXTENDED, bytes((ext_id,)) + payload), 1.0)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([b"msg_type", b"piece", b"total_size", b"x"]),
                       st.one_of(st.integers(-5, 2**40), st.binary(max_size=4)), max_size=4))
def test_metadata_dicts_never_raise(d: dict[bytes, object]) -> None:
    s, rec, t = connect()
    s.message_received(ext(0, {b"m": {b"ut_metadata": 2}}), 1.0)
    s.message_received(ext(UT_METADATA_ID, d), 1.0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_framer_and_decoder_raise_only_decode_error(data: bytes) -> None:
    t = FakeTorrent()
    f = wire.Framer(100)
    try:
        items = f.feed(wire.encode_handshake(reserved(), t.info_hash_bytes, THEIR_ID) + data)
    except wire.DecodeError:
        return
    for body in items[1:]:
        try:
            wire.decode_message(body)
        except wire.DecodeError:
            pass
    try:
        wire.decode_ext_dict(data)
    except wire.DecodeError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(MESSAGE_IDS), st.binary(max_size=16)), max_size=12))
def test_message_sequences_never_raise(seq: list[tuple[int, bytes]]) -> None:
    s, rec, t = connect()
    choker = Choker(1, random.Random(0))
    choker.add(s)
    for mid, payload in seq:
        s.message_received(bytes((mid,)) + payload, 1.0)
        choker.interest_changed(s, 1.0)
        r = s.next_request()
        if r is not None:
            s.block_ready(r, b"\x00" * s.piece_size(r.index), 1.0)
    choker.rechoke(40.0)
    choker.remove(s, 41.0)


def test_dht_port_sent_to_dht_peers() -> None:
    t = FakeTorrent()
    for peer_dht, expect in ((True, True), (False, False)):
        rec = Recorder()
        s = PeerSession(rec, SessionConfig(peer_id=OUR_ID, dht_port=6883), 0.0,
                        peer_ip=bytes([10, 0, 0, 1]))
        r = wire.reserved_bits(dht=peer_dht)
        s.handshake_received(wire.encode_handshake(r, t.info_hash_bytes, THEIR_ID), 0.0)
        s.start(t, 0.0)
        assert wire.decode_handshake(bytes(rec.sent[:68])).reserved[7] & wire.DHT_BIT
        assert (wire.Port(6883) in rec.messages()) is expect
