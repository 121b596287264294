"""Peer-wire codec (BEP 3, BEP 6 fast extension, BEP 10 extension protocol, BEP 9 ut_metadata).

Pure functions and one incremental :class:`Framer`; nothing here does I/O. Decoders raise only
:class:`~tgateway.bencode.DecodeError`.

Stream layout: one 68-byte handshake (``\\x13BitTorrent protocol``, 8 reserved bytes, 20-byte
info-hash, 20-byte peer id), then messages ``<length:u32><id:u8><payload>``; a zero length is a
keep-alive. Reserved bits: ``reserved[5] & 0x10`` BEP 10 extensions, ``reserved[7] & 0x04`` BEP 6
fast extension, ``reserved[7] & 0x01`` DHT.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from tgateway import bencode
from tgateway.bencode import DecodeError

__all__ = [
    "DecodeError", "Framer", "Handshake", "PROTOCOL", "BLOCK_MAX", "decode_message",
    "decode_handshake", "encode_handshake", "allowed_fast_set",
]

PROTOCOL = b"\x13BitTorrent protocol"
HANDSHAKE_LEN = 68
BLOCK_MAX = 16384  # largest block a peer may request (BEP 3 convention; libtorrent rejects more)
METADATA_PIECE = 16384  # BEP 9 metadata piece size

CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, HAVE, BITFIELD, REQUEST, PIECE, CANCEL, PORT = range(10)
SUGGEST, HAVE_ALL, HAVE_NONE, REJECT, ALLOWED_FAST = 13, 14, 15, 16, 17
EXTENDED = 20

FAST_BIT = 0x04  # reserved[7]
DHT_BIT = 0x01  # reserved[7]
EXTENSION_BIT = 0x10  # reserved[5]


@dataclass(frozen=True)
class Handshake:
    reserved: bytes
    info_hash: bytes
    peer_id: bytes

    @property
    def fast(self) -> bool:
        return bool(self.reserved[7] & FAST_BIT)

    @property
    def extensions(self) -> bool:
        return bool(self.reserved[5] & EXTENSION_BIT)


def reserved_bits(*, fast: bool = True, extensions: bool = True, dht: bool = False) -> bytes:
    r = bytearray(8)
    if extensions:
        r[5] |= EXTENSION_BIT
    if fast:
        r[7] |= FAST_BIT
    if dht:
        r[7] |= DHT_BIT
    return bytes(r)


def encode_handshake(reserved: bytes, info_hash: bytes, peer_id: bytes) -> bytes:
    assert len(reserved) == 8 and len(info_hash) == 20 and len(peer_id) == 20
    return PROTOCOL + reserved + info_hash + peer_id


def decode_handshake(data: bytes) -> Handshake:
    """The 68-byte handshake (the peer id may be missing: 48 bytes are enough)."""
    if len(data) < 48 or data[:20] != PROTOCOL:
        raise DecodeError("not a BitTorrent handshake")
    return Handshake(bytes(data[20:28]), bytes(data[28:48]), bytes(data[48:68]))


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class KeepAlive:
    pass


@dataclass(frozen=True)
class Simple:
    """choke, unchoke, interested, not interested, have_all, have_none."""

    id: int


@dataclass(frozen=True)
class Have:
    index: int


@dataclass(frozen=True)
class Bitfield:
    bits: bytes


class Request(NamedTuple):
    """request, cancel, reject_request (same layout); ``id`` tells which. A named tuple: one is
    built per requested block, on the upload hot path."""

    id: int
    index: int  # type: ignore[assignment]  # shadows tuple.index, which nothing here uses
    begin: int
    length: int


@dataclass(frozen=True)
class Piece:
    index: int
    begin: int
    block: bytes


@dataclass(frozen=True)
class Port:
    port: int


@dataclass(frozen=True)
class IndexMessage:
    """suggest_piece, allowed_fast."""

    id: int
    index: int


@dataclass(frozen=True)
class Extended:
    ext_id: int
    payload: bytes


Message = KeepAlive | Simple | Have | Bitfield | Request | Piece | Port | IndexMessage | Extended

_SIMPLE = frozenset({CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, HAVE_ALL, HAVE_NONE})
_U32 = struct.Struct(">I")
_III = struct.Struct(">III")
_HEAD_PIECE = struct.Struct(">IBII")


def decode_message(body: bytes) -> Message:
    """One message body (without its length prefix); raise DecodeError if malformed."""
    if not body:
        return KeepAlive()
    mid = body[0]
    n = len(body) - 1
    if mid == REQUEST and n == 12:  # the hot path
        return Request(REQUEST, *_III.unpack_from(body, 1))
    if mid in _SIMPLE:
        if n:
            raise DecodeError(f"message {mid} carries {n} unexpected bytes")
        return Simple(mid)
    if mid in (HAVE, SUGGEST, ALLOWED_FAST):
        if n != 4:
            raise DecodeError(f"message {mid}: {n} bytes, expected 4")
        (index,) = _U32.unpack_from(body, 1)
        return Have(index) if mid == HAVE else IndexMessage(mid, index)
    if mid == BITFIELD:
        return Bitfield(bytes(body[1:]))
    if mid in (REQUEST, CANCEL, REJECT):
        if n != 12:
            raise DecodeError(f"message {mid}: {n} bytes, expected 12")
        index, begin, length = _III.unpack_from(body, 1)
        return Request(mid, index, begin, length)
    if mid == PIECE:
        if n < 8:
            raise DecodeError("piece message too short")
        index, begin = struct.unpack_from(">II", body, 1)
        return Piece(index, begin, bytes(body[9:]))
    if mid == PORT:
        if n != 2:
            raise DecodeError("port message: expected 2 bytes")
        return Port(int.from_bytes(body[1:3], "big"))
    if mid == EXTENDED:
        if n < 1:
            raise DecodeError("extended message without an id")
        return Extended(body[1], bytes(body[2:]))
    raise DecodeError(f"unknown message id {mid}")


def encode_simple(mid: int) -> bytes:
    return b"\x00\x00\x00\x01" + bytes((mid,))


KEEP_ALIVE = b"\x00\x00\x00\x00"


def encode_index(mid: int, index: int) -> bytes:
    return b"\x00\x00\x00\x05" + bytes((mid,)) + _U32.pack(index)


def encode_request(mid: int, index: int, begin: int, length: int) -> bytes:
    return b"\x00\x00\x00\x0d" + bytes((mid,)) + _III.pack(index, begin, length)


def encode_port(port: int) -> bytes:
    """BEP 5 PORT: the sender's DHT node listens on this UDP port."""
    return b"\x00\x00\x00\x03" + bytes((PORT,)) + port.to_bytes(2, "big")


