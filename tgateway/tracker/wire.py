"""Tracker wire formats: pure encode/decode functions that raise only ``DecodeError``.

HTTP (BEP 3, 7, 23, 48)
    Query strings are parsed from the raw request target: ``info_hash`` and ``peer_id`` are
    percent-encoded bytes, not text, so they are unquoted to bytes (``+`` is a space, as in
    ``application/x-www-form-urlencoded``). Replies are bencoded dicts with sorted keys; the compact
    announce reply is formatted directly (it is the hot path), everything else goes through
    :mod:`tgateway.bencode`.

UDP (BEP 15, 41)
    ``connect``: 64-bit protocol id ``0x41727101980``, action 0, transaction id.
    ``announce`` (98 bytes, trailing BEP 41 options ignored): connection id, action 1, transaction
    id, info_hash, peer_id, downloaded, left, uploaded, event, ip, key, num_want (signed), port.
    Its reply is action, transaction id, **interval, leechers, seeders**, then 6-byte (IPv4) or
    18-byte (IPv6) peers. ``scrape``: up to 74 info-hashes; reply per hash **seeders, completed,
    leechers**. ``error``: action 3, transaction id, message.

WebSocket (the ``bittorrent-tracker`` package's protocol, used by WebTorrent)
    JSON text messages. Binary strings (info_hash, peer_id, offer_id, to_peer_id) are JS strings
    whose code points are the bytes (latin-1); they stay ``str`` here and are echoed unchanged.
    ``{"action": "announce", info_hash, peer_id, numwant, uploaded, downloaded, left, event,
    offers: [{offer, offer_id}]}``; an answer is an announce with ``answer``, ``to_peer_id`` and
    ``offer_id``; ``{"action": "scrape", info_hash: str | [str]}``.
"""

from __future__ import annotations

import json
import struct
from binascii import a2b_qp
from typing import Any
from urllib.parse import unquote_to_bytes

import msgspec

from tgateway import bencode
from tgateway.bencode import DecodeError
from tgateway.tracker.core import (
    EVENT_COMPLETED,
    EVENT_NONE,
    EVENT_STARTED,
    EVENT_STOPPED,
    MAX_WS_OFFERS,
)

__all__ = [
    "DecodeError",
    "UdpDecodeError",
    "AnnounceQuery",
    "decode_announce_query",
    "decode_scrape_query",
    "encode_announce",
    "encode_announce_dict",
    "encode_failure",
    "encode_scrape",
    "decode_udp",
    "encode_udp_connect",
    "encode_udp_announce",
    "encode_udp_scrape",
    "encode_udp_error",
    "WsAnnounce",
    "WsScrape",
    "decode_ws",
    "MAX_SCRAPE",
]

#: Most info-hashes answered in one scrape (a UDP reply of 8 + 12 * 74 bytes fits any MTU).
MAX_SCRAPE = 74

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


# --------------------------------------------------------------------------- UDP

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


class UdpDecodeError(DecodeError):
    """A bad UDP request; ``transaction_id`` is set when the packet got that far (then the
    request deserves an error reply), else None (drop it)."""

    def __init__(self, message: str, transaction_id: int | None = None) -> None:
        super().__init__(message)
        self.transaction_id = transaction_id


UdpRequest = tuple[Any, ...]


def decode_udp(data: bytes) -> UdpRequest:
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


def encode_udp_connect(transaction_id: int, connection_id: int) -> bytes:
    return _CONNECT_REPLY.pack(ACTION_CONNECT, transaction_id, connection_id)


