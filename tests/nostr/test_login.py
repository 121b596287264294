"""Login challenges and the check of the signed login event, including its binding to this
gateway (a ``relay`` or ``u`` tag naming the gateway's public URL or login URL)."""

from __future__ import annotations

import itertools
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tgateway.errors import Unauthorized
from tgateway.nostr.event import EventTemplate, sign
from tgateway.nostr.login import ChallengeStore, LoginBinding, server_key, verify_login_event

KEY = b"\x11" * 32
NOW = 1_700_000_000.0
GATEWAY = LoginBinding("https://gw.example")
BOUND = {22242: ("relay", "https://gw.example"), 27235: ("u", "https://gw.example/api/auth/login")}


def counter_bytes() -> Any:
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


class LoginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = ChallengeStore(ttl=300, random_bytes=counter_bytes())

    def event(
        self,
        challenge: str | None,
        kind: int = 22242,
        created_at: float = NOW,
        server: tuple[str, ...] | None = None,
    ) -> dict[str, Any]:
        tags = [list(server if server is not None else BOUND.get(kind, BOUND[22242]))]
        if not tags[0]:
            tags = []
        if challenge:
            tags.append(["challenge", challenge])
        return sign(EventTemplate(kind=kind, created_at=int(created_at), tags=tags), KEY).to_json()

    def refused(self, obj: object, words: str, now: float = NOW, code: str | None = None) -> None:
        with self.assertRaises(Unauthorized) as cm:
            verify_login_event(obj, challenges=self.store, binding=GATEWAY, now=now)
        self.assertIn(words, cm.exception.message)
        if code is not None:
            self.assertEqual(cm.exception.code, code)

    def test_accepts_both_kinds_once(self) -> None:
        for kind in (22242, 27235):
            c = self.store.issue(NOW)
            self.assertEqual(len(c.value), 64)
            self.assertEqual(c.expires_at, NOW + 300)
            event = verify_login_event(
                self.event(c.value, kind), challenges=self.store, binding=GATEWAY, now=NOW + 10
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
        verify_login_event(self.event(c.value), challenges=self.store, binding=GATEWAY, now=NOW)

    def test_events_for_another_server_or_none_are_refused(self) -> None:
        c = self.store.issue(NOW)
        foreign = (
            (22242, ("relay", "wss://evil.relay.example")),  # a relay passing our challenge on
            (22242, ("relay", "wss://gw.example.evil.example")),
            (22242, ("relay", "https://gw.example:8443")),  # another port
            (22242, ("relay", "http://gw.example")),  # not the same security
            (22242, ("relay", "https://gw.example/other")),  # another path on the host
            (22242, ("relay", "https://user@gw.example")),
            (22242, ("relay", "https://gw.example/?x=1")),
            (22242, ("relay", "gw.example")),  # not a URL
            (27235, ("u", "https://evil.example/api/auth/login")),
            (27235, ("u", "https://gw.example/api/upload")),  # another route
        )
        for kind, tag in foreign:
            self.refused(self.event(c.value, kind, server=tag), "another server", code="wrong_server")
        # naming us and another server at once is not naming us
        both = sign(EventTemplate(kind=22242, created_at=int(NOW), tags=(
            ("relay", "https://gw.example"), ("relay", "wss://evil.example"),
            ("challenge", c.value))), KEY).to_json()
        self.refused(both, "another server", code="wrong_server")
        for kind in (22242, 27235):
            self.refused(self.event(c.value, kind, server=()), "names no server",
                         code="login_unbound")
        # still unused: the correctly bound event gets it
        verify_login_event(self.event(c.value), challenges=self.store, binding=GATEWAY, now=NOW)

    def test_normalised_spellings_of_our_url_are_accepted(self) -> None:
        for tag in (
            ("relay", "https://gw.example"),
            ("relay", "https://gw.example/"),
            ("relay", "HTTPS://GW.Example:443/"),
            ("relay", "wss://gw.example"),  # a NIP-42 client writes the WebSocket scheme
            ("relay", "https://gw.example./api/auth/login"),
            ("u", "https://gw.example/api/auth/login"),
            ("u", "https://gw.example/api/auth/login/"),
        ):
            c = self.store.issue(NOW)
            event = verify_login_event(self.event(c.value, 22242, server=tag),
                                       challenges=self.store, binding=GATEWAY, now=NOW)
            self.assertEqual(event.first_tag("challenge"), c.value, tag)
        local = LoginBinding("http://[::1]:9877/gw")
        self.assertTrue(local.names_us("ws://[0:0::1]:9877/gw/"))
        self.assertFalse(local.names_us("ws://[::1]:9877/"))
        self.assertEqual(server_key("ws://Example.org"), (False, "example.org", 80, ""))
        self.assertIsNone(server_key("ftp://example.org"))

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
