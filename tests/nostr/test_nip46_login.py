"""NIP-46 login attempts (Nip46Logins) with an in-memory signer over the fake relay.

The bunker relay is reached through the outgoing-connection guard (a fake resolver maps its
name; the guard's TCP endpoint is the in-memory one), as in production.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, succeed

from tgateway.netguard import OutgoingGuard
from tgateway.nostr.event import public_key_hex
from tgateway.nostr.login import LoginBinding
from tgateway.nostr.nip46 import Nip46Error
from tgateway.nostr.nip46_login import Nip46Attempt, Nip46Busy, Nip46Logins

from .fakerelay import FakeRelay
from .fakesigner import FakeSigner
from .test_pool import PoolTestMixin

SIGNER = b"\x66" * 32
USER = b"\x77" * 32
SIGNER_PUB = public_key_hex(SIGNER)
GATEWAY_URL = "https://gw.example"
# what the fake resolver answers (getaddrinfo reads the numeric forms the same way)
DNS = {"bunker.test": ["93.184.215.14"], "2130706433": ["127.0.0.1"], "127.1": ["127.0.0.1"],
       "0x7f000001": ["127.0.0.1"], "017700000001": ["127.0.0.1"], "localhost": ["127.0.0.1"],
       "rebind.test": ["93.184.215.14", "10.0.0.7"]}


class Nip46LoginTests(PoolTestMixin):
    def setUp(self) -> None:
        self.relay = FakeRelay("ws://bunker.test")
        self.pool = self.make_pool(self.relay)
        self.clock.advance(1_700_000_000)
        self.resolved: list[str] = []

    def guard(self, allow_private: bool = False) -> OutgoingGuard:
        def resolve(host: str, port: int) -> Any:
            self.resolved.append(host)
            return succeed(DNS.get(host, []))

        return OutgoingGuard(self.clock, allow_private=allow_private, resolver=resolve,
                             tcp_endpoint=lambda address, port: self.endpoints[self.relay.url])

    def logins(self, allow_private: bool = False, **kw: Any) -> Nip46Logins:
        kw.setdefault("timeout", 10)
        kw.setdefault("random_bytes", lambda n: b"\x01" * n)
        return Nip46Logins(self.pool, self.clock, guard=self.guard(allow_private),
                           binding=LoginBinding(GATEWAY_URL), **kw)

    def start(self, logins: Nip46Logins, url: str) -> Nip46Attempt:
        """Start an attempt (the fake resolver answers at once); nothing flows until settle()."""
        attempt: Nip46Attempt = self.successResultOf(Deferred.fromCoroutine(logins.start(url)))
        return attempt

    def settle(self, rounds: int = 10) -> None:
        for _ in range(rounds):
            self.flush()
            self.clock.advance(0)

    def bunker(self, secret: str = "", relay: str | None = None) -> str:
        url = f"bunker://{SIGNER_PUB}?relay={relay or self.relay.url}"
        return url + (f"&secret={secret}" if secret else "")

    def test_login_succeeds_and_drops_the_bunker_relay(self) -> None:
        signer = FakeSigner(self.relay, SIGNER, USER, secret="s3")
        logins = self.logins()
        attempt = self.start(logins, self.bunker("s3"))
        changed = attempt.next_change()
        self.settle()
        self.assertTrue(attempt.finished)
        self.successResultOf(changed)
        self.assertEqual(attempt.pubkey, public_key_hex(USER))
        self.assertIsNone(attempt.error)
        self.assertEqual([r["method"] for r in signer.requests],
                         ["connect", "get_public_key", "sign_event"])
        # the event the signer is asked to sign names this gateway
        template = json.loads(signer.requests[2]["params"][0])
        self.assertEqual(template["kind"], 22242)
        self.assertIn(["relay", GATEWAY_URL], template["tags"])
        self.assertIs(logins.get(attempt.id), attempt)
        self.assertNotIn(self.relay.url, self.pool.urls)
        self.assertEqual(self.resolved, ["bunker.test", "bunker.test"])  # checked, then connected

    def test_signatures_for_another_server_or_none_are_refused(self) -> None:
        for mode, words in (("rebind", "different event"), ("unbind", "different event")):
            signer = FakeSigner(self.relay, SIGNER, USER, mode=mode)
            attempt = self.start(self.logins(), self.bunker())
            self.settle()
            self.assertTrue(attempt.finished, mode)
            self.assertIsNone(attempt.pubkey, mode)
            self.assertIn(words, str(attempt.error))
            self.relay.on_store.remove(signer.handle)

    def test_auth_url_then_approval(self) -> None:
        signer = FakeSigner(self.relay, SIGNER, USER, mode="auth_url")
        attempt = self.start(self.logins(), self.bunker())
        changed = attempt.next_change()
        self.settle()
        self.successResultOf(changed)
        self.assertFalse(attempt.finished)
        self.assertEqual(attempt.auth_url, "https://signer.test/approve")
        ended = attempt.next_change()
        signer.approve()
        self.settle()
        self.successResultOf(ended)
        self.assertEqual(attempt.pubkey, public_key_hex(USER))

    def test_silent_signer_times_out(self) -> None:
        FakeSigner(self.relay, SIGNER, USER, mode="silent")
        attempt = self.start(self.logins(), self.bunker())
        self.settle()
        self.assertFalse(attempt.finished)
        self.clock.advance(10)
        self.settle()
        self.assertTrue(attempt.finished)
        self.assertIsNone(attempt.pubkey)
        self.assertIn("did not answer connect within 10 s", str(attempt.error))

    def test_refused_and_tampered(self) -> None:
        for mode, words in (("refuse", "user said no"), ("tamper", "different event")):
            relay_signer = FakeSigner(self.relay, SIGNER, USER, mode=mode)
            attempt = self.start(self.logins(), self.bunker())
            self.settle()
            self.assertTrue(attempt.finished)
            self.assertIsNone(attempt.pubkey)
            self.assertIn(words, str(attempt.error))
            self.relay.on_store.remove(relay_signer.handle)

    def test_bad_url_and_busy(self) -> None:
        logins = self.logins(max_running=1)
        self.failureResultOf(self.drive(logins.start("bunker://nothex?relay=wss://r.example")),
                             Nip46Error)
        FakeSigner(self.relay, SIGNER, USER, mode="silent")
        self.start(logins, self.bunker())
        self.failureResultOf(self.drive(logins.start(self.bunker())), Nip46Busy)
        self.clock.advance(10)
        self.settle()
        self.assertEqual(logins.running(), 0)

    def test_private_relays_refused_before_any_connection(self) -> None:
        logins = self.logins()
        endpoint = self.endpoints[self.relay.url]
        for relay in ("ws://127.0.0.1:7777", "ws://2130706433:7777", "ws://127.1:7777",
                      "ws://0x7f000001/", "ws://017700000001/", "ws://localhost:7777",
                      "wss://relay.localhost", "ws://[::1]:80", "wss://[::ffff:10.0.0.1]",
                      "wss://169.254.169.254", "wss://rebind.test"):
            failure = self.failureResultOf(
                self.drive(logins.start(self.bunker(relay=relay))), Nip46Error)
            self.assertIn("local or private address", str(failure.value), relay)
        self.assertEqual(self.pool.urls, [])
        self.assertEqual(endpoint.attempts, 0)
        self.assertEqual(logins.running(), 0)
        # with nostr.allow_private_bunker_relays, the same forms go through the guard
        allowed = self.logins(allow_private=True)
        FakeSigner(self.relay, SIGNER, USER)
        attempt = self.start(allowed, self.bunker(relay="ws://2130706433:7777"))
        self.settle()
        self.assertEqual(attempt.pubkey, public_key_hex(USER))
        self.assertEqual(endpoint.attempts, 1)

    def test_unreachable_relay_ends_the_login_at_once(self) -> None:
        self.relay.down = True
        attempt = self.start(self.logins(), self.bunker())
        self.settle()
        self.assertTrue(attempt.finished)
        self.assertIsNone(attempt.pubkey)
        self.assertIn("cannot reach the remote signer's relays", str(attempt.error))
        self.assertIn("connection refused", str(attempt.error))
        self.assertNotIn(self.relay.url, self.pool.urls)

    def test_concurrent_attempts_share_the_relay(self) -> None:
        FakeSigner(self.relay, SIGNER, USER, mode="silent")
        logins = self.logins()
        first = self.start(logins, self.bunker())
        self.settle()
        self.clock.advance(5)
        second = self.start(logins, self.bunker())
        self.settle()
        self.clock.advance(5)  # the first times out; the relay stays for the second
        self.settle()
        self.assertTrue(first.finished)
        self.assertFalse(second.finished)
        self.assertIn(self.relay.url, self.pool.urls)
        self.clock.advance(5)  # the second ends too: the last user drops the relay
        self.settle()
        self.assertTrue(second.finished)
        self.assertNotIn(self.relay.url, self.pool.urls)

    def test_stop_cancels_running_attempts(self) -> None:
        FakeSigner(self.relay, SIGNER, USER, mode="silent")
        logins = self.logins()
        attempt = self.start(logins, self.bunker())
        self.settle()
        self.successResultOf(self.drive(logins.stop()))
        self.settle()
        self.assertTrue(attempt.finished)
        self.assertIn("cancelled", str(attempt.error))

    def test_finished_attempts_expire(self) -> None:
        FakeSigner(self.relay, SIGNER, USER)
        logins = self.logins(keep_finished=60)
        attempt = self.start(logins, self.bunker())
        self.settle()
        self.assertTrue(attempt.finished)
        self.clock.advance(61)
        self.assertIsNone(logins.get(attempt.id))
