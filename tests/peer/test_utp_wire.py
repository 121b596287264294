"""uTP packets (BEP 29): the header, the extension chain, the selective-ack bitmask; and no datagram,
however malformed, makes the codec raise anything but DecodeError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgateway.peer.utp.wire import (
    EXT_SACK,
    ST_DATA,
    ST_STATE,
    ST_SYN,
    DecodeError,
    Packet,
    decode_packet,
    encode_packet,
    encode_sack,
    sack_offsets,
)


def test_header_layout_as_bep29_draws_it() -> None:
    p = Packet(ST_SYN, 0x1234, seq_nr=1, ack_nr=0, timestamp=0xDEADBEEF, timestamp_diff=7,
               wnd_size=0x10000)
    data = encode_packet(p)
    assert len(data) == 20
    # type 4, version 1; no extension; id; timestamp; diff; window; seq; ack
    assert data == struct.pack(">BBHIIIHH", 0x41, 0, 0x1234, 0xDEADBEEF, 7, 0x10000, 1, 0)
    assert decode_packet(data) == p


def test_round_trip_with_extensions_and_payload() -> None:
    p = Packet(ST_STATE, 9, 300, 65535, 1, 2, 3, ((EXT_SACK, b"\x05\x00\x00\x80"), (2, b"x" * 8)))
    assert decode_packet(encode_packet(p)) == p
    assert decode_packet(encode_packet(p)).sack == b"\x05\x00\x00\x80"
    d = Packet(ST_DATA, 9, 0, 1, payload=b"hello")
    assert decode_packet(encode_packet(d)).payload == b"hello"


def test_selective_ack_bitmask() -> None:
    # bit i (byte i // 8, least significant first): packet ack_nr + 2 + i received
    assert sack_offsets(b"\x05\x00\x00\x80") == [0, 2, 31]
    assert encode_sack([0, 2, 31]) == b"\x05\x00\x00\x80"
    assert len(encode_sack([])) == 4 and len(encode_sack([32])) == 8  # multiples of 4 bytes
    assert sack_offsets(encode_sack([1, 40, 100])) == [1, 40, 100]


@pytest.mark.parametrize("data, why", [
    (b"\x01" * 19, "short"),
    (struct.pack(">BBHIIIHH", 0x42, 0, 0, 0, 0, 0, 0, 0), "version 2"),
    (struct.pack(">BBHIIIHH", 0x51, 0, 0, 0, 0, 0, 0, 0), "type 5"),
    (struct.pack(">BBHIIIHH", 0x21, 1, 0, 0, 0, 0, 0, 0), "extension header missing"),
    (struct.pack(">BBHIIIHH", 0x21, 1, 0, 0, 0, 0, 0, 0) + b"\x00\x08\x00", "extension short"),
    (struct.pack(">BBHIIIHH", 0x21, 1, 0, 0, 0, 0, 0, 0) + b"\x00\x00", "empty sack"),
    (struct.pack(">BBHIIIHH", 0x21, 2, 0, 0, 0, 0, 0, 0) + b"\x02\x00" * 17 + b"\x00\x00",
     "endless chain"),
])
def test_malformed_packets_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError):
        decode_packet(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        p = decode_packet(data)
    except DecodeError:
        return
    assert encode_packet(p) == data  # what decodes is exactly what it says


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 4), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.lists(st.tuples(st.integers(1, 255), st.binary(min_size=1, max_size=40)), max_size=4),
       st.binary(max_size=100))
def test_round_trip(kind: int, cid: int, seq: int, ack: int,
                    exts: list[tuple[int, bytes]], payload: bytes) -> None:
    p = Packet(kind, cid, seq, ack, 5, 6, 7, tuple(exts), payload)
    assert decode_packet(encode_packet(p)) == p
