"""Sign-in and users' files through the real plugin (makeService) on a loopback port.

Every login and NIP-98 event is made by nostr-tools (``finalizeEvent``, ``nip42.makeAuthEvent``,
``nip98.getToken``) in ``tests/clients/js/nostr_events.mjs``; refusals (forged signature, wrong
kind, stale created_at, reused challenge, wrong URL or method, replay, a login event bound to
another server or to none) each answer 401 with a message naming the check. Quota, ownership and
delete are exercised end to end over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from typing import Any

import pytest
import treq
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from harness.gateway import RunningGateway, case_data_dir, small_config, start_gateway
from harness.procs import run_node_json_deferred
from tgateway.nostr.event import public_key_hex

pytestmark = pytest.mark.integration

ALICE = "a1" * 32
BOB = "b2" * 32


async def nostr_tools(request: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = await run_node_json_deferred(
        reactor, "nostr_events.mjs", input=json.dumps(request).encode(), timeout=60
    )
    return answer


async def sign(secret: str, *templates: dict[str, Any]) -> list[dict[str, Any]]:
    return list((await nostr_tools({"secret": secret, "sign": list(templates)}))["signed"])


async def nip98(secret: str, *requests: dict[str, Any]) -> list[dict[str, Any]]:
    return list((await nostr_tools({"secret": secret, "nip98": list(requests)}))["nip98"])


def b64_event(event: dict[str, Any]) -> str:
    return "Nostr " + base64.b64encode(json.dumps(event).encode()).decode()


POOL = HTTPConnectionPool(reactor, persistent=False)  # no idle connection outlives a test


async def call(method: str, url: str, **kw: Any) -> tuple[int, Any, Any]:
    r = await treq.request(method, url, pool=POOL, **kw)
    text = await r.text()
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = text
    return r.code, body, r.headers


GENEROUS = {"auth": {"login_attempts_per_minute": 6000, "burst_size": 1000}}


def bound(g: RunningGateway, kind: int, c: str, created_at: int | None = None) -> dict[str, Any]:
    """A login event template that names this gateway (relay tag, or u tag for NIP-98)."""
    server = ["relay", g.base] if kind == 22242 else ["u", g.url("/api/auth/login")]
    return {"kind": kind, "created_at": int(time.time()) if created_at is None else created_at,
            "tags": [server, ["challenge", c]], "content": ""}


async def login(g: RunningGateway, event: dict[str, Any]) -> tuple[int, Any]:
    code, body, _ = await call(
        "POST", g.url("/api/auth/login"), json={"auth_type": "nip07", "event": event}
    )
    return code, body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def put(g: RunningGateway, data: bytes, headers: dict[str, str] | None = None,
              name: str = "f.bin") -> tuple[int, Any]:
    h = {"Content-Type": "application/octet-stream", "X-Filename": name, **(headers or {})}
    code, body, _ = await call("PUT", g.url("/api/upload"), data=data, headers=h)
    return code, body


async def session_for(g: RunningGateway, secret: str) -> str:
    """A session token for ``secret``'s key: challenge, signed NIP-07 login event, login (used by
    other test modules; the tests here check each step in :meth:`UsersApiTests.session_for`)."""
    code, body, _ = await call("GET", g.url("/api/auth/challenge"))
    assert code == 200, body
    [event] = await sign(secret, bound(g, 22242, str(body["challenge"])))
    code, body = await login(g, event)
    assert code == 200, body
    return str(body["token"])


@implementer(IBodyProducer)
class ChunkedBody:
    """A body of unknown length (sent with Transfer-Encoding: chunked)."""

    length = UNKNOWN_LENGTH

    def __init__(self, data: bytes) -> None:
        self.data = data

    def startProducing(self, consumer: Any) -> Any:
        for i in range(0, len(self.data), 8192):
            consumer.write(self.data[i : i + 8192])
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class UsersApiTests(TestCase):
    timeout = 180

    def start(self, **sections: Any) -> RunningGateway:
        """A gateway with generous login limits unless given, stopped when the test ends."""
        sections.setdefault("rate_limiting", GENEROUS)
        return start_gateway(self, small_config(case_data_dir(self), **sections))

    async def challenge(self, g: RunningGateway) -> str:
        code, body, _ = await call("GET", g.url("/api/auth/challenge"))
        self.assertEqual(code, 200, body)
        self.assertEqual(body["kinds"], [22242, 27235])
        self.assertGreater(body["expires_at"], time.time())
        self.assertEqual((body["relay"], body["url"]), (g.base, g.url("/api/auth/login")))
        return str(body["challenge"])

    async def challenge_at(self, g: RunningGateway, public: str) -> str:
        code, body, _ = await call("GET", g.url("/api/auth/challenge"))
        self.assertEqual(code, 200, body)
        self.assertEqual((body["relay"], body["url"]), (public, public + "/api/auth/login"))
        return str(body["challenge"])

    async def session_for(self, g: RunningGateway, secret: str) -> str:
        c = await self.challenge(g)
        [event] = await sign(secret, bound(g, 22242, c))
        code, body = await login(g, event)
        self.assertEqual(code, 200, body)
        return str(body["token"])

    # --- NIP-07 login, sessions -----------------------------------------------------------------

    async def test_nip07_login_session_and_logout(self) -> None:
        gw = self.start()
        c = await self.challenge(gw)
        now = int(time.time())
        [e22242] = await sign(ALICE, bound(gw, 22242, c, now))
        code, body = await login(gw, e22242)
        self.assertEqual(code, 200, body)
        alice = public_key_hex(bytes.fromhex(ALICE))
        self.assertEqual(body["pubkey"], alice)
        self.assertTrue(body["npub"].startswith("npub1"), body)
        self.assertEqual(body["token_type"], "Bearer")
        self.assertGreater(body["expires_at"], now + 86400)
        token = body["token"]

        code, me, _ = await call("GET", gw.url("/api/auth/session"), headers=bearer(token))
        self.assertEqual((code, me["pubkey"]), (200, alice))

        # the token is stored hashed: the database never holds it
        rows = gw.gateway.db.run_sync(
            lambda conn: conn.execute("SELECT token_sha256, pubkey FROM auth_sessions").fetchall()
        )
        self.assertEqual([tuple(r) for r in rows],
                         [(hashlib.sha256(token.encode()).hexdigest(), alice)])

        # kind 27235 with a challenge tag (and u naming the login URL) is accepted as well
        c2 = await self.challenge(gw)
        [e27235] = await sign(BOB, bound(gw, 27235, c2, now))
        code, body = await login(gw, e27235)
        self.assertEqual((code, body["pubkey"]), (200, public_key_hex(bytes.fromhex(BOB))))

        code, out, _ = await call("POST", gw.url("/api/auth/logout"), headers=bearer(token))
        self.assertEqual((code, out["logged_out"]), (200, True))
        code, err, _ = await call("GET", gw.url("/api/auth/session"), headers=bearer(token))
        self.assertEqual((code, err["error"]), (401, "invalid_session"))
        self.assertIn("sign in again", err["message"])
        code, err, _ = await call("POST", gw.url("/api/auth/logout"), headers=bearer(token))
        self.assertEqual(code, 401)

    async def test_login_refusals_are_401_with_a_clear_message(self) -> None:
        gw = self.start()
        now = int(time.time())
        c_forged, c_kind, c_stale, c_used = [await self.challenge(gw) for _ in range(4)]
        forged, wrong_kind, stale, good = await sign(
            ALICE,
            bound(gw, 22242, c_forged, now),
            {**bound(gw, 22242, c_kind, now), "kind": 1},
            bound(gw, 22242, c_stale, now - 3600),
            bound(gw, 22242, c_used, now),
        )
        sig = forged["sig"]
        forged["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
        cases = [
            (forged, "signature"),
            (wrong_kind, "kind 22242 or 27235, not 1"),
            (stale, "created_at"),
            ({**good, "tags": [["challenge", "f" * 64]], }, "id"),  # tampered after signing
            ({"kind": 22242}, "login event is"),
        ]
        for event, words in cases:
            code, body = await login(gw, event)
            self.assertEqual(code, 401, (event, body))
            self.assertEqual(body["error"], "invalid_login")
            self.assertIn(words, body["message"], body)

        code, body = await login(gw, good)
        self.assertEqual(code, 200, body)
        code, body = await login(gw, good)  # the same challenge again
        self.assertEqual((code, body["error"]), (401, "invalid_login"))
        self.assertIn("unknown, expired or already used", body["message"])

        # a challenge this gateway never issued
        [unknown] = await sign(ALICE, bound(gw, 22242, "ab" * 32, now))
        code, body = await login(gw, unknown)
        self.assertEqual(code, 401, body)
        self.assertIn("challenge", body["message"])

        code, body, _ = await call("POST", gw.url("/api/auth/login"), json={"auth_type": "password"})
        self.assertEqual((code, body["error"]), (400, "invalid_auth_type"))

    async def test_login_events_must_name_this_gateway(self) -> None:
        """A relay passing the gateway's challenge on as its own NIP-42 AUTH challenge gets an
        event that names that relay: refused, as is one for another site or one naming no
        server; the same challenge then still logs in with an event bound to the gateway."""
        gw = self.start()
        c = await self.challenge(gw)
        now = int(time.time())
        answer = await nostr_tools({"secret": ALICE, "nip42": [
            {"relay": "wss://relay.evil.example", "challenge": c},
            {"relay": gw.base.replace("http://", "ws://") + "/", "challenge": c},
        ]})
        for_evil_relay, for_us = answer["nip42"]
        for_evil_site, unbound, named_twice = await sign(
            ALICE,
            {"kind": 27235, "created_at": now, "content": "",
             "tags": [["u", "https://evil.example/api/auth/login"], ["method", "POST"],
                      ["challenge", c]]},
            {"kind": 22242, "created_at": now, "tags": [["challenge", c]], "content": ""},
            {"kind": 22242, "created_at": now, "content": "",
             "tags": [["relay", gw.base], ["relay", "wss://relay.evil.example"], ["challenge", c]]},
        )
        for event, code, words in (
            (for_evil_relay, "wrong_server", "another server (wss://relay.evil.example)"),
            (for_evil_site, "wrong_server", "another server (https://evil.example/api/auth/login)"),
            (named_twice, "wrong_server", "another server"),
            (unbound, "login_unbound", "names no server"),
        ):
            status, body = await login(gw, event)
            self.assertEqual((status, body["error"]), (401, code), body)
            self.assertIn(words, body["message"], body)
            self.assertIn(gw.base, body["message"], body)  # says which URL to name
        # the Host header does not make a foreign event ours
        status, body, _ = await call("POST", gw.url("/api/auth/login"),
                                     headers={"Host": "relay.evil.example"},
                                     json={"auth_type": "nip07", "event": for_evil_relay})
        self.assertEqual((status, body["error"]), (401, "wrong_server"), body)
        # nostr-tools' own AUTH event for the gateway's URL (ws:// and a trailing slash) logs in
        status, body = await login(gw, for_us)
        self.assertEqual((status, body["pubkey"]), (200, public_key_hex(bytes.fromhex(ALICE))),
                         body)

    async def test_login_binding_follows_the_public_url(self) -> None:
        """Behind a reverse proxy the configured public URL is the one to name; the listening
        address is not, whatever the request's Host says."""
        g = self.start(gateway={"public_url": "https://files.example.org/gw/"})
        c = await self.challenge_at(g, "https://files.example.org/gw")
        local, public = await sign(ALICE, bound(g, 22242, c), {
            **bound(g, 22242, c), "tags": [["relay", "wss://files.example.org/gw"], ["challenge", c]]})
        status, body = await login(g, local)
        self.assertEqual((status, body["error"]), (401, "wrong_server"), body)
        status, body, _ = await call("POST", g.url("/api/auth/login"),
                                     headers={"Host": "files.example.org"},
                                     json={"auth_type": "nip07", "event": public})
        self.assertEqual(status, 200, body)

    async def test_login_rate_limited_per_ip(self) -> None:
        g = self.start(rate_limiting={"auth": {"login_attempts_per_minute": 1, "burst_size": 2}})
        for _ in range(2):
            code, body, _ = await call("POST", g.url("/api/auth/login"), json={"auth_type": "nip07"})
            self.assertEqual(code, 400, body)  # counted, then refused for the missing event
        code, body, headers = await call("POST", g.url("/api/auth/login"),
                                         json={"auth_type": "nip07"})
        self.assertEqual((code, body["error"]), (429, "rate_limited"))
        self.assertGreaterEqual(int(headers.getRawHeaders("Retry-After")[0]), 1)

    # --- NIP-98 ---------------------------------------------------------------------------------

    async def test_nip98_on_user_routes(self) -> None:
        gw = self.start()
        stats = gw.url("/api/users/me/stats")
        good, wrong_url, wrong_method = await nip98(
            ALICE,
            {"url": stats, "method": "GET"},
            {"url": gw.url("/api/users/me/files"), "method": "GET"},
            {"url": stats, "method": "POST"},
        )
        now = int(time.time())
        stale, kind1 = await sign(
            ALICE,
            {"kind": 27235, "created_at": now - 120, "tags": [["u", stats], ["method", "GET"]],
             "content": ""},
            {"kind": 1, "created_at": now, "tags": [["u", stats], ["method", "GET"]], "content": ""},
        )
        forged = dict(stale, created_at=now)  # id no longer matches
        alice = public_key_hex(bytes.fromhex(ALICE))

        code, body, _ = await call("GET", stats, headers={"Authorization": good["token"]})
        self.assertEqual(code, 200, body)
        self.assertEqual((body["pubkey"], body["files"], body["quota"]), (alice, 0, 10 * 1000**3))

        refusals = [
            (good["token"], "already used"),  # replay
            (wrong_url["token"], "u tag does not match"),
            (wrong_method["token"], "method tag does not match"),
            (b64_event(stale), "created_at"),
            (b64_event(kind1), "kind 27235"),
            (b64_event(forged), "NIP-98 event is"),
            ("Nostr !!!", "not base64"),
            ("Basic dXNlcjpwdw==", "Authorization"),
            ("Bearer nope", "session token"),
        ]
        for header, words in refusals:
            code, body, _ = await call("GET", stats, headers={"Authorization": header})
            self.assertEqual(code, 401, (header, body))
            self.assertIn(words, body["message"], (header, body))

        code, body, _ = await call("GET", stats)
        self.assertEqual((code, body["error"]), (401, "auth_required"))

    async def test_nip98_upload_payload_checked_before_storing(self) -> None:
        gw = self.start()
        url = gw.url("/api/upload")
        ok, mismatch = await nip98(
            ALICE,
            {"url": url, "method": "PUT", "payload": {"file": "the body that was signed"}},
            {"url": url, "method": "PUT", "payload": {"file": "another body"}},
        )
        body = ok["body"].encode()
        code, out = await put(gw, body, {"Authorization": ok["token"]}, name="signed.json")
        self.assertEqual(code, 201, out)
        alice = public_key_hex(bytes.fromhex(ALICE))
        owners = await gw.store.owners(out["sha256"])
        self.assertEqual([o.owner for o in owners], [alice])

        other = b'{"file":"not what the payload tag names"}'
        code, err = await put(gw, other, {"Authorization": mismatch["token"]})
        self.assertEqual((code, err["error"]), (401, "invalid_nip98"), err)
        self.assertIn("payload", err["message"])
        self.assertIsNone(await gw.store.get(hashlib.sha256(other).hexdigest()))

    # --- users' files, quota, ownership ---------------------------------------------------------

    async def test_users_files_quota_ownership_and_delete(self) -> None:
        g = self.start(
            admin={"default_user_storage_limit": 100_000},
            gateway={"allow_anonymous_uploads": False},
        )
        alice = await self.session_for(g, ALICE)
        bob = await self.session_for(g, BOB)

        code, err = await put(g, b"anonymous bytes")
        self.assertEqual((code, err["error"]), (401, "auth_required"))

        one, two = b"1" * 30_000, b"2" * 40_000
        code, f1 = await put(g, one, bearer(alice), name="one.bin")
        self.assertEqual(code, 201, f1)
        code, f2 = await put(g, two, bearer(alice), name="two.bin")
        self.assertEqual(code, 201, f2)
        code, f2b = await put(g, two, bearer(bob), name="bobs copy.bin")
        self.assertEqual((code, f2b["sha256"], f2b["new"]), (200, f2["sha256"], False))

        # 70 000 of 100 000 used: 40 000 more is refused before the body is stored
        three = b"3" * 40_000
        code, err = await put(g, three, bearer(alice))
        self.assertEqual((code, err["error"]), (413, "quota_exceeded"), err)
        self.assertIn("quota", err["message"])
        self.assertIsNone(await g.store.get(hashlib.sha256(three).hexdigest()))

        code, stats, _ = await call("GET", g.url("/api/users/me/stats"), headers=bearer(alice))
        self.assertEqual(code, 200)
        self.assertEqual((stats["files"], stats["bytes_used"], stats["quota"]), (2, 70_000, 100_000))
        self.assertEqual(stats["bytes_remaining"], 30_000)

        code, page, _ = await call("GET", g.url("/api/users/me/files?limit=1"), headers=bearer(alice))
        self.assertEqual(code, 200, page)
        self.assertEqual((page["total"], len(page["files"])), (2, 1))
        self.assertEqual(page["files"][0]["sha256"], f2["sha256"])  # newest first
        self.assertEqual(page["next_cursor"], "1")
        code, page2, _ = await call(
            "GET", g.url(f"/api/users/me/files?limit=1&cursor={page['next_cursor']}"),
            headers=bearer(alice)
        )
        self.assertEqual([f["sha256"] for f in page2["files"]], [f1["sha256"]])
        self.assertIsNone(page2["next_cursor"])
        code, err, _ = await call("GET", g.url("/api/users/me/files?limit=0"), headers=bearer(alice))
        self.assertEqual((code, err["error"]), (400, "invalid_field"))

        # Bob's files are his own
        code, page, _ = await call("GET", g.url("/api/users/me/files"), headers=bearer(bob))
        self.assertEqual([(f["sha256"], f["name"]) for f in page["files"]],
                         [(f2["sha256"], "bobs copy.bin")])

        # delete: Alice drops her ownership of the shared file; the bytes stay for Bob
        code, out, _ = await call("DELETE", g.url(f"/api/users/me/files/{f2['sha256']}"),
                                  headers=bearer(alice))
        self.assertEqual((code, out["file_deleted"]), (200, False))
        code, _, _ = await call("GET", g.url(f"/api/download/{f2['sha256']}"))
        self.assertEqual(code, 200)
        code, out, _ = await call("DELETE", g.url(f"/api/users/me/files/{f2['sha256']}"),
                                  headers=bearer(alice))
        self.assertEqual((code, out["error"]), (404, "file_not_found"))
        # Bob drops it too: now the bytes go
        code, out, _ = await call("DELETE", g.url(f"/api/users/me/files/{f2['sha256']}"),
                                  headers=bearer(bob))
        self.assertEqual((code, out["file_deleted"]), (200, True))
        code, _, _ = await call("GET", g.url(f"/api/download/{f2['sha256']}"))
        self.assertEqual(code, 404)
        code, out, _ = await call("DELETE", g.url(f"/api/users/me/files/{f1['sha256']}"))
        self.assertEqual((code, out["error"]), (401, "auth_required"))

        # with the space freed, the upload that did not fit fits now
        code, _ = await put(g, three, bearer(alice))
        self.assertEqual(code, 201)
        code, stats, _ = await call("GET", g.url("/api/users/me/stats"), headers=bearer(alice))
        self.assertEqual((stats["files"], stats["bytes_used"]), (2, 70_000))

    async def test_quota_without_content_length(self) -> None:
        g = self.start(admin={"default_user_storage_limit": 50_000})
        alice = await self.session_for(g, ALICE)
        big = os.urandom(80_000)
        r = await treq.put(g.url("/api/upload"), data=ChunkedBody(big), pool=POOL,
                           headers={**bearer(alice), "Content-Type": "application/octet-stream"})
        err = await r.json()
        self.assertEqual((r.code, err.get("error")), (413, "quota_exceeded"), err)
        self.assertIsNone(await g.store.get(hashlib.sha256(big).hexdigest()))
        small = os.urandom(30_000)
        r = await treq.put(g.url("/api/upload"), data=ChunkedBody(small), pool=POOL,
                           headers={**bearer(alice), "Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 201, await r.text())
        code, stats, _ = await call("GET", g.url("/api/users/me/stats"), headers=bearer(alice))
        self.assertEqual((stats["files"], stats["bytes_used"]), (1, 30_000))

    async def test_identity_and_announce_without_relays(self) -> None:
        gw = self.start()
        code, ident, _ = await call("GET", gw.url("/api/nostr/identity"))
        self.assertEqual(code, 200)
        nostr = gw.gateway.components.nostr
        self.assertEqual((ident["pubkey"], ident["npub"]), (nostr.pubkey, nostr.npub))

        alice = await self.session_for(gw, ALICE)
        code, f = await put(gw, b"announce me", bearer(alice))
        self.assertEqual(code, 201)
        code, body, _ = await call("GET", gw.url(f"/api/files/{f['sha256']}/announcements"))
        self.assertEqual((code, body["announcements"]), (200, []))
        # the file API still answers under /api/files
        code, meta, _ = await call("GET", gw.url(f"/api/files/{f['sha256']}"))
        self.assertEqual((code, meta["sha256"]), (200, f["sha256"]))
        code, body, _ = await call("POST", gw.url(f"/api/files/{f['sha256']}/announce"),
                                   headers=bearer(alice))
        self.assertEqual((code, body["error"]), (503, "no_relays"))
        bob = await self.session_for(gw, BOB)
        code, body, _ = await call("POST", gw.url(f"/api/files/{f['sha256']}/announce"),
                                   headers=bearer(bob))
        self.assertEqual((code, body["error"]), (403, "not_owner"))
        code, body, _ = await call("GET", gw.url(f"/api/files/{'0' * 64}/announcements"))
        self.assertEqual((code, body["error"]), (404, "file_not_found"))

    async def test_login_event_in_auth_event_as_string_or_object(self) -> None:
        """The seed's API reference sends ``{"auth_type": "nip07", "auth_event": "<event JSON>"}``:
        the event as a JSON string or as an object, beside ``event``/``signed_event``."""
        gw = self.start()
        for wrap in (json.dumps, lambda e: e):
            c = await self.challenge(gw)
            [event] = await sign(ALICE, bound(gw, 22242, c))
            status, body, _ = await call("POST", gw.url("/api/auth/login"),
                                         json={"auth_type": "nip07", "auth_event": wrap(event)})
            self.assertEqual((status, body["pubkey"]), (200, public_key_hex(bytes.fromhex(ALICE))),
                             body)
        status, body, _ = await call("POST", gw.url("/api/auth/login"),
                                     json={"auth_type": "nip07", "auth_event": "{not json"})
        self.assertEqual((status, body["error"]), (401, "invalid_login"), body)
        status, body, _ = await call("POST", gw.url("/api/auth/login"), json={"auth_type": "nip07"})
        self.assertEqual((status, body["error"]), (400, "missing_event"), body)
        self.assertIn("auth_event", body["message"])