def encode_bitfield(bits: bytes) -> bytes:
    return _U32.pack(len(bits) + 1) + bytes((BITFIELD,)) + bits


def piece_header(index: int, begin: int, length: int) -> bytes:
    """The 13 bytes before a block of ``length`` bytes in a piece message."""
    return _HEAD_PIECE.pack(9 + length, PIECE, index, begin)


def encode_piece(index: int, begin: int, block: bytes) -> bytes:
    return piece_header(index, begin, len(block)) + block


def encode_extended(ext_id: int, payload: bytes) -> bytes:
    return _U32.pack(len(payload) + 2) + bytes((EXTENDED, ext_id)) + payload


def full_bitfield(piece_count: int) -> bytes:
    """All pieces present; spare bits of the last byte are zero (BEP 3)."""
    full, rest = divmod(piece_count, 8)
    out = b"\xff" * full
    if rest:
        out += bytes(((0xFF << (8 - rest)) & 0xFF,))
    return out


# --------------------------------------------------------------------------- BEP 10 / BEP 9


def decode_ext_dict(payload: bytes) -> tuple[dict[bytes, Any], bytes]:
    """A bencoded dict at the start of ``payload`` and the bytes after it (ut_metadata data)."""
    end = _dict_end(payload)
    value = bencode.decode(payload[:end])
    if not isinstance(value, dict):
        raise DecodeError("expected a dictionary")
    return value, bytes(payload[end:])


