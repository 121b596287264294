"""KRPC codec (BEP 5): bencoded dictionaries over UDP.

Every message is a dict with a transaction id ``t`` (bytes) and a type ``y``: ``q`` (query: method
name ``q`` and arguments ``a``), ``r`` (response: values ``r``) or ``e`` (error: ``[code, message]``).
Responses carry the requester's compact address in ``ip`` (BEP 42). Query arguments always carry the
sender's 20-byte node id ``id``; read-only nodes (BEP 43) add ``ro: 1``.

Error codes: 201 generic, 202 server, 203 protocol (malformed packet, invalid argument, bad token),
204 method unknown.

Compact formats: a peer is 4 (IPv4) or 16 (IPv6) address bytes plus a 2-byte big-endian port; a
node is its 20-byte id followed by the compact peer (26 bytes for IPv4, 38 for IPv6, BEP 32's
``nodes6``).

This module is pure: :func:`decode_message` raises only :class:`KrpcDecodeError` (a
:class:`~tgateway.bencode.DecodeError`), and argument readers raise :class:`ProtocolError`, which the
node turns into a 203 error reply.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from tgateway.bencode import DecodeError, decode, encode

__all__ = [
    "GENERIC_ERROR",
    "SERVER_ERROR",
    "PROTOCOL_ERROR",
    "METHOD_UNKNOWN",
    "KrpcDecodeError",
    "ProtocolError",
    "Query",
    "Response",
    "ErrorReply",
    "decode_message",
    "encode_query",
    "encode_response",
    "encode_error",
    "pack_addr",
    "unpack_addr",
    "pack_node",
    "unpack_nodes",
    "unpack_peers",
    "arg_id20",
    "arg_port",
    "arg_bytes",
]

GENERIC_ERROR = 201
SERVER_ERROR = 202
PROTOCOL_ERROR = 203
METHOD_UNKNOWN = 204

MAX_TID = 64  # bytes; real clients use 2 to 8

_PORT = struct.Struct(">H")


class KrpcDecodeError(DecodeError):
    """The datagram is not a valid KRPC message.

    ``t`` is the transaction id when it could be read and the message was a query, so the caller may
    answer with a 203 error; otherwise None (drop the datagram).
    """

    def __init__(self, message: str, t: bytes | None = None) -> None:
        super().__init__(message)
        self.t = t


class ProtocolError(Exception):
    """A query argument is missing or invalid: answer with ``code`` (203 unless said otherwise)."""

    def __init__(self, message: str, code: int = PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Query:
    """A decoded query: ``method`` and ``args`` (the ``a`` dict, ``args[b'id']`` checked)."""

    __slots__ = ("t", "method", "args", "sender", "ro")

    def __init__(self, t: bytes, method: bytes, args: dict[bytes, Any], sender: bytes, ro: bool):
        self.t = t
        self.method = method
        self.args = args
        self.sender = sender
        self.ro = ro

    def __repr__(self) -> str:
        return f"Query(t={self.t!r}, method={self.method!r}, args={self.args!r})"


class Response:
    """A decoded response: ``values`` (the ``r`` dict, ``values[b'id']`` checked), ``ip`` (BEP 42)."""

    __slots__ = ("t", "values", "sender", "ip")

    def __init__(self, t: bytes, values: dict[bytes, Any], sender: bytes, ip: bytes | None):
        self.t = t
        self.values = values
        self.sender = sender
        self.ip = ip

    def __repr__(self) -> str:
        return f"Response(t={self.t!r}, values={self.values!r})"


class ErrorReply:
    """A decoded error message."""

    __slots__ = ("t", "code", "message")

    def __init__(self, t: bytes, code: int, message: bytes):
        self.t = t
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ErrorReply(t={self.t!r}, code={self.code}, message={self.message!r})"


Message = Query | Response | ErrorReply


def decode_message(data: bytes) -> Message:
    """Decode and validate one KRPC datagram.

    Raises KrpcDecodeError (with ``t`` set for queries whose transaction id was readable).
    """
    try:
        msg = decode(data)
    except DecodeError as e:
        raise KrpcDecodeError(f"not bencode: {e}") from None
    if type(msg) is not dict:
        raise KrpcDecodeError("not a dictionary")
    t = msg.get(b"t")
    if type(t) is not bytes or len(t) > MAX_TID:
        raise KrpcDecodeError("bad transaction id")
    y = msg.get(b"y")
    if y == b"q":
        q = msg.get(b"q")
        if type(q) is not bytes:
            raise KrpcDecodeError("query without method name", t)
        a = msg.get(b"a")
        if type(a) is not dict:
            raise KrpcDecodeError("query without arguments", t)
        sender = a.get(b"id")
        if type(sender) is not bytes or len(sender) != 20:
            raise KrpcDecodeError("query without a 20-byte id", t)
        return Query(t, q, a, sender, msg.get(b"ro") == 1)
    if y == b"r":
        r = msg.get(b"r")
        if type(r) is not dict:
            raise KrpcDecodeError("response without values")
        sender = r.get(b"id")
        if type(sender) is not bytes or len(sender) != 20:
            raise KrpcDecodeError("response without a 20-byte id")
        ip = msg.get(b"ip")
        if type(ip) is not bytes or len(ip) not in (6, 18):
            ip = None
        return Response(t, r, sender, ip)
    if y == b"e":
        err = msg.get(b"e")
        if (
            type(err) is not list
            or len(err) < 2
            or type(err[0]) is not int
            or type(err[1]) is not bytes
        ):
            raise KrpcDecodeError("error without [code, message]")
        return ErrorReply(t, err[0], err[1])
    raise KrpcDecodeError("unknown message type")


def encode_query(t: bytes, method: bytes, args: dict[bytes, Any], ro: bool = False) -> bytes:
    msg: dict[bytes, Any] = {b"t": t, b"y": b"q", b"q": method, b"a": args}
    if ro:
        msg[b"ro"] = 1
    return encode(msg)


def encode_response(t: bytes, values: dict[bytes, Any], ip: bytes | None = None) -> bytes:
    msg: dict[bytes, Any] = {b"t": t, b"y": b"r", b"r": values}
    if ip is not None:
        msg[b"ip"] = ip
    return encode(msg)


def encode_error(t: bytes, code: int, message: str) -> bytes:
    return encode({b"t": t, b"y": b"e", b"e": [code, message.encode("utf-8", "replace")]})


# --------------------------------------------------------------------------- compact formats


def pack_addr(ip: str, port: int) -> bytes:
    """Compact peer/address: 6 bytes for IPv4, 18 for IPv6. Raises ValueError for bad input."""
    try:
        if ":" in ip:
            raw = socket.inet_pton(socket.AF_INET6, ip)
        else:
            raw = socket.inet_aton(ip) if ip.count(".") == 3 else b""
    except OSError:
        raw = b""
    if not raw or not 0 <= port <= 65535:
        raise ValueError(f"bad address {ip!r}:{port}")
    return raw + _PORT.pack(port)


def unpack_addr(data: bytes) -> tuple[str, int]:
    """Inverse of pack_addr (6 or 18 bytes). Raises ValueError for other lengths."""
    if len(data) == 6:
        return socket.inet_ntoa(data[:4]), _PORT.unpack_from(data, 4)[0]
    if len(data) == 18:
        return socket.inet_ntop(socket.AF_INET6, data[:16]), _PORT.unpack_from(data, 16)[0]
    raise ValueError("compact address must be 6 or 18 bytes")


def pack_node(node_id: bytes, ip: str, port: int) -> bytes:
    return node_id + pack_addr(ip, port)


def unpack_nodes(data: Any, ipv6: bool = False) -> list[tuple[bytes, str, int]]:
    """Decode a ``nodes`` (26-byte entries) or ``nodes6`` (38-byte) string.

    Entries with port 0 are skipped. Raises ProtocolError when the length is not a multiple.
    """
    size = 38 if ipv6 else 26
    if type(data) is not bytes or len(data) % size:
        raise ProtocolError("bad compact node list")
    out = []
    for i in range(0, len(data), size):
        ip, port = unpack_addr(data[i + 20 : i + size])
        if port:
            out.append((data[i : i + 20], ip, port))
    return out


def unpack_peers(values: Any) -> list[tuple[str, int]]:
    """Decode a ``values`` list of compact peers, skipping entries of the wrong size or port 0."""
    if type(values) is not list:
        raise ProtocolError("values is not a list")
    out = []
    for v in values:
        if type(v) is bytes and len(v) in (6, 18):
            ip, port = unpack_addr(v)
            if port:
                out.append((ip, port))
    return out


# --------------------------------------------------------------------------- argument readers


def arg_id20(args: dict[bytes, Any], key: bytes) -> bytes:
    """A 20-byte string argument (info_hash, target). Raises ProtocolError."""
    v = args.get(key)
    if type(v) is not bytes or len(v) != 20:
        raise ProtocolError(f"{key.decode()} must be a 20-byte string")
    return v


def arg_bytes(args: dict[bytes, Any], key: bytes, max_len: int = 256) -> bytes:
    v = args.get(key)
    if type(v) is not bytes or len(v) > max_len:
        raise ProtocolError(f"{key.decode()} must be a string")
    return v


def arg_port(args: dict[bytes, Any], key: bytes = b"port") -> int:
    """A port argument; 0 and 1 are refused (they are never real listening ports)."""
    v = args.get(key)
    if type(v) is not int or not 2 <= v <= 65535:
        raise ProtocolError(f"{key.decode()} must be a port from 2 to 65535")
    return v
