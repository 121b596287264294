"""NIP-46 client: bunker URLs, and a session with an in-memory signer over the fake relay."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from tgateway.nostr.event import EventTemplate, public_key_hex, sign
from tgateway.nostr.nip46 import (
    BunkerClient,
    BunkerPointer,
    Nip46AuthUrl,
    Nip46Error,
    Nip46Rejected,
    Nip46Timeout,
    parse_bunker_url,
)

from .fakerelay import FakeRelay
from .fakesigner import FakeSigner
from .test_pool import PoolTestMixin

SIGNER = b"\x66" * 32
USER = b"\x77" * 32
SIGNER_PUB = public_key_hex(SIGNER)


class BunkerUrlTests(SynchronousTestCase):
    def test_parse(self) -> None:
        url = f"bunker://{SIGNER_PUB}?relay=wss%3A%2F%2Fr1.example&relay=ws://127.0.0.1:7777&secret=s3"
        self.assertEqual(  # where the relays are is the guard's business (test_nip46_login)
            parse_bunker_url(url),
            BunkerPointer(SIGNER_PUB, ("wss://r1.example", "ws://127.0.0.1:7777"), "s3"),
        )
        self.assertEqual(
            parse_bunker_url(f"bunker://{SIGNER_PUB.upper()}?relay=wss://r&relay=wss://r"),
            BunkerPointer(SIGNER_PUB, ("wss://r",), None),
        )

    def test_bad(self) -> None:
        for url in (
            f"nostrconnect://{SIGNER_PUB}?relay=wss://r",
            "bunker://abc?relay=wss://r",
            f"bunker://{SIGNER_PUB}",
            f"bunker://{SIGNER_PUB}?relay=https://r",
            f"bunker://{SIGNER_PUB}?" + "&".join(f"relay=wss://r{i}" for i in range(9)),
            "bunker://" + "a" * 5000,
        ):
            with self.assertRaises(Nip46Error, msg=url):
                parse_bunker_url(url)


class BunkerClientTests(PoolTestMixin):
    def setUp(self) -> None:
        self.relay = FakeRelay("ws://bunker.test")
        self.pool = self.make_pool(self.relay)
        self.clock.advance(1_700_000_000)

    def client(self, secret: str | None = None, **kw: Any) -> BunkerClient:
        pointer = BunkerPointer(SIGNER_PUB, (self.relay.url,), secret)
        client = BunkerClient(self.pool, pointer, self.clock, timeout=10, **kw)
        client.start()
        self.addCleanup(client.close)
        self.flush()
        return client

    def test_login_flow(self) -> None:
        signer = FakeSigner(self.relay, SIGNER, USER, secret="s3")
        client = self.client(secret="s3")
        self.assertIsNone(self.successResultOf(self.drive(client.connect())))
        self.assertEqual(
            self.successResultOf(self.drive(client.get_public_key())), public_key_hex(USER)
        )
        template = EventTemplate(kind=22242, created_at=1_700_000_000, tags=(("challenge", "c1"),))
        event = self.successResultOf(self.drive(client.sign_event(template)))
        self.assertEqual(
            (event.pubkey, event.kind, event.first_tag("challenge")),
            (public_key_hex(USER), 22242, "c1"),
        )
        self.successResultOf(self.drive(client.ping()))
        self.assertEqual(
            [r["method"] for r in signer.requests],
            ["connect", "get_public_key", "sign_event", "ping"],
        )
        self.assertEqual(signer.requests[0]["params"], [SIGNER_PUB, "s3"])

    def test_wrong_secret_refused(self) -> None:
        FakeSigner(self.relay, SIGNER, USER, secret="right")
        client = self.client(secret="wrong")
        failure = self.failureResultOf(self.drive(client.connect()), Nip46Rejected)
        self.assertIn("bad secret", str(failure.value))

    def test_silent_signer_times_out(self) -> None:
        FakeSigner(self.relay, SIGNER, USER, mode="silent")
        client = self.client()
        d = self.drive(client.connect())
        self.assertNoResult(d)
        self.clock.advance(10)
        self.failureResultOf(d, Nip46Timeout)

    def test_auth_url_raised_without_callback(self) -> None:
        FakeSigner(self.relay, SIGNER, USER, mode="auth_url")
        client = self.client()
        template = EventTemplate(kind=22242, created_at=1, tags=(("challenge", "c"),))
        failure = self.failureResultOf(self.drive(client.sign_event(template)), Nip46AuthUrl)
        self.assertEqual(failure.value.url, "https://signer.test/approve")

    def test_auth_url_callback_then_answer(self) -> None:
        signer = FakeSigner(self.relay, SIGNER, USER, mode="auth_url")
        urls: list[str] = []
        client = self.client(on_auth_url=urls.append)
        template = EventTemplate(kind=22242, created_at=1, tags=(("challenge", "c"),))
        d = self.drive(client.sign_event(template))
        self.assertNoResult(d)
        self.assertEqual(urls, ["https://signer.test/approve"])
        signer.approve()
        self.flush()
        self.assertEqual(self.successResultOf(d).pubkey, public_key_hex(USER))

    def test_tampered_or_refused(self) -> None:
        signer = FakeSigner(self.relay, SIGNER, USER, mode="tamper")
        client = self.client()
        template = EventTemplate(kind=1, created_at=1, content="x")
        self.failureResultOf(self.drive(client.sign_event(template)), Nip46Rejected)
        signer.mode = "refuse"
        failure = self.failureResultOf(self.drive(client.ping()), Nip46Rejected)
        self.assertIn("user said no", str(failure.value))

    def test_answers_from_others_ignored(self) -> None:
        FakeSigner(self.relay, SIGNER, USER, mode="silent")
        client = self.client()
        d = self.drive(client.ping())
        session = self.pool.relay(self.relay.url)
        # an impostor's event p-tagged to us: it does not match the subscription (authors)
        impostor = sign(
            EventTemplate(
                kind=24133, created_at=1, tags=(("p", client.client_pubkey),), content="x"
            ),
            b"\x99" * 32,
        )
        [sub_id] = self.relay.connections[0].subs
        self.relay.inject(json.dumps(["EVENT", sub_id, impostor.to_json()]))  # a lying relay
        self.assertEqual(session.dropped, 1)
        # the signer's key but garbage content: dropped by the client, no crash
        garbage = sign(
            EventTemplate(
                kind=24133, created_at=1, tags=(("p", client.client_pubkey),), content="x"
            ),
            SIGNER,
        )
        self.relay.deliver(garbage)
        self.flush()
        self.assertNoResult(d)
        self.clock.advance(10)
        self.failureResultOf(d, Nip46Timeout)

    def test_aclose_removes_relays_it_added(self) -> None:
        other = FakeRelay("ws://configured.test")
        self.relays[other.url] = other
        from .fakerelay import MemoryRelayEndpoint

        self.endpoints[other.url] = MemoryRelayEndpoint(other)
        self.pool.relay(other.url)  # already in the pool: must stay
        pointer = BunkerPointer(SIGNER_PUB, (self.relay.url, other.url), None)
        client = BunkerClient(self.pool, pointer, self.clock)
        client.start()
        self.flush()
        self.successResultOf(self.drive(client.aclose()))
        self.assertEqual(self.pool.urls, [other.url])

    def test_close_cancels_waits(self) -> None:
        FakeSigner(self.relay, SIGNER, USER, mode="silent")
        client = self.client()
        d: Deferred[Any] = self.drive(client.ping())
        client.close()
        self.flush()
        self.failureResultOf(d)
        self.assertEqual(self.relay.connections[0].subs, {})