def _dict_end(data: bytes) -> int:
    """Index just past the bencoded value starting at 0 (structure only; decode validates)."""
    if not data or data[:1] != b"d":
        raise DecodeError("expected a dictionary")
    i, depth, n = 0, 0, len(data)
    while i < n:
        c = data[i]
        if c in (0x64, 0x6C):  # d, l
            depth += 1
            i += 1
        elif c == 0x65:  # e
            depth -= 1
            i += 1
            if depth == 0:
                return i
        elif c == 0x69:  # i
            j = data.find(b"e", i)
            if j < 0:
                raise DecodeError("unterminated integer")
            i = j + 1
        elif 0x30 <= c <= 0x39:
            j = data.find(b":", i, i + 21)
            if j < 0:
                raise DecodeError("bad string length")
            try:
                length = int(data[i:j])
            except ValueError:
                raise DecodeError("bad string length") from None
            i = j + 1 + length
        else:
            raise DecodeError("bad bencode")
        if depth > 64:
            raise DecodeError("too deep")
    raise DecodeError("truncated")


def encode_ext_handshake(fields: dict[bytes, Any]) -> bytes:
    return encode_extended(0, bencode.encode(fields))


def encode_metadata_data(ext_id: int, piece: int, total: int, data: bytes) -> bytes:
    head = bencode.encode({b"msg_type": 1, b"piece": piece, b"total_size": total})
    return encode_extended(ext_id, head + data)


def encode_metadata_reject(ext_id: int, piece: int) -> bytes:
    return encode_extended(ext_id, bencode.encode({b"msg_type": 2, b"piece": piece}))


# --------------------------------------------------------------------------- framing


class Framer:
    """Splits a byte stream into the handshake and then message bodies.

    ``feed(data)`` returns the new items: first the handshake bytes (68), then message bodies
    (without the length prefix; ``b""`` is a keep-alive). Raises DecodeError when a length prefix
    exceeds ``max_length`` or the handshake is not one; the connection must then be closed.
    """

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._buf = bytearray()
        self._handshaken = False

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        if not self._handshaken:
            if n >= 20 and bytes(buf[:20]) != PROTOCOL:
                raise DecodeError("not a BitTorrent handshake")
            if n < 20 and bytes(buf[:n]) != PROTOCOL[:n]:
                raise DecodeError("not a BitTorrent handshake")
            if n < HANDSHAKE_LEN:
                return out
            out.append(bytes(buf[:HANDSHAKE_LEN]))
            pos = HANDSHAKE_LEN
            self._handshaken = True
        max_length = self.max_length
        while n - pos >= 4:
            (length,) = _U32.unpack_from(buf, pos)
            if length > max_length:
                raise DecodeError(f"message of {length} bytes (at most {max_length})")
            end = pos + 4 + length
            if end > n:
                break
            out.append(bytes(buf[pos + 4 : end]))
            pos = end
        if pos:
            del buf[:pos]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)


# --------------------------------------------------------------------------- BEP 6 allowed fast


def allowed_fast_set(ip: bytes, info_hash: bytes, piece_count: int, k: int) -> list[int]:
    """BEP 6 canonical allowed-fast set for an IPv4 peer (``ip``: 4 packed bytes)."""
    k = min(k, piece_count)
    out: list[int] = []
    if k <= 0:
        return out
    x = bytes(a & b for a, b in zip(ip, b"\xff\xff\xff\x00", strict=True)) + info_hash
    while len(out) < k:
        x = hashlib.sha1(x).digest()
        for i in range(5):
            if len(out) >= k:
                break
            index = int.from_bytes(x[4 * i : 4 * i + 4], "big") % piece_count
            if index not in out:
                out.append(index)
    return out
