"""Sign-in with a signed event (NIP-07 browser extensions, or a NIP-46 signer): challenges and
the check of the event that answers one.

``GET /api/auth/challenge`` hands out :meth:`ChallengeStore.issue`; ``POST /api/auth/login`` passes
the signed event to :func:`verify_login_event`, which checks, in order: the event itself
(:func:`tgateway.nostr.event.parse_event`), kind 22242 (NIP-42 style) or 27235 (NIP-98 style),
``created_at`` within ``window`` seconds of now, that the event names this gateway
(:class:`LoginBinding`), a ``challenge`` tag, and that the challenge was issued here, has not
expired and was not used before (it is consumed only when every other check passed). Failures
raise :class:`tgateway.errors.Unauthorized` with the reason.

Why the binding: a challenge is just a random string, and a client that signs NIP-42 ``AUTH``
for relays signs whatever challenge a relay sends, often without asking. A malicious relay could
pass the gateway's challenge on as its own and collect a session for the user. So a login event
must say which server it is for: a ``relay`` tag (NIP-42) or ``u`` tag (NIP-98) equal to the
gateway's public URL or its login URL (``<public URL>/api/auth/login``); an event that names
another server, or none, is refused. URLs are compared as NIP-42 suggests, after normalisation:
scheme (``ws``/``http`` and ``wss``/``https`` are the same server), host case, a trailing dot,
the default port, the IPv6 spelling and a trailing slash do not matter; the path does (a gateway
under ``https://example.org/gw`` is not ``https://example.org``); a query, fragment or user
part never matches. The public URL is ``gateway.public_url``, or the listening address when it
is empty (``GatewayConfig.base_url``); the request's ``Host`` header plays no part.

Pure: time and randomness are injected. Challenges live in memory (one process; they are
short-lived, so a restart only costs an in-progress login a retry).
"""

from __future__ import annotations

import ipaddress
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tgateway.errors import Unauthorized
from tgateway.nostr.event import Event, EventError, parse_event

__all__ = [
    "LOGIN_KINDS",
    "LOGIN_PATH",
    "Challenge",
    "ChallengeStore",
    "LoginBinding",
    "server_key",
    "verify_login_event",
]

LOGIN_KINDS = (22242, 27235)
LOGIN_PATH = "/api/auth/login"
#: the tags that name the server a login event is meant for (NIP-42 and NIP-98)
SERVER_TAGS = ("relay", "u")


def server_key(url: str) -> tuple[bool, str, int, str] | None:
    """``(secure, host, port, path)`` of an absolute ``http``/``https``/``ws``/``wss`` URL,
    normalised for comparison (see the module docstring); None for anything else."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "ws", "wss"):
        return None
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        return None
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return None
    try:
        host = ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    secure = scheme in ("https", "wss")
    return secure, host, port or (443 if secure else 80), parts.path.rstrip("/")


@dataclass(frozen=True)
class LoginBinding:
    """The server a login event must name: ``base_url`` (the gateway's public URL) or
    ``login_url`` (``base_url`` + ``/api/auth/login``)."""

    base_url: str

    @property
    def login_url(self) -> str:
        return self.base_url.rstrip("/") + LOGIN_PATH

    def names_us(self, url: str) -> bool:
        key = server_key(url)
        return key is not None and key in (server_key(self.base_url), server_key(self.login_url))

    def check(self, event: Event) -> None:
        """Raise :class:`Unauthorized` unless ``event``'s ``relay``/``u`` tags name this gateway
        (at least one, and every one of them)."""
        named = [v for name in SERVER_TAGS for v in event.tag_values(name)]
        if not named:
            raise Unauthorized(
                f"login event names no server: sign it with a relay tag of {self.base_url}"
                f" (kind 22242) or a u tag of {self.login_url} (kind 27235)",
                code="login_unbound",
            )
        for value in named:
            if not self.names_us(value):
                raise Unauthorized(
                    f"login event is for another server ({value[:200]}), not {self.base_url}",
                    code="wrong_server",
                )


@dataclass(frozen=True)
class Challenge:
    value: str
    expires_at: float


class ChallengeStore:
    """One-time login challenges that expire after ``ttl`` seconds (at most ``max_outstanding``;
    the oldest are dropped first when more are issued)."""

    def __init__(
        self,
        ttl: float = 300.0,
        max_outstanding: int = 10_000,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.ttl = ttl
        self.max_outstanding = max_outstanding
        self._random = random_bytes
        self._challenges: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._challenges)

    def _expire(self, now: float) -> None:
        while self._challenges:
            value, expires = next(iter(self._challenges.items()))
            if expires > now and len(self._challenges) < self.max_outstanding:
                break
            del self._challenges[value]

    def issue(self, now: float) -> Challenge:
        """A new random challenge (64 hex characters)."""
        self._expire(now)
        value = self._random(32).hex()
        self._challenges[value] = now + self.ttl
        return Challenge(value, now + self.ttl)

    def is_valid(self, value: str, now: float) -> bool:
        expires = self._challenges.get(value)
        return expires is not None and expires > now

    def consume(self, value: str, now: float) -> bool:
        """Use ``value`` up; False when it is unknown, expired or already used."""
        expires = self._challenges.pop(value, None)
        return expires is not None and expires > now


def verify_login_event(
    obj: object,
    *,
    challenges: ChallengeStore,
    binding: LoginBinding,
    now: float,
    window: float = 300.0,
) -> Event:
    """Check a login event (a JSON-decoded object) and consume its challenge; returns the event,
    whose ``pubkey`` is the user's. Raises :class:`Unauthorized` naming the failed check (code
    ``wrong_server`` or ``login_unbound`` when the event is not bound to ``binding``)."""
    try:
        event = parse_event(obj)
    except EventError as e:
        raise Unauthorized(f"login event is {e.message}") from None
    if event.kind not in LOGIN_KINDS:
        raise Unauthorized(f"login event must be kind 22242 or 27235, not {event.kind}")
    if abs(now - event.created_at) > window:
        raise Unauthorized(f"login event created_at is more than {window:g} s from now")
    binding.check(event)
    challenge = event.first_tag("challenge")
    if challenge is None:
        raise Unauthorized("login event has no challenge tag")
    if not challenges.consume(challenge, now):
        raise Unauthorized("login challenge is unknown, expired or already used")
    return event
