"""A banned key gets no principal and no session, however it proves who it is: a session it
already had, a NIP-98 header, a NIP-07 or a NIP-46 login, a Blossom token (403 ``banned``); lifted,
each works again."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.blossom import tokens
from tests.web.test_users_auth import PUB, FakeRequest, nip98
from tgateway.blossom.auth import BlossomAuthenticator
from tgateway.http.auth import Banned
from tgateway.nostr.login import LoginBinding
from tgateway.nostr.nip46_login import Nip46Attempt
from tgateway.storage.auth_sessions import SessionStore
from tgateway.storage.db import SyncDatabase
from tgateway.web.auth import AuthApi, RequestAuthenticator


class Bans:
    def __init__(self) -> None:
        self.keys: set[str] = set()

    def is_banned(self, pubkey: str) -> bool:
        return pubkey in self.keys


class FakeNip46:
    """A NIP-46 login that ends at once with ``pubkey``."""

    def __init__(self, pubkey: str) -> None:
        self.pubkey = pubkey

    async def start(self, url: str) -> Nip46Attempt:
        attempt = Nip46Attempt("login1", 0.0)
        attempt.pubkey = self.pubkey
        attempt.ended_at = 1.0
        return attempt

    def get(self, login_id: str) -> None:
        return None


class BanTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.db = SyncDatabase()
        self.db.open()
        self.addCleanup(self.db.close)
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.bans = Bans()
        self.sessions = SessionStore(self.db, ttl=3600)
        self.auth = RequestAuthenticator(sessions=self.sessions, clock=self.clock,
                                         base_url="https://gw.example", bans=self.bans)

    def principal(self, request: FakeRequest) -> Deferred[Any]:
        return Deferred.fromCoroutine(self.auth.authenticate(request))

    def test_session_and_nip98(self) -> None:
        token, _ = self.successResultOf(Deferred.fromCoroutine(
            self.sessions.create(PUB, "nip07", self.clock.seconds())))
        bearer = FakeRequest(b"GET", b"/x", {b"Authorization": b"Bearer " + token.encode()})
        header = nip98("https://gw.example/x", "GET", int(self.clock.seconds()))
        self.assertEqual(self.successResultOf(self.principal(bearer)).pubkey, PUB)
        self.bans.keys.add(PUB)
        err = self.failureResultOf(self.principal(bearer), Banned).value
        self.assertEqual((err.status, err.code), (403, "banned"))
        self.failureResultOf(self.principal(
            FakeRequest(b"GET", b"/x", {b"Authorization": header})), Banned)
        self.bans.keys.clear()
        self.assertEqual(self.successResultOf(self.principal(bearer)).pubkey, PUB)

    def test_nip46_login(self) -> None:
        api = AuthApi(auth=self.auth, sessions=self.sessions, clock=self.clock,
                      login_attempts_per_minute=600, login_burst=100,
                      binding=LoginBinding("https://gw.example"),
                      nip46=FakeNip46(PUB))  # type: ignore[arg-type]
        client = StubTreq(api.app.resource())

        def login() -> tuple[int, Any]:
            d = client.post("https://gw.example/api/auth/login", data=json.dumps(
                {"auth_type": "nip46", "bunker_url": "bunker://x"}).encode())
            response = self.successResultOf(d)
            body = self.successResultOf(response.json())
            return response.code, body

        self.bans.keys.add(PUB)
        code, body = login()
        self.assertEqual((code, body["error"]), (403, "banned"))
        count = self.db.run_sync(lambda c: c.execute("SELECT count(*) FROM auth_sessions")
                                 .fetchone()[0])
        self.assertEqual(count, 0)  # no session was created
        self.bans.keys.clear()
        code, body = login()
        self.assertEqual((code, body["pubkey"]), (200, PUB))

    def test_blossom_token(self) -> None:
        blossom = BlossomAuthenticator(clock=self.clock, domain="blossom.example",
                                       bans=self.bans)
        event = tokens.make_event("upload", hashes=("ab" * 32,),
                                  created_at=int(self.clock.seconds()) - 1,
                                  expiration=int(self.clock.seconds()) + 60)
        header = tokens.encode(event).encode()
        request = FakeRequest(b"PUT", b"/upload", {b"Authorization": header})
        self.bans.keys.add(event["pubkey"])
        err = self.failureResultOf(Deferred.fromCoroutine(
            blossom.authenticate(request, "upload")), Banned).value
        self.assertEqual((err.status, err.code), (403, "banned"))
        self.bans.keys.clear()
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(
            blossom.authenticate(request, "upload"))).pubkey, event["pubkey"])