def encode_udp_announce(
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


def encode_udp_scrape(transaction_id: int, stats: list[tuple[int, int, int]]) -> bytes:
    """Scrape reply; ``stats`` items are (seeders, completed, leechers)."""
    return _ERROR_HEAD.pack(ACTION_SCRAPE, transaction_id) + b"".join(
        _SCRAPE_ENTRY.pack(s, c, le) for s, c, le in stats
    )


def encode_udp_error(transaction_id: int, message: str) -> bytes:
    return _ERROR_HEAD.pack(ACTION_ERROR, transaction_id) + message.encode("utf-8")


# --------------------------------------------------------------------------- WebSocket

_WS_EVENTS = {
    None: EVENT_NONE,
    "update": EVENT_NONE,
    "paused": EVENT_NONE,
    "started": EVENT_STARTED,
    "completed": EVENT_COMPLETED,
    "stopped": EVENT_STOPPED,
}


def _binary20(obj: dict[str, Any], name: str) -> str:
    """A 20-character string (peer_id, offer_id, to_peer_id): kept as is and echoed back."""
    value = obj.get(name)
    if type(value) is not str or len(value) != 20:
        raise DecodeError(f"invalid {name}")
    return value


def _info_hash20(value: Any) -> bytes:
    """A 20-character binary string whose code points are the info-hash bytes."""
    if type(value) is not str or len(value) != 20:
        raise DecodeError("invalid info_hash")
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise DecodeError("invalid info_hash") from None


class WsAnnounce(msgspec.Struct, gc=False):
    """A WebTorrent announce, or (``answer`` set) an answer to a forwarded offer.

    ``offers[i]`` is the JSON text of the i-th offer object exactly as the client sent it (UTF-8
    bytes: the tracker forwards it without decoding it), ``offer_ids[i]`` its offer_id; ``answer``
    likewise is the answer object's JSON text, or None. (A msgspec ``Struct`` only because it
    is built in C: one is made per message.)
    """

    info_hash: str
    info_hash_bytes: bytes
    peer_id: str
    seed: bool
    event: int
    offers: list[bytes]
    offer_ids: list[str]
    answer: bytes | None = None
    to_peer_id: str = ""
    offer_id: str = ""


class WsScrape:
    """A WebSocket scrape; ``info_hashes`` empty means all swarms."""

    __slots__ = ("info_hashes",)

    def __init__(self, info_hashes: list[str]) -> None:
        self.info_hashes = info_hashes


def _ws_seed(left: Any) -> bool:
    if type(left) is int or type(left) is float:
        return left == 0
    if type(left) is str:
        return left.strip() in ("0", "0.0")
    return False  # null (Infinity), missing: a leecher


class _WsOffer(msgspec.Struct, gc=False):
    offer: msgspec.Raw
    offer_id: Any


_NO_RAW = msgspec.Raw(b"")


class _WsMessage(msgspec.Struct, gc=False):
    """The fields the tracker reads. Offer and answer objects stay raw JSON text; everything
    else is checked in :func:`decode_ws`, as for the generic decode."""

    action: Any = None
    info_hash: Any = None
    peer_id: Any = None
    left: Any = None
    event: Any = None
    offers: list[_WsOffer] | None = None
    answer: msgspec.Raw = _NO_RAW
    to_peer_id: Any = None
    offer_id: Any = None


_decode_typed = msgspec.json.Decoder(_WsMessage).decode
_decode_any = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode


def decode_ws(payload: bytes) -> WsAnnounce | WsScrape:
    """Decode one WebSocket text message. Raises DecodeError (whose message is safe to send
    back as ``failure reason``).

    msgspec parses the message into :class:`_WsMessage`, skipping fields the tracker does not
    read and keeping offer and answer objects as raw JSON text (they are forwarded verbatim, so
    they are never decoded into dicts and encoded again). A message whose offers do not have
    that shape goes through :func:`_decode_ws_generic`, which says what is wrong, or accepts it
    (offers past ``MAX_WS_OFFERS`` are ignored, not checked). msgspec checks that the strings it
    decodes are UTF-8, but not the text it skips or keeps raw: the raw offers and answer are
    checked here, since they are sent on in text frames (where invalid UTF-8 makes the other
    peer's WebSocket fail). Fields the tracker does not read are not checked.
    """
    try:
        msg = _decode_typed(payload)
    except msgspec.ValidationError:
        return _decode_ws_generic(payload)
    except (msgspec.DecodeError, RecursionError):
        raise DecodeError("invalid JSON") from None
    action = msg.action
    if action == "announce":
        info_hash = msg.info_hash
        if type(info_hash) is not str or len(info_hash) != 20:
            raise DecodeError("invalid info_hash")
        try:
            info_hash_bytes = info_hash.encode("latin-1")
        except UnicodeEncodeError:
            raise DecodeError("invalid info_hash") from None
        peer_id = msg.peer_id
        if type(peer_id) is not str or len(peer_id) != 20:
            raise DecodeError("invalid peer_id")
        answer = msg.answer
        if answer is not _NO_RAW:
            raw_answer = bytes(answer)
            if raw_answer != b"null":
                if raw_answer[0] != 0x7B:  # "{"
                    raise DecodeError("invalid answer")
                if not raw_answer.isascii():
                    _check_utf8(raw_answer)
                to_peer_id = msg.to_peer_id
                if type(to_peer_id) is not str or len(to_peer_id) != 20:
                    raise DecodeError("invalid to_peer_id")
                offer_id = msg.offer_id
                if type(offer_id) is not str or len(offer_id) != 20:
                    raise DecodeError("invalid offer_id")
                return WsAnnounce(info_hash, info_hash_bytes, peer_id, False, EVENT_NONE, [], [],
                                  raw_answer, to_peer_id, offer_id)
        event = msg.event
        ev = _WS_EVENTS.get(event) if event is None or type(event) is str else None
        if ev is None:
            raise DecodeError("invalid event")
        offers: list[bytes] = []
        offer_ids: list[str] = []
        items = msg.offers
        if items:
            for item in items[:MAX_WS_OFFERS]:
                offer = bytes(item.offer)
                offer_id = item.offer_id
                if offer[0] != 0x7B or type(offer_id) is not str or len(offer_id) != 20:
                    raise DecodeError("invalid offers")
                if not offer.isascii():
                    _check_utf8(offer)
                offers.append(offer)
                offer_ids.append(offer_id)
        return WsAnnounce(info_hash, info_hash_bytes, peer_id, _ws_seed(msg.left), ev, offers,
                          offer_ids)
    if action == "scrape":
        return _ws_scrape(msg.info_hash)
    raise DecodeError("invalid action")


def _check_utf8(text: bytes) -> None:
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("invalid JSON") from None


def _decode_ws_generic(payload: bytes) -> WsAnnounce | WsScrape:
    """:func:`decode_ws` for messages that do not fit :class:`_WsMessage`: a generic decode,
    then the same checks, with the reason for a rejection. Offer and answer objects are encoded
    again (compact JSON) to be forwarded."""
    try:
        msg = _decode_any(payload)
    except (msgspec.DecodeError, RecursionError):  # ValidationError: a number out of range
        raise DecodeError("invalid JSON") from None
    if type(msg) is not dict:
        raise DecodeError("invalid message")
    action = msg.get("action")
    if action == "announce":
        info_hash: str = msg.get("info_hash")  # type: ignore[assignment]  # _info_hash20 checks
        info_hash_bytes = _info_hash20(info_hash)
        peer_id = _binary20(msg, "peer_id")
        answer = msg.get("answer")
        if answer is not None:
            if type(answer) is not dict:
                raise DecodeError("invalid answer")
            return WsAnnounce(
                info_hash, info_hash_bytes, peer_id, False, EVENT_NONE, [], [],
                _encode_json(answer), _binary20(msg, "to_peer_id"), _binary20(msg, "offer_id"),
            )
        event = msg.get("event")
        ev = _WS_EVENTS.get(event) if event is None or type(event) is str else None
        if ev is None:
            raise DecodeError("invalid event")
        offers: list[bytes] = []
        offer_ids: list[str] = []
        raw = msg.get("offers")
        if raw is not None:
            if type(raw) is not list:
                raise DecodeError("invalid offers")
            for item in raw[:MAX_WS_OFFERS]:
                if type(item) is not dict:
                    raise DecodeError("invalid offers")
                offer = item.get("offer")
                offer_id = item.get("offer_id")
                if type(offer) is not dict or type(offer_id) is not str or len(offer_id) != 20:
                    raise DecodeError("invalid offers")
                offers.append(_encode_json(offer))
                offer_ids.append(offer_id)
        return WsAnnounce(info_hash, info_hash_bytes, peer_id, _ws_seed(msg.get("left")), ev,
                          offers, offer_ids)
    if action == "scrape":
        return _ws_scrape(msg.get("info_hash"))
    raise DecodeError("invalid action")


def _ws_scrape(raw_ih: Any) -> WsScrape:
    if raw_ih is None:
        return WsScrape([])
    if type(raw_ih) is str:
        raw_ih = [raw_ih]
    if type(raw_ih) is not list or len(raw_ih) > MAX_SCRAPE:
        raise DecodeError("invalid info_hash")
    for h in raw_ih:
        _info_hash20(h)
    return WsScrape(raw_ih)


def encode_ws(message: dict[str, Any]) -> bytes:
    """JSON with \\u escapes, so latin-1 binary strings survive any transport."""
    return json.dumps(message, separators=(",", ":")).encode("ascii")
