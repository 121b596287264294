"""BEP 42: node ids tied to the node's external IP address.

The first 21 bits of the id are the top of ``crc32c((ip & mask) | (r << 29))`` (IPv4 mask
0x030f3fff; IPv6 uses the first 8 bytes with mask 0x0103070f1f3f7fff and ``r`` in the top bits of
the first byte), and the last byte carries ``r`` (its low 3 bits are what counts). Loopback and
private addresses are exempt: any id is valid for them.
"""

from __future__ import annotations

import ipaddress
import random

__all__ = ["crc32c", "node_id_for_ip", "id_matches_ip", "is_exempt"]

_V4_MASK = bytes((0x03, 0x0F, 0x3F, 0xFF))
_V6_MASK = bytes((0x01, 0x03, 0x07, 0x0F, 0x1F, 0x3F, 0x7F, 0xFF))


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as used by BEP 42."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def is_exempt(ip: str) -> bool:
    """Loopback, private and link-local addresses may use any node id."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return True
    return a.is_loopback or a.is_private or a.is_link_local or a.is_unspecified


def _prefix(ip: str, r: int) -> int:
    packed = ipaddress.ip_address(ip).packed
    mask = _V4_MASK if len(packed) == 4 else _V6_MASK
    masked = bytearray(b & m for b, m in zip(packed[: len(mask)], mask, strict=True))
    masked[0] |= (r & 0x7) << 5
    return crc32c(bytes(masked))


def node_id_for_ip(ip: str, rng: random.Random, r: int | None = None) -> bytes:
    """A BEP 42 node id for ``ip`` (random in the bits BEP 42 leaves free)."""
    if r is None:
        r = rng.randrange(256)
    crc = _prefix(ip, r)
    rest = bytearray(rng.randbytes(20))
    rest[0] = (crc >> 24) & 0xFF
    rest[1] = (crc >> 16) & 0xFF
    rest[2] = ((crc >> 8) & 0xF8) | (rest[2] & 0x07)
    rest[19] = r & 0xFF
    return bytes(rest)


def id_matches_ip(node_id: bytes, ip: str) -> bool:
    """True if ``node_id`` is valid for ``ip`` under BEP 42 (always true for exempt addresses)."""
    if is_exempt(ip):
        return True
    try:
        crc = _prefix(ip, node_id[19])
    except ValueError:
        return False
    want = crc >> 11  # the top 21 bits
    got = int.from_bytes(node_id[:3], "big") >> 3
    return want == got
