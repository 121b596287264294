"""NIP-01 and NIP-42 messages between the gateway and a relay: a pure codec.

Client messages (NIP-01): ``["EVENT", <event>]``, ``["REQ", <sub_id>, <filter>...]``,
``["CLOSE", <sub_id>]``, and NIP-42's ``["AUTH", <kind 22242 event>]``.
Relay messages: ``["OK", <event_id>, <bool>, <message>]``, ``["EVENT", <sub_id>, <event>]``,
``["EOSE", <sub_id>]``, ``["CLOSED", <sub_id>, <message>]``, ``["NOTICE", <message>]`` and
``["AUTH", <challenge>]``. Machine-readable prefixes in OK/CLOSED messages (``duplicate:``,
``auth-required:``, ``rate-limited:``, ...) tell why. :func:`decode_relay_message` raises only
:class:`RelayMessageError`; every incoming event is verified (:func:`~tgateway.nostr.event.parse_event`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tgateway.nostr.event import Event, EventError, EventTemplate, parse_event

__all__ = [
    "AUTH_KIND",
    "AUTH_REQUIRED",
    "AuthMessage",
    "ClosedMessage",
    "EoseMessage",
    "EventMessage",
    "NoticeMessage",
    "OkMessage",
    "RelayMessage",
    "RelayMessageError",
    "decode_relay_message",
    "encode_auth",
    "encode_close",
    "encode_event",
    "encode_req",
    "make_auth_template",
]

AUTH_KIND = 22242
MAX_SUB_ID = 64
AUTH_REQUIRED = "auth-required:"


class RelayMessageError(ValueError):
    """A relay sent something that is not a valid relay message (the codec's only error)."""


@dataclass(frozen=True)
class OkMessage:
    event_id: str
    accepted: bool
    message: str


@dataclass(frozen=True)
class EventMessage:
    sub_id: str
    event: Event


@dataclass(frozen=True)
class EoseMessage:
    sub_id: str


@dataclass(frozen=True)
class ClosedMessage:
    sub_id: str
    message: str


@dataclass(frozen=True)
class NoticeMessage:
    message: str


@dataclass(frozen=True)
class AuthMessage:
    challenge: str


RelayMessage = OkMessage | EventMessage | EoseMessage | ClosedMessage | NoticeMessage | AuthMessage


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def encode_event(event: Event) -> str:
    return _dumps(["EVENT", event.to_json()])


def encode_req(sub_id: str, filters: Sequence[Mapping[str, Any]]) -> str:
    return _dumps(["REQ", sub_id, *filters])


def encode_close(sub_id: str) -> str:
    return _dumps(["CLOSE", sub_id])


def encode_auth(event: Event) -> str:
    return _dumps(["AUTH", event.to_json()])


def _string(value: object, what: str, limit: int = 65536) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise RelayMessageError(f"{what} must be a string")
    return value


def decode_relay_message(text: str | bytes) -> RelayMessage:
    """Parse one relay frame. Raises only :class:`RelayMessageError` (bad events included)."""
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        raise RelayMessageError("not JSON") from None
    if not isinstance(msg, list) or not msg or not isinstance(msg[0], str):
        raise RelayMessageError("not a JSON array starting with a message type")
    kind, args = msg[0], msg[1:]
    if kind == "OK":
        # the message is required by NIP-01; old relays leave it out
        if len(args) not in (2, 3):
            raise RelayMessageError("OK needs an event id, a boolean and a message")
        event_id = _string(args[0], "OK event id", 64)
        if not isinstance(args[1], bool):
            raise RelayMessageError("OK status must be a boolean")
        message = _string(args[2], "OK message") if len(args) == 3 else ""
        return OkMessage(event_id, args[1], message)
    if kind == "EVENT":
        if len(args) != 2:
            raise RelayMessageError("EVENT needs a subscription id and an event")
        sub_id = _string(args[0], "subscription id", MAX_SUB_ID)
        try:
            event = parse_event(args[1])
        except EventError as e:
            raise RelayMessageError(f"EVENT for {sub_id!r}: {e.message}") from None
        return EventMessage(sub_id, event)
    if kind == "EOSE":
        if len(args) != 1:
            raise RelayMessageError("EOSE needs a subscription id")
        return EoseMessage(_string(args[0], "subscription id", MAX_SUB_ID))
    if kind == "CLOSED":
        if len(args) not in (1, 2):
            raise RelayMessageError("CLOSED needs a subscription id and a message")
        message = _string(args[1], "CLOSED message") if len(args) == 2 else ""
        return ClosedMessage(_string(args[0], "subscription id", MAX_SUB_ID), message)
    if kind == "NOTICE":
        if len(args) != 1:
            raise RelayMessageError("NOTICE needs a message")
        return NoticeMessage(_string(args[0], "NOTICE message"))
    if kind == "AUTH":
        if len(args) != 1:
            raise RelayMessageError("AUTH needs a challenge")
        return AuthMessage(_string(args[0], "AUTH challenge", 1024))
    raise RelayMessageError(f"unknown relay message type {kind[:20]!r}")


def make_auth_template(relay_url: str, challenge: str, now: float) -> EventTemplate:
    """The NIP-42 kind 22242 event answering ``challenge`` from ``relay_url``."""
    return EventTemplate(
        kind=AUTH_KIND,
        created_at=int(now),
        tags=(("relay", relay_url), ("challenge", challenge)),
        content="",
    )
