"""The HTTP tracker's wire format: pure encode/decode functions that raise only ``DecodeError``.
The WebSocket codec is :mod:`tgateway.tracker.ws_wire`; UDP (BEP 15) is
:mod:`tgateway.tracker.bep15`, shared with the peer's announcer.

HTTP (BEP 3, 7, 23, 48)
    Query strings are parsed from the raw request target: ``info_hash`` and ``peer_id`` are
    percent-encoded bytes, not text, so they are unquoted to bytes (``+`` is a space, as in
    ``application/x-www-form-urlencoded``). Replies are bencoded dicts with sorted keys; the compact
    announce reply is formatted directly (it is the hot path), everything else goes through
    :mod:`tgateway.bencode`.

"""

from __future__ import annotations

from binascii import a2b_qp
from typing import Any
from urllib.parse import unquote_to_bytes

from tgateway import bencode
from tgateway.bencode import DecodeError
from tgateway.tracker.core import (
    EVENT_COMPLETED,
    EVENT_NONE,
    EVENT_STARTED,
    EVENT_STOPPED,
    MAX_SCRAPE,
)

__all__ = [
    "DecodeError",
    "AnnounceQuery",
    "decode_announce_query",
    "decode_scrape_query",
    "encode_announce",
    "encode_announce_dict",
    "encode_failure",
    "encode_scrape",
]

_HTTP_EVENTS = {
    b"": EVENT_NONE,
    b"started": EVENT_STARTED,
    b"completed": EVENT_COMPLETED,
    b"stopped": EVENT_STOPPED,
    b"paused": EVENT_NONE,
    b"empty": EVENT_NONE,
    b"update": EVENT_NONE,
}


# --------------------------------------------------------------------------- HTTP


def _unquote(value: bytes) -> bytes:
    """Percent-decode to bytes (``+`` is a space), exactly as ``unquote_to_bytes``.

    Fast path: with ``%`` rewritten to ``=``, quoted-printable decoding (C) is percent decoding;
    it is used when the result has the length that only well-formed escapes give and no line
    breaks (which quoted-printable treats specially); anything else takes the slow path.
    """
    if b"%" not in value:
        return value.replace(b"+", b" ") if b"+" in value else value
    if b"\r" not in value and b"\n" not in value:
        out = a2b_qp(value.replace(b"=", b"=3D").replace(b"%", b"=").replace(b"+", b" "))
        if len(out) == len(value) - 2 * value.count(b"%"):
            return out
    return unquote_to_bytes(value.replace(b"+", b" "))


def _uint(name: str, value: bytes, limit: int = 20) -> int:
    if not value.isdigit() or len(value) > limit:
        raise DecodeError(f"invalid {name}")
    return int(value)


class AnnounceQuery:
    """A validated HTTP announce (BEP 3)."""

    __slots__ = (
        "info_hash",
        "peer_id",
        "port",
        "uploaded",
        "downloaded",
        "left",
        "event",
        "numwant",
        "compact",
        "no_peer_id",
        "ip",
    )

    def __init__(
        self,
        info_hash: bytes,
        peer_id: bytes,
        port: int,
        uploaded: int,
        downloaded: int,
        left: int | None,
        event: int,
        numwant: int | None,
        compact: bool,
        no_peer_id: bool,
        ip: bytes | None,
    ) -> None:
        self.info_hash = info_hash
        self.peer_id = peer_id
        self.port = port
        self.uploaded = uploaded
        self.downloaded = downloaded
        self.left = left
        self.event = event
        self.numwant = numwant
        self.compact = compact
        self.no_peer_id = no_peer_id
        self.ip = ip


