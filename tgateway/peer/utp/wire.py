"""uTP packets (BEP 29): the 20-byte header, its extension chain, the selective-ack bitmask.

Pure functions; nothing here does I/O. :func:`decode_packet` raises only
:class:`~tgateway.bencode.DecodeError` (the adapter drops such a datagram).

Header, big-endian::

    0       4       8               16              24              32
    | type  | ver   | extension     | connection_id                 |
    | timestamp_microseconds                                        |
    | timestamp_difference_microseconds                             |
    | wnd_size                                                      |
    | seq_nr                        | ack_nr                        |

``type``: ``ST_DATA`` 0, ``ST_FIN`` 1, ``ST_STATE`` 2 (an ack, no sequence number of its own),
``ST_RESET`` 3, ``ST_SYN`` 4; ``ver`` is 1. ``extension`` names the first extension; each
extension is ``<next type:u8><length:u8><length bytes>``, the chain ends at type 0. Extension 1 is
the selective ack: a bitmask in which bit ``i`` (byte ``i // 8``, least significant bit first)
says packet ``ack_nr + 2 + i`` has been received (``ack_nr + 1`` is, by definition, missing).
Other extensions (libutp's 8 "extension bits" (2), libtorrent's close reason (3)) are carried
through unread.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

from tgateway.bencode import DecodeError

__all__ = [
    "DecodeError", "Packet", "decode_packet", "encode_packet", "encode_sack", "sack_offsets",
    "ST_DATA", "ST_FIN", "ST_STATE", "ST_RESET", "ST_SYN", "EXT_SACK", "HEADER_SIZE", "VERSION",
    "TYPE_NAMES", "TV_DATA", "TV_FIN", "TV_STATE", "TV_RESET", "TV_SYN", "MASK16", "MASK32",
    "seq_after",
]

ST_DATA, ST_FIN, ST_STATE, ST_RESET, ST_SYN = 0, 1, 2, 3, 4
TYPE_NAMES = ("DATA", "FIN", "STATE", "RESET", "SYN")
VERSION = 1
EXT_SACK = 1
HEADER = struct.Struct(">BBHIIIHH")
HEADER_SIZE = HEADER.size  # 20
MASK16 = 0xFFFF  # sequence and ack numbers, connection ids
MASK32 = 0xFFFFFFFF  # timestamps, windows
# the header's first byte (type and version) of each packet type
TV_DATA, TV_FIN, TV_STATE, TV_RESET, TV_SYN = ((kind << 4) | VERSION for kind in range(5))


def seq_after(a: int, b: int) -> bool:
    """Sequence number ``a`` comes after ``b`` (16 bits, wrapping: the nearer way round)."""
    return 0 < ((a - b) & MASK16) < 0x8000


class Packet(NamedTuple):
    """One uTP packet. ``extensions``: every extension in order, as ``(type, data)``."""

    type: int
    connection_id: int
    seq_nr: int
    ack_nr: int
    timestamp: int = 0  # the sender's clock, microseconds, modulo 2**32
    timestamp_diff: int = 0  # the sender's clock minus our last timestamp it saw (modulo 2**32)
    wnd_size: int = 0  # bytes the sender can still take in (its receive window)
    extensions: tuple[tuple[int, bytes], ...] = ()
    payload: bytes = b""

    @property
    def sack(self) -> bytes | None:
        """The selective-ack bitmask, if the packet carries one."""
        for kind, data in self.extensions:
            if kind == EXT_SACK:
                return data
        return None


def encode_packet(p: Packet) -> bytes:
    """The datagram for ``p`` (fields are taken modulo their width)."""
    head = HEADER.pack(
        ((p.type & 0xF) << 4) | VERSION,
        p.extensions[0][0] if p.extensions else 0,
        p.connection_id & MASK16,
        p.timestamp & MASK32,
        p.timestamp_diff & MASK32,
        p.wnd_size & MASK32,
        p.seq_nr & MASK16,
        p.ack_nr & MASK16,
    )
    if not p.extensions:
        return head + p.payload
    parts = [head]
    for i, (_, data) in enumerate(p.extensions):
        nxt = p.extensions[i + 1][0] if i + 1 < len(p.extensions) else 0
        parts.append(bytes((nxt, len(data))))
        parts.append(data)
    parts.append(p.payload)
    return b"".join(parts)


def decode_packet(data: bytes) -> Packet:
    """Parse one datagram. Raises :class:`DecodeError` for anything that is not a version 1 uTP
    packet of a known type with a well-formed extension chain."""
    if len(data) < HEADER_SIZE:
        raise DecodeError(f"uTP packet of {len(data)} bytes (header: 20)")
    type_ver, ext, conn_id, ts, ts_diff, wnd, seq, ack = HEADER.unpack_from(data)
    if type_ver & 0xF != VERSION:
        raise DecodeError(f"uTP version {type_ver & 0xF}")
    kind = type_ver >> 4
    if kind > ST_SYN:
        raise DecodeError(f"uTP packet type {kind}")
    pos = HEADER_SIZE
    extensions: list[tuple[int, bytes]] = []
    while ext:
        if pos + 2 > len(data):
            raise DecodeError("uTP extension header past the end of the packet")
        nxt, length = data[pos], data[pos + 1]
        pos += 2
        if pos + length > len(data):
            raise DecodeError("uTP extension past the end of the packet")
        if ext == EXT_SACK and length == 0:
            raise DecodeError("empty selective ack")
        extensions.append((ext, bytes(data[pos:pos + length])))
        if len(extensions) > 16:
            raise DecodeError("more than 16 uTP extensions")
        pos += length
        ext = nxt
    return Packet(kind, conn_id, seq, ack, ts, ts_diff, wnd, tuple(extensions),
                  bytes(data[pos:]))


def sack_offsets(mask: bytes) -> list[int]:
    """The offsets ``i`` set in a selective-ack bitmask (packet ``ack_nr + 2 + i`` received)."""
    out = []
    for byte_index, byte in enumerate(mask):
        if byte:
            base = byte_index * 8
            for bit in range(8):
                if byte & (1 << bit):
                    out.append(base + bit)
    return out


def encode_sack(offsets: Iterable[int]) -> bytes:
    """A selective-ack bitmask with the given offsets set, a multiple of 4 bytes long (BEP 29)
    and at least 4; offsets must be in ``range(0, 8 * 252)``."""
    offs = list(offsets)
    size = max(4, ((max(offs, default=0) // 8) + 4) // 4 * 4)
    mask = bytearray(size)
    for i in offs:
        mask[i >> 3] |= 1 << (i & 7)
    return bytes(mask)
