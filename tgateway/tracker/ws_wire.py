"""The WebSocket tracker's wire format (the ``bittorrent-tracker`` package's protocol, used by
WebTorrent): pure functions raising only ``DecodeError``.

JSON text messages. Binary strings (info_hash, peer_id, offer_id, to_peer_id) are JS strings
whose code points are the bytes (latin-1); they stay ``str`` here and are echoed unchanged.
``{"action": "announce", info_hash, peer_id, numwant, uploaded, downloaded, left, event,
offers: [{offer, offer_id}]}``; an answer is an announce with ``answer``, ``to_peer_id`` and
``offer_id``; ``{"action": "scrape", info_hash: str | [str]}``.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from tgateway.bencode import DecodeError
from tgateway.tracker.core import (
    EVENT_COMPLETED,
    EVENT_NONE,
    EVENT_STARTED,
    EVENT_STOPPED,
    MAX_SCRAPE,
    MAX_WS_OFFERS,
)

__all__ = ["DecodeError", "WsAnnounce", "WsScrape", "decode_ws", "encode_ws"]

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
