"""NIP-46 login attempts (Nip46Logins) with an in-memory signer over the fake relay."""

from __future__ import annotations

import json
from typing import Any

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


class Nip46LoginTests(PoolTestMixin):
    def setUp(self) -> None:
        self.relay = FakeRelay("ws://bunker.test")
        self.pool = self.make_pool(self.relay)
        self.clock.advance(1_700_000_000)

    def logins(self, **kw: Any) -> Nip46Logins:
        kw.setdefault("timeout", 10)
        logins = Nip46Logins(self.pool, self.clock, binding=LoginBinding(GATEWAY_URL),
                             random_bytes=lambda n: b"\x01" * n, **kw)
        return logins

    def settle(self, rounds: int = 10) -> None:
        for _ in range(rounds):
            self.flush()
            self.clock.advance(0)

    def bunker(self, secret: str = "") -> str:
        return f"bunker://{SIGNER_PUB}?relay={self.relay.url}" + (f"&secret={secret}" if secret else "")

    def test_login_succeeds_and_drops_the_bunker_relay(self) -> None:
        signer = FakeSigner(self.relay, SIGNER, USER, secret="s3")
        logins = self.logins()
        attempt = logins.start(self.bunker("s3"))
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

    def test_signatures_for_another_server_or_none_are_refused(self) -> None:
        for mode, words in (("rebind", "different event"), ("unbind", "different event")):
            signer = FakeSigner(self.relay, SIGNER, USER, mode=mode)
            attempt = self.logins().start(self.bunker())
            self.settle()
            self.assertTrue(attempt.finished, mode)
            self.assertIsNone(attempt.pubkey, mode)
            self.assertIn(words, str(attempt.error))
            self.relay.on_store.remove(signer.handle)

    def test_auth_url_then_approval(self) -> None:
        signer = FakeSigner(self.relay, SIGNER, USER, mode="auth_url")
        attempt = self.logins().start(self.bunker())
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
        attempt = self.logins().start(self.bunker())
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
            attempt = self.logins().start(self.bunker())
            self.settle()
            self.assertTrue(attempt.finished)
            self.assertIsNone(attempt.pubkey)
            self.assertIn(words, str(attempt.error))
            self.relay.on_store.remove(relay_signer.handle)

    def test_bad_url_busy_and_private_relays(self) -> None:
        logins = self.logins(max_running=1)
        with self.assertRaises(Nip46Error):
            logins.start("bunker://nothex?relay=wss://r.example")
        with self.assertRaises(Nip46Error):
            logins.start(f"bunker://{SIGNER_PUB}?relay=ws://127.0.0.1:7777")
        FakeSigner(self.relay, SIGNER, USER, mode="silent")
        logins.start(self.bunker())
        with self.assertRaises(Nip46Busy):
            logins.start(self.bunker())
        self.clock.advance(10)
        self.settle()
        self.assertEqual(logins.running(), 0)

    def test_concurrent_attempts_share_the_relay(self) -> None:
        FakeSigner(self.relay, SIGNER, USER, mode="silent")
        logins = Nip46Logins(self.pool, self.clock, binding=LoginBinding(GATEWAY_URL), timeout=10)
        first = logins.start(self.bunker())
        self.clock.advance(5)
        second = logins.start(self.bunker())
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
        attempt: Nip46Attempt = logins.start(self.bunker())
        self.settle()
        self.successResultOf(self.drive(logins.stop()))
        self.settle()
        self.assertTrue(attempt.finished)
        self.assertIn("cancelled", str(attempt.error))

    def test_finished_attempts_expire(self) -> None:
        FakeSigner(self.relay, SIGNER, USER)
        logins = self.logins(keep_finished=60)
        attempt = logins.start(self.bunker())
        self.settle()
        self.assertTrue(attempt.finished)
        self.clock.advance(61)
        self.assertIsNone(logins.get(attempt.id))
