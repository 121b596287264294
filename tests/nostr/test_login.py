"""Login challenges and the check of the signed login event."""

from __future__ import annotations

import itertools
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tgateway.errors import Unauthorized
from tgateway.nostr.event import EventTemplate, sign
from tgateway.nostr.login import ChallengeStore, verify_login_event

KEY = b"\x11" * 32
NOW = 1_700_000_000.0


def counter_bytes() -> Any:
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


class LoginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = ChallengeStore(ttl=300, random_bytes=counter_bytes())

    def event(
        self, challenge: str | None, kind: int = 22242, created_at: float = NOW
    ) -> dict[str, Any]:
        tags = [["challenge", challenge]] if challenge else [["relay", "wss://gw"]]
        return sign(EventTemplate(kind=kind, created_at=int(created_at), tags=tags), KEY).to_json()

    def refused(self, obj: object, words: str, now: float = NOW) -> None:
        with self.assertRaises(Unauthorized) as cm:
            verify_login_event(obj, challenges=self.store, now=now)
        self.assertIn(words, cm.exception.message)

    def test_accepts_both_kinds_once(self) -> None:
        for kind in (22242, 27235):
            c = self.store.issue(NOW)
            self.assertEqual(len(c.value), 64)
            self.assertEqual(c.expires_at, NOW + 300)
            event = verify_login_event(
                self.event(c.value, kind), challenges=self.store, now=NOW + 10
            )
            self.assertEqual(event.kind, kind)
            self.refused(self.event(c.value, kind), "already used", now=NOW + 11)

    def test_refusals(self) -> None:
        c = self.store.issue(NOW)
        forged = dict(self.event(c.value), sig="00" * 64)
        self.refused(forged, "bad signature")
        self.refused({"kind": 22242}, "login event is invalid")
        self.refused(self.event(c.value, kind=1), "kind 22242 or 27235")
        self.refused(self.event(c.value, created_at=NOW - 301), "created_at")
        self.refused(self.event(None), "no challenge tag")
        self.refused(self.event("ff" * 32), "unknown")
        # every refusal above left the challenge usable
        verify_login_event(self.event(c.value), challenges=self.store, now=NOW)

    def test_expiry_and_bound(self) -> None:
        c = self.store.issue(NOW)
        self.assertTrue(self.store.is_valid(c.value, NOW + 299))
        self.refused(self.event(c.value, created_at=NOW + 300), "expired", now=NOW + 300)
        small = ChallengeStore(ttl=300, max_outstanding=2)
        first = small.issue(NOW)
        small.issue(NOW)
        small.issue(NOW)
        self.assertEqual(len(small), 2)
        self.assertFalse(small.is_valid(first.value, NOW))
