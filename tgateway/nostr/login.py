"""Sign-in with a signed event (NIP-07 browser extensions, or a NIP-46 signer): challenges and
the check of the event that answers one.

``GET /api/auth/challenge`` hands out :meth:`ChallengeStore.issue`; ``POST /api/auth/login`` passes
the signed event to :func:`verify_login_event`, which checks, in order: the event itself
(:func:`tgateway.nostr.event.parse_event`), kind 22242 (NIP-42 style) or 27235 (NIP-98 style),
``created_at`` within ``window`` seconds of now, a ``challenge`` tag, and that the challenge was
issued here, has not expired and was not used before (it is consumed only when every other
check passed). Failures raise :class:`tgateway.errors.Unauthorized` with the reason.

Pure: time and randomness are injected. Challenges live in memory (one process; they are
short-lived, so a restart only costs an in-progress login a retry).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from tgateway.errors import Unauthorized
from tgateway.nostr.event import Event, EventError, parse_event

__all__ = ["LOGIN_KINDS", "Challenge", "ChallengeStore", "verify_login_event"]

LOGIN_KINDS = (22242, 27235)


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
    obj: object, *, challenges: ChallengeStore, now: float, window: float = 300.0
) -> Event:
    """Check a login event (a JSON-decoded object) and consume its challenge; returns the event,
    whose ``pubkey`` is the user's. Raises :class:`Unauthorized` naming the failed check."""
    try:
        event = parse_event(obj)
    except EventError as e:
        raise Unauthorized(f"login event is {e.message}") from None
    if event.kind not in LOGIN_KINDS:
        raise Unauthorized(f"login event must be kind 22242 or 27235, not {event.kind}")
    if abs(now - event.created_at) > window:
        raise Unauthorized(f"login event created_at is more than {window:g} s from now")
    challenge = event.first_tag("challenge")
    if challenge is None:
        raise Unauthorized("login event has no challenge tag")
    if not challenges.consume(challenge, now):
        raise Unauthorized("login challenge is unknown, expired or already used")
    return event