def decode_announce_query(qs: bytes) -> AnnounceQuery:
    """Parse the raw query string of ``GET /announce``.

    ``left`` is None when missing (a leecher); ``numwant`` None when missing or negative (use the
    default). A repeated parameter counts once (the last one). Raises DecodeError naming the bad
    parameter.
    """
    fields = dict(part.partition(b"=")[::2] for part in qs.split(b"&"))
    get = fields.get
    raw = get(b"info_hash")
    info_hash = _unquote(raw) if raw is not None else b""
    if len(info_hash) != 20:
        raise DecodeError("invalid info_hash")
    raw = get(b"peer_id")
    peer_id = _unquote(raw) if raw is not None else b""
    if len(peer_id) != 20:
        raise DecodeError("invalid peer_id")
    raw = get(b"port")
    port = _uint("port", raw, 5) if raw is not None else 0
    if not 0 < port < 65536:
        raise DecodeError("invalid port")
    raw = get(b"left")
    left = _uint("left", raw) if raw is not None else None
    raw = get(b"uploaded")
    uploaded = _uint("uploaded", raw) if raw is not None else 0
    raw = get(b"downloaded")
    downloaded = _uint("downloaded", raw) if raw is not None else 0
    raw = get(b"event")
    event = EVENT_NONE
    if raw is not None:
        ev = _HTTP_EVENTS.get(raw)
        if ev is None:
            raise DecodeError("invalid event")
        event = ev
    raw = get(b"numwant")
    numwant: int | None = None
    if raw is not None and not (raw[:1] == b"-" and raw[1:].isdigit()):
        numwant = _uint("numwant", raw, 9)
    raw = get(b"ip")
    return AnnounceQuery(
        info_hash, peer_id, port, uploaded, downloaded, left, event, numwant,
        get(b"compact") != b"0", get(b"no_peer_id") == b"1",
        _unquote(raw) if raw is not None else None,
    )


def decode_scrape_query(qs: bytes) -> list[bytes]:
    """The info-hashes of ``GET /scrape`` (BEP 48), at most MAX_SCRAPE; [] means "all".

    Raises DecodeError for an info_hash that is not 20 bytes or for too many of them.
    """
    hashes = []
    for part in qs.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"info_hash":
            ih = _unquote(value)
            if len(ih) != 20:
                raise DecodeError("invalid info_hash")
            hashes.append(ih)
            if len(hashes) > MAX_SCRAPE:
                raise DecodeError(f"too many info_hash (at most {MAX_SCRAPE})")
    return hashes


def encode_announce(
    complete: int,
    incomplete: int,
    downloaded: int,
    interval: int,
    min_interval: int,
    peers4: bytes,
    peers6: bytes = b"",
    warning: bytes = b"",
    tracker_id: bytes = b"",
) -> bytes:
    """The compact (BEP 23) announce reply, keys in bencode order; ``peers6`` per BEP 7."""
    out = b"d8:completei%de10:downloadedi%de10:incompletei%de8:intervali%de12:min intervali%de5:peers%d:%s" % (
        complete, downloaded, incomplete, interval, min_interval, len(peers4), peers4,
    )
    if peers6:
        out += b"6:peers6%d:%s" % (len(peers6), peers6)
    if tracker_id:
        out += b"10:tracker id%d:%s" % (len(tracker_id), tracker_id)
    if warning:
        out += b"15:warning message%d:%s" % (len(warning), warning)
    return out + b"e"


def encode_announce_dict(
    complete: int,
    incomplete: int,
    downloaded: int,
    interval: int,
    min_interval: int,
    peers: list[tuple[bytes, int, bytes | None]],
    warning: bytes = b"",
    tracker_id: bytes = b"",
) -> bytes:
    """The original (``compact=0``) reply: ``peers`` as a list of dicts with ``ip`` (text),
    ``port`` and, unless None (``no_peer_id``), ``peer id``."""
    plist = []
    for ip, port, peer_id in peers:
        d: dict[bytes, Any] = {b"ip": ip, b"port": port}
        if peer_id is not None:
            d[b"peer id"] = peer_id
        plist.append(d)
    reply: dict[bytes, Any] = {
        b"complete": complete,
        b"downloaded": downloaded,
        b"incomplete": incomplete,
        b"interval": interval,
        b"min interval": min_interval,
        b"peers": plist,
    }
    if tracker_id:
        reply[b"tracker id"] = tracker_id
    if warning:
        reply[b"warning message"] = warning
    return bencode.encode(reply)


def encode_failure(reason: str) -> bytes:
    """``d14:failure reason...e``: how a tracker says no (served with HTTP 200)."""
    raw = reason.encode("utf-8")
    return b"d14:failure reason%d:%se" % (len(raw), raw)


def encode_scrape(
    files: list[tuple[bytes, int, int, int]], min_request_interval: int | None = None
) -> bytes:
    """BEP 48 scrape reply: ``files`` keyed by raw 20-byte info-hash; tuples are
    (info_hash, complete, downloaded, incomplete)."""
    reply: dict[bytes, Any] = {
        b"files": {
            ih: {b"complete": c, b"downloaded": d, b"incomplete": i} for ih, c, d, i in files
        }
    }
    if min_request_interval is not None:
        reply[b"flags"] = {b"min_request_interval": min_request_interval}
    return bencode.encode(reply)
