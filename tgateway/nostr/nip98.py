"""NIP-98 HTTP auth: ``Authorization: Nostr <base64 of a signed kind 27235 event>``.

The server checks, in order: the event itself (:func:`tgateway.nostr.event.parse_event`: every
field, id and signature), kind 27235, ``created_at`` within ``window`` seconds of now, the ``u`` tag
equal to the absolute request URL (as rebuilt from the configured public URL, query included),
the ``method`` tag equal to the request method, the ``payload`` tag (hex SHA-256 of the body) when
both the tag and the body hash are known, and that the event was not used before (replay).

Everything here is pure: ``now`` is passed in, the replay memory is a :class:`ReplayCache` the
caller keeps. Failures raise :class:`tgateway.errors.Unauthorized` with a message that says which
check failed (never the header itself).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections import OrderedDict

from tgateway.errors import Unauthorized
from tgateway.nostr.event import Event, EventError, parse_event_json

__all__ = [
    "HTTP_AUTH_KIND",
    "ReplayCache",
    "check_payload",
    "parse_authorization_header",
    "verify_http_auth",
]

HTTP_AUTH_KIND = 27235
MAX_HEADER = 16 * 1024
DEFAULT_WINDOW = 60.0
_URLSAFE = re.compile(r"[A-Za-z0-9_-]+={0,2}")


class ReplayCache:
    """Event ids already used, remembered for ``ttl`` seconds (at most ``max_entries``).

    An id only needs remembering while its event would pass the time window, so ``ttl`` should
    be at least twice that window (an event may be dated up to ``window`` in the future).
    """

    def __init__(self, ttl: float = 2 * DEFAULT_WINDOW + 5, max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def use(self, event_id: str, now: float) -> bool:
        """Record ``event_id`` as used; False if it was already used (a replay)."""
        while self._seen:
            oldest, expires = next(iter(self._seen.items()))
            if expires > now and len(self._seen) < self.max_entries:
                break
            del self._seen[oldest]
        if event_id in self._seen:
            return False
        self._seen[event_id] = now + self.ttl
        return True


def parse_authorization_header(value: str | None) -> Event:
    """The verified event inside an ``Authorization: Nostr <base64>`` header value.

    Raises :class:`Unauthorized` when the scheme is not ``Nostr``, the token is not base64 JSON,
    or the event fails validation (fields, id, signature).
    """
    if not value:
        raise Unauthorized("missing Authorization header")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "nostr" or not token.strip():
        raise Unauthorized("Authorization scheme must be Nostr (NIP-98)")
    token = token.strip()
    if len(token) > MAX_HEADER:
        raise Unauthorized("NIP-98 token is too large")
    try:
        raw = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        # some clients use the URL-safe alphabet, without padding
        if not _URLSAFE.fullmatch(token):
            raise Unauthorized("NIP-98 token is not base64") from None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise Unauthorized("NIP-98 token is not base64") from None
    try:
        return parse_event_json(raw)
    except EventError as e:
        raise Unauthorized(f"NIP-98 event is {e.message}") from None


def check_payload(event: Event, body_sha256: str) -> None:
    """Check the ``payload`` tag (if any) against the body's hex SHA-256, once it is known.

    For an upload read as it arrives, the body hash is only known at the end: call this then.
    Raises :class:`Unauthorized` on a mismatch.
    """
    payload = event.first_tag("payload")
    if payload is not None and not hmac.compare_digest(
        payload.lower().encode(), body_sha256.lower().encode()
    ):
        raise Unauthorized("NIP-98 payload tag does not match the request body")


def verify_http_auth(
    header: str | None,
    *,
    method: str,
    url: str,
    now: float,
    replay: ReplayCache | None,
    body_sha256: str | None = None,
    window: float = DEFAULT_WINDOW,
) -> Event:
    """Verify a NIP-98 ``Authorization`` header for a request; returns the event (its
    ``pubkey`` is the authenticated user). Raises :class:`Unauthorized` naming the failed check.
    """
    event = parse_authorization_header(header)
    if event.kind != HTTP_AUTH_KIND:
        raise Unauthorized(f"NIP-98 event must be kind {HTTP_AUTH_KIND}, not {event.kind}")
    if abs(now - event.created_at) > window:
        raise Unauthorized(f"NIP-98 event created_at is more than {window:g} s from now")
    if event.first_tag("u") != url:
        raise Unauthorized("NIP-98 u tag does not match the request URL")
    signed_method = event.first_tag("method")
    if signed_method is None or signed_method.upper() != method.upper():
        raise Unauthorized("NIP-98 method tag does not match the request method")
    if body_sha256 is not None:
        check_payload(event, body_sha256)
    if replay is not None and not replay.use(event.id, now):
        raise Unauthorized("NIP-98 event was already used")
    return event
