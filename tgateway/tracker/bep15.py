"""BEP 15 (UDP tracker protocol, with BEP 41's trailing options ignored): one codec for both ends.

The tracker decodes requests and encodes replies (:mod:`tgateway.tracker.udp`); the gateway's peer
encodes requests and decodes replies when it announces to other trackers
(:mod:`tgateway.peer.announce`). Pure functions raising only ``DecodeError``.

``connect``: 64-bit protocol id ``0x41727101980``, action 0, transaction id; its reply is action,
transaction id, connection id. ``announce`` (98 bytes): connection id, action 1, transaction id,
info_hash, peer_id, downloaded, left, uploaded, event, ip, key, num_want (signed), port. Its reply
is action, transaction id, **interval, leechers, seeders**, then 6-byte (IPv4) or 18-byte (IPv6)
peers. ``scrape``: up to 74 info-hashes; reply per hash **seeders, completed, leechers**.
``error``: action 3, transaction id, message.
"""

from __future__ import annotations

import struct
from typing import Any

from tgateway.bencode import DecodeError
from tgateway.tracker.core import (
    EVENT_COMPLETED,
    EVENT_NONE,
    EVENT_STARTED,
    EVENT_STOPPED,
    MAX_SCRAPE,
)

__all__ = [
    "ACTION_ANNOUNCE",
    "ACTION_CONNECT",
    "ACTION_ERROR",
    "ACTION_SCRAPE",
    "EVENT_NUMBERS",
    "UDP_PROTOCOL_ID",
    "UdpDecodeError",
    "decode_announce_interval",
    "decode_connection_id",
    "decode_reply",
    "decode_request",
    "encode_announce_reply",
    "encode_announce_request",
    "encode_connect_reply",
    "encode_connect_request",
    "encode_error_reply",
    "encode_scrape_reply",
]

#: Event names (as in HTTP announces) -> BEP 15 numbers.
EVENT_NUMBERS = {"": EVENT_NONE, "completed": EVENT_COMPLETED, "started": EVENT_STARTED,
                 "stopped": EVENT_STOPPED}

UDP_PROTOCOL_ID = 0x41727101980
ACTION_CONNECT = 0
ACTION_ANNOUNCE = 1
ACTION_SCRAPE = 2
ACTION_ERROR = 3

_HEAD = struct.Struct(">QII")
_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")
_CONNECT_REPLY = struct.Struct(">IIQ")
_ANNOUNCE_REPLY = struct.Struct(">IIIII")
_SCRAPE_ENTRY = struct.Struct(">III")
_ERROR_HEAD = struct.Struct(">II")
_CONNECTION_ID = struct.Struct(">Q")
_INTERVAL = struct.Struct(">I")


class UdpDecodeError(DecodeError):
    """A bad UDP request; ``transaction_id`` is set when the packet got that far (then the
    request deserves an error reply), else None (drop it)."""

    def __init__(self, message: str, transaction_id: int | None = None) -> None:
        super().__init__(message)
        self.transaction_id = transaction_id


UdpRequest = tuple[Any, ...]


def decode_request(data: bytes) -> UdpRequest:
    """Decode one BEP 15 request into a tuple whose first item is the action:

    * ``(0, transaction_id)`` for connect;
    * ``(1, transaction_id, connection_id, info_hash, peer_id, downloaded, left, uploaded,
      event, ip, key, num_want, port)`` for announce;
    * ``(2, transaction_id, connection_id, [info_hash, ...])`` for scrape.

    Raises UdpDecodeError.
    """
    if len(data) < 16:
        raise UdpDecodeError("packet too short")
    cid, action, tid = _HEAD.unpack_from(data)
    if action == ACTION_ANNOUNCE:
        if len(data) < 98:
            raise UdpDecodeError("announce too short", tid)
        (cid, _a, tid, ih, pid, downloaded, left, uploaded, event, ip, key, numwant, port) = (
            _ANNOUNCE.unpack_from(data)
        )
        if event > EVENT_STOPPED:
            raise UdpDecodeError("invalid event", tid)
        return (1, tid, cid, ih, pid, downloaded, left, uploaded, event, ip, key, numwant, port)
    if action == ACTION_CONNECT:
        if cid != UDP_PROTOCOL_ID:
            raise UdpDecodeError("not a BEP 15 connect")
        return (0, tid)
    if action == ACTION_SCRAPE:
        n = min((len(data) - 16) // 20, MAX_SCRAPE)
        if n < 1:
            raise UdpDecodeError("scrape without info_hash", tid)
        return (2, tid, cid, [data[16 + 20 * i : 36 + 20 * i] for i in range(n)])
    raise UdpDecodeError("unknown action", tid)


def encode_connect_reply(transaction_id: int, connection_id: int) -> bytes:
    return _CONNECT_REPLY.pack(ACTION_CONNECT, transaction_id, connection_id)


def encode_announce_reply(
    transaction_id: int, interval: int, leechers: int, seeders: int, peers: bytes
) -> bytes:
    """Announce reply: interval, leechers, seeders (in that order), then compact peers."""
    return (
        _ANNOUNCE_REPLY.pack(
            ACTION_ANNOUNCE,
            transaction_id,
            interval,
            min(leechers, 0xFFFFFFFF),
            min(seeders, 0xFFFFFFFF),
        )
        + peers
    )


def encode_scrape_reply(transaction_id: int, stats: list[tuple[int, int, int]]) -> bytes:
    """Scrape reply; ``stats`` items are (seeders, completed, leechers)."""
    return _ERROR_HEAD.pack(ACTION_SCRAPE, transaction_id) + b"".join(
        _SCRAPE_ENTRY.pack(s, c, le) for s, c, le in stats
    )


def encode_error_reply(transaction_id: int, message: str) -> bytes:
    return _ERROR_HEAD.pack(ACTION_ERROR, transaction_id) + message.encode("utf-8")


# --------------------------------------------------------------------------- the client side


def encode_connect_request(transaction_id: int) -> bytes:
    return _HEAD.pack(UDP_PROTOCOL_ID, ACTION_CONNECT, transaction_id)


def encode_announce_request(connection_id: int, transaction_id: int, info_hash: bytes,
                            peer_id: bytes, event: str, key: int, port: int) -> bytes:
    """An announce of a seeder that wants no peers (the gateway's own peer): downloaded, left
    and uploaded 0, num_want 0, ip 0 (the tracker takes the packet's address)."""
    return _ANNOUNCE.pack(connection_id, ACTION_ANNOUNCE, transaction_id, info_hash, peer_id,
                          0, 0, 0, EVENT_NUMBERS[event], 0, key, 0, port)


def decode_reply(data: bytes) -> tuple[int, int, bytes]:
    """(action, transaction id, the rest) of a reply; raises DecodeError."""
    if len(data) < 8:
        raise DecodeError("short UDP tracker reply")
    action, tid = _ERROR_HEAD.unpack_from(data)
    return action, tid, bytes(data[8:])


def decode_connection_id(rest: bytes) -> int:
    """The connection id of a connect reply (``rest`` after action and transaction id)."""
    if len(rest) < 8:
        raise DecodeError("short connect reply")
    return int(_CONNECTION_ID.unpack_from(rest)[0])


def decode_announce_interval(rest: bytes) -> int:
    """The interval of an announce reply (``rest`` after action and transaction id)."""
    if len(rest) < 12:
        raise DecodeError("short announce reply")
    return int(_INTERVAL.unpack_from(rest)[0])
