"""Sessions (hashed, expiring) and the request authenticator, in memory."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tgateway.errors import Unauthorized
from tgateway.http.auth import Principal, Proof
from tgateway.nostr.event import EventTemplate, public_key_hex, sign
from tgateway.storage.auth_sessions import SessionStore, hash_token
from tgateway.storage.db import SyncDatabase
from tgateway.web.auth import RequestAuthenticator

KEY = b"\x42" * 32
PUB = public_key_hex(KEY)


class FakeRequest:
    def __init__(self, method: bytes, uri: bytes, headers: dict[bytes, bytes], body: bytes = b"",
                 streamed: bool = False) -> None:
        self.method = method
        self.uri = uri
        self._headers = {k.lower(): v for k, v in headers.items()}
        self.content = io.BytesIO(body)
        if streamed:
            self.body_stream = object()

    def getHeader(self, name: bytes) -> bytes | None:
        return self._headers.get(name.lower())

    def isSecure(self) -> bool:
        return False


def nip98(url: str, method: str, created_at: int, payload: bytes | None = None) -> bytes:
    tags: list[tuple[str, ...]] = [("u", url), ("method", method)]
    if payload is not None:
        tags.append(("payload", hashlib.sha256(payload).hexdigest()))
    event = sign(EventTemplate(kind=27235, created_at=created_at, tags=tuple(tags)), KEY)
    return b"Nostr " + base64.b64encode(json.dumps(event.to_json()).encode())


class SessionStoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.db = SyncDatabase()
        self.db.open()
        self.addCleanup(self.db.close)
        self.sessions = SessionStore(self.db, ttl=100)

    def test_create_lookup_expire_revoke(self) -> None:
        token, session = self.successResultOf(self._d(self.sessions.create(PUB, "nip07", 1000.0)))
        self.assertEqual(len(token), 64)
        self.assertEqual(session.expires_at, 1100.0)
        stored = self.db.run_sync(lambda c: [tuple(r) for r in c.execute(
            "SELECT token_sha256, pubkey FROM auth_sessions")])
        self.assertEqual(stored, [(hash_token(token), PUB)])  # never the token itself
        found = self.successResultOf(self._d(self.sessions.lookup(token, 1099.0)))
        self.assertEqual(found.pubkey, PUB)
        self.assertIsNone(self.successResultOf(self._d(self.sessions.lookup(token, 1100.0))))
        self.assertIsNone(self.successResultOf(self._d(self.sessions.lookup("x" * 64, 1000.0))))
        self.assertIsNone(self.successResultOf(self._d(self.sessions.lookup("", 1000.0))))
        self.assertTrue(self.successResultOf(self._d(self.sessions.revoke(token))))
        self.assertFalse(self.successResultOf(self._d(self.sessions.revoke(token))))
        self.assertIsNone(self.successResultOf(self._d(self.sessions.lookup(token, 1000.0))))

    def test_expired_rows_swept(self) -> None:
        self.successResultOf(self._d(self.sessions.create(PUB, "nip07", 0.0)))
        self.successResultOf(self._d(self.sessions.create(PUB, "nip46", 500.0)))
        count = self.db.run_sync(lambda c: c.execute("SELECT count(*) FROM auth_sessions").fetchone()[0])
        self.assertEqual(count, 1)

    @staticmethod
    def _d(coro: Any) -> Any:
        from twisted.internet.defer import Deferred

        return Deferred.fromCoroutine(coro)


class AuthenticatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.db = SyncDatabase()
        self.db.open()
        self.addCleanup(self.db.close)
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.sessions = SessionStore(self.db, ttl=3600)
        self.auth = RequestAuthenticator(sessions=self.sessions, clock=self.clock,
                                         base_url="https://gw.example/")

    def authenticate(self, request: FakeRequest) -> Any:
        from twisted.internet.defer import Deferred

        return Deferred.fromCoroutine(self.auth.authenticate(request))

    def refused(self, request: FakeRequest) -> str:
        return str(self.failureResultOf(self.authenticate(request), Unauthorized).value.message)

    def test_anonymous_and_bearer(self) -> None:
        self.assertIsNone(self.successResultOf(self.authenticate(FakeRequest(b"GET", b"/x", {}))))
        from twisted.internet.defer import Deferred

        token, _ = self.successResultOf(Deferred.fromCoroutine(
            self.sessions.create(PUB, "nip07", self.clock.seconds())))
        ok = FakeRequest(b"GET", b"/x", {b"Authorization": b"Bearer " + token.encode()})
        self.assertEqual(self.successResultOf(self.authenticate(ok)),
                         Principal(pubkey=PUB, admin=False, proof=Proof.SESSION))
        self.assertIn("sign in again", self.refused(FakeRequest(b"GET", b"/x", {b"Authorization": b"Bearer zzz"})))
        self.assertIn("empty", self.refused(FakeRequest(b"GET", b"/x", {b"Authorization": b"Bearer "})))
        self.assertIn("unsupported", self.refused(FakeRequest(b"GET", b"/x", {b"Authorization": b"Basic eA=="})))

    def test_nip98_url_from_public_url_and_body_payload(self) -> None:
        now = int(self.clock.seconds())
        body = b'{"a": 1}'
        header = nip98("https://gw.example/api/thing?q=1", "POST", now, body)
        request = FakeRequest(b"POST", b"/api/thing?q=1", {b"Authorization": header}, body)
        self.assertEqual(self.successResultOf(self.authenticate(request)).pubkey, PUB)
        self.assertIn("already used", self.refused(
            FakeRequest(b"POST", b"/api/thing?q=1", {b"Authorization": header}, body)))
        other = nip98("https://gw.example/api/thing?q=1", "POST", now, body)
        self.assertIn("payload", self.refused(
            FakeRequest(b"POST", b"/api/thing?q=1", {b"Authorization": other}, b"tampered")))
        wrong_host = nip98("http://127.0.0.1:9877/api/thing", "GET", now)
        self.assertIn("u tag", self.refused(
            FakeRequest(b"GET", b"/api/thing", {b"Authorization": wrong_host, b"Host": b"127.0.0.1:9877"})))

    def test_nip98_streamed_upload_defers_the_payload_check(self) -> None:
        now = int(self.clock.seconds())
        header = nip98("https://gw.example/api/upload", "PUT", now, b"file bytes")
        request = FakeRequest(b"PUT", b"/api/upload", {b"Authorization": header}, streamed=True)
        principal = self.successResultOf(self.authenticate(request))
        self.assertEqual((principal.pubkey, principal.proof), (PUB, Proof.NIP98))
        self.assertEqual(principal.event.first_tag("payload"),
                         hashlib.sha256(b"file bytes").hexdigest())
        self.assertFalse(hasattr(request, "nip98_event"))  # nothing is left on the request

    def test_nip98_u_is_never_taken_from_the_host_header(self) -> None:
        """An event signed for another server is not made valid by sending that server's name
        as Host: the URL is the gateway's own (public URL, else the listening address)."""
        from twisted.internet.defer import Deferred

        auth = RequestAuthenticator(sessions=self.sessions, clock=self.clock,
                                    base_url="http://127.0.0.1:9877")
        now = int(self.clock.seconds())
        for host in (b"files.example:8080", b"127.0.0.1:9877"):
            foreign = nip98("http://files.example:8080/api/users/me/stats", "GET", now)
            request = FakeRequest(b"GET", b"/api/users/me/stats",
                                  {b"Authorization": foreign, b"Host": host})
            failure = self.failureResultOf(Deferred.fromCoroutine(auth.authenticate(request)),
                                           Unauthorized)
            self.assertIn("u tag", failure.value.message)
        ours = nip98("http://127.0.0.1:9877/api/users/me/stats", "GET", now)
        request = FakeRequest(b"GET", b"/api/users/me/stats",
                              {b"Authorization": ours, b"Host": b"files.example:8080"})
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(auth.authenticate(request))).pubkey, PUB)

    def test_admin_keys_make_admin_principals(self) -> None:
        from twisted.internet.defer import Deferred

        auth = RequestAuthenticator(sessions=self.sessions, clock=self.clock,
                                    base_url="https://gw.example", admins=[PUB.upper()])
        token, _ = self.successResultOf(Deferred.fromCoroutine(
            self.sessions.create(PUB, "nip07", self.clock.seconds())))
        bearer = FakeRequest(b"GET", b"/x", {b"Authorization": b"Bearer " + token.encode()})
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(auth.authenticate(bearer))),
                         Principal(pubkey=PUB, admin=True, proof=Proof.SESSION))
        header = nip98("https://gw.example/x", "GET", int(self.clock.seconds()))
        signed = FakeRequest(b"GET", b"/x", {b"Authorization": header})
        principal = self.successResultOf(Deferred.fromCoroutine(auth.authenticate(signed)))
        self.assertEqual((principal.admin, principal.proof), (True, Proof.NIP98))
        self.assertFalse(self.successResultOf(self.authenticate(FakeRequest(
            b"GET", b"/x", {b"Authorization": b"Bearer " + token.encode()}))).admin)

    def test_nip98_time_window(self) -> None:
        now = int(self.clock.seconds())
        for created_at in (now - 61, now + 61):
            header = nip98("https://gw.example/x", "GET", created_at)
            self.assertIn("created_at", self.refused(FakeRequest(b"GET", b"/x", {b"Authorization": header})))
