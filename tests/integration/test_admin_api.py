"""The admin API through the real plugin (makeService) on loopback: the gateway API and Blossom.

Every ``/api/admin/`` route: 401 without credentials, 403 ``not_admin`` for a signed-in user
(nothing changed), the action done for an admin (session or NIP-98), a 400 naming the field for
bad input (nothing changed), and 404 for every one of them with ``admin.enabled: false``. Then
what the actions do across the gateway: per-user storage limits in the upload's quota check, a
ban refusing sign-in, requests, uploads and Blossom tokens (and lifted again), a deleted file's
bytes refused on every way in (API, Blossom upload, mirror) and after a restart, a report acted
on deleting the blob and banning its uploader, and every action in the audit log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any

import pytest
import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from harness.gateway import RunningGateway, serving_config
from tests.blossom import tokens
from tgateway.nostr.event import EventTemplate, public_key_hex, sign

pytestmark = pytest.mark.integration

ADMIN = "ad" * 32
ALICE = "a1" * 32
BOB = "b2" * 32
ADMIN_PUB = public_key_hex(bytes.fromhex(ADMIN))
ALICE_PUB = public_key_hex(bytes.fromhex(ALICE))
BOB_PUB = public_key_hex(bytes.fromhex(BOB))

POOL = HTTPConnectionPool(reactor, persistent=False)


async def call(method: str, url: str, token: str | None = None, body: Any = None,
               headers: dict[str, str] | None = None, data: bytes | None = None
               ) -> tuple[int, Any, Any]:
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    r = await treq.request(method, url, data=data, headers=h, pool=POOL)
    text = await r.text()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return r.code, parsed, r.headers


def nip98(url: str, method: str, secret: str, payload: bytes | None = None) -> str:
    tags: list[tuple[str, ...]] = [("u", url), ("method", method)]
    if payload is not None:
        tags.append(("payload", hashlib.sha256(payload).hexdigest()))
    event = sign(EventTemplate(kind=27235, created_at=int(time.time()), tags=tuple(tags)),
                 bytes.fromhex(secret))
    return "Nostr " + base64.b64encode(json.dumps(event.to_json()).encode()).decode()


def report_event(secret: str, *shas: str) -> bytes:
    event = sign(EventTemplate(kind=1984, created_at=int(time.time()),
                               tags=tuple(("x", s, "spam") for s in shas), content="spam"),
                 bytes.fromhex(secret))
    return json.dumps(event.to_json()).encode()


class AdminApiTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tg-admin-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.data = os.path.join(self.dir, "gw")

    def start(self, media: bool = False, **admin: Any) -> RunningGateway:
        config = serving_config(
            self.data,
            admin={"pubkeys": [ADMIN_PUB], **admin},
            # BUD-05 /media needs transcoding on (and FFmpeg)
            transcoding={"enabled": media, "work_dir": os.path.join(self.data, "work")},
            blossom_server={"require_auth": ["upload", "delete"], "mirror_allow_private": True},
            rate_limiting={"auth": {"login_attempts_per_minute": 6000, "burst_size": 1000}})
        gw = RunningGateway(config)
        self.addCleanup(gw.stop)
        return gw

    async def login(self, gw: RunningGateway, secret: str) -> tuple[int, Any]:
        code, c, _ = await call("GET", gw.url("/api/auth/challenge"))
        assert code == 200, c
        event = sign(EventTemplate(kind=22242, created_at=int(time.time()),
                                   tags=(("relay", gw.base), ("challenge", c["challenge"]))),
                     bytes.fromhex(secret))
        code, body, _ = await call("POST", gw.url("/api/auth/login"),
                                   body={"auth_type": "nip07", "auth_event": event.to_json()})
        return code, body

    async def session(self, gw: RunningGateway, secret: str) -> str:
        code, body = await self.login(gw, secret)
        self.assertEqual(code, 200, body)
        return str(body["token"])

    async def upload(self, gw: RunningGateway, data: bytes, token: str | None = None,
                     name: str = "f.bin") -> tuple[int, Any]:
        code, body, _ = await call("PUT", gw.url("/api/upload"), token, data=data,
                                   headers={"X-Filename": name})
        return code, body

    async def blossom_upload(self, gw: RunningGateway, data: bytes, secret: str
                             ) -> tuple[int, Any, Any]:
        sha = hashlib.sha256(data).hexdigest()
        token = tokens.encode(tokens.make_event("upload", hashes=(sha,),
                                                secret=bytes.fromhex(secret)))
        assert gw.blossom_base is not None
        return await call("PUT", gw.blossom_base + "/upload", data=data,
                          headers={"Authorization": token, "X-SHA-256": sha})

    async def admin_user(self, gw: RunningGateway, token: str, pubkey: str) -> Any:
        code, body, _ = await call("GET", gw.url(f"/api/admin/users/{pubkey}"), token)
        self.assertEqual(code, 200, body)
        return body

    # ------------------------------------------------------------------ who may call

    def routes(self, sha: str, report: str) -> list[tuple[str, str, Any]]:
        return [
            ("GET", "/api/admin/stats", None),
            ("GET", "/api/admin/users", None),
            ("GET", f"/api/admin/users/{BOB_PUB}", None),
            ("PUT", f"/api/admin/users/{BOB_PUB}", {"banned": True}),
            ("GET", "/api/admin/files?q=", None),
            ("DELETE", f"/api/admin/files/{sha}", None),
            ("GET", "/api/admin/reports", None),
            ("POST", f"/api/admin/reports/{report}", {"action": "delete"}),
            ("GET", "/api/admin/transcode", None),
            ("POST", f"/api/admin/transcode/{sha}/retry", None),
            ("GET", "/api/admin/config", None),
            ("GET", "/api/admin/audit", None),
        ]

    async def test_only_admins_and_nothing_changes_for_others(self) -> None:
        gw = self.start()
        bob = await self.session(gw, BOB)
        data = os.urandom(3000)
        code, f = await self.upload(gw, data, bob)
        self.assertEqual(code, 201, f)
        sha = f["sha256"]
        assert gw.blossom_base is not None
        code, rep, _ = await call("PUT", gw.blossom_base + "/report",
                                  data=report_event(ALICE, sha))
        self.assertEqual(code, 200, rep)
        alice = await self.session(gw, ALICE)
        for method, path, body in self.routes(sha, rep["id"]):
            code, answer, _ = await call(method, gw.url(path), None, body)
            self.assertEqual((code, answer["error"]), (401, "auth_required"), (method, path))
            code, answer, _ = await call(method, gw.url(path), alice, body)
            self.assertEqual((code, answer["error"]), (403, "not_admin"), (method, path))
        # nothing changed: the file is there, Bob is not banned, the report open, no audit
        code, _, _ = await call("GET", gw.url(f"/api/download/{sha}"))
        self.assertEqual(code, 200)
        code, _, _ = await call("GET", gw.url("/api/users/me/stats"), bob)
        self.assertEqual(code, 200)
        admin = await self.session(gw, ADMIN)
        code, reports, _ = await call("GET", gw.url("/api/admin/reports"), admin)
        self.assertEqual([r["id"] for r in reports["reports"]], [rep["id"]])
        code, audit, _ = await call("GET", gw.url("/api/admin/audit"), admin)
        self.assertEqual(audit["entries"], [])

    async def test_admin_disabled_every_admin_route_is_404(self) -> None:
        gw = self.start(enabled=False)
        admin = await self.session(gw, ADMIN)
        code, f = await self.upload(gw, os.urandom(1000), admin)
        self.assertEqual(code, 201, f)
        for method, path, body in self.routes(f["sha256"], "ab" * 32):
            code, answer, _ = await call(method, gw.url(path), admin, body)
            self.assertEqual((code, answer["error"]), (404, "not_found"), (method, path))
        code, _, _ = await call("GET", gw.url(f"/api/download/{f['sha256']}"))
        self.assertEqual(code, 200)

    # ------------------------------------------------------------------ overview

    async def test_stats_config_and_transcode(self) -> None:
        gw = self.start()
        admin = await self.session(gw, ADMIN)
        code, f = await self.upload(gw, os.urandom(2000), admin)
        code, stats, _ = await call("GET", gw.url("/api/admin/stats"), admin)
        self.assertEqual(code, 200, stats)
        self.assertEqual((stats["storage"]["files"], stats["storage"]["bytes"]), (1, 2000))
        self.assertEqual(stats["users"], {"total": 1, "banned": 0, "with_storage_limit": 0})
        self.assertEqual(stats["blocked_files"], 0)
        self.assertEqual(stats["reports"], {"open": 0, "dismissed": 0, "actioned": 0})
        self.assertIn("peer", stats["components"])
        # NIP-98 works as well as a session
        url = gw.url("/api/admin/config")
        code, config, _ = await call("GET", url, headers={"Authorization": nip98(url, "GET",
                                                                                 ADMIN)})
        self.assertEqual(code, 200, config)
        self.assertEqual(config["admin"]["pubkeys"], [ADMIN_PUB])
        self.assertEqual(config["gateway"]["port"], gw.port)
        self.assertEqual(config["nostr"]["private_key"], "")  # not set: shown as not set
        code, jobs, _ = await call("GET", gw.url("/api/admin/transcode"), admin)
        self.assertEqual((code, jobs["jobs"], jobs["total"], jobs["active"]), (200, [], 0, False))
        code, err, _ = await call("GET", gw.url("/api/admin/transcode?state=bogus"), admin)
        self.assertEqual((code, err["error"]), (400, "invalid_field"))
        for priority in ("high", 2**63, -(2**40)):  # more than SQLite's INTEGER: was a 500
            code, err, _ = await call("POST",
                                      gw.url(f"/api/admin/transcode/{f['sha256']}/retry"),
                                      admin, {"priority": priority})
            self.assertEqual((code, err["error"]), (400, "invalid_field"), priority)
        code, err, _ = await call("POST", gw.url(f"/api/admin/transcode/{f['sha256']}/retry"),
                                  admin)
        self.assertEqual((code, err["error"]), (503, "transcoding_disabled"))
        for bad in ("limit=0", "limit=501", "offset=-1", "limit=x"):
            code, err, _ = await call("GET", gw.url(f"/api/admin/users?{bad}"), admin)
            self.assertEqual((code, err["error"]), (400, "invalid_field"), bad)

    async def test_config_redacts_the_private_key(self) -> None:
        config = serving_config(self.data, admin={"pubkeys": [ADMIN_PUB]},
                                nostr={"private_key": "7f" * 32})
        gw = RunningGateway(config)
        self.addCleanup(gw.stop)
        admin = await self.session(gw, ADMIN)
        code, body, _ = await call("GET", gw.url("/api/admin/config"), admin)
        self.assertEqual(body["nostr"]["private_key"], "[redacted]")
        self.assertNotIn("7f" * 32, json.dumps(body))

    # ------------------------------------------------------------------ users

    async def test_storage_limit_is_the_quota_of_the_upload_check(self) -> None:
        gw = self.start(default_user_storage_limit="1MB")
        admin = await self.session(gw, ADMIN)
        bob = await self.session(gw, BOB)
        code, f = await self.upload(gw, os.urandom(6000), bob)
        self.assertEqual(code, 201, f)
        code, me, _ = await call("GET", gw.url("/api/users/me/stats"), bob)
        self.assertEqual(me["quota"], 1_000_000)
        # bad input: a 400 naming the problem, and Bob's limit stays the default
        for body in ({"storage_limit": -1}, {"storage_limit": "lots"}, {"storage_limit": True},
                     {"storage_limit": 1.5}, {}, {"color": "red", "banned": False},
                     {"banned": "yes"}, {"banned": None}, {"storage_limit": 5, "delete_files": True},
                     {"banned": False, "delete_files": "yes"}, [1], "null", b"{not json",
                     # more than SQLite's INTEGER holds (was a 500 from the database)
                     {"storage_limit": 2**63}, {"storage_limit": "9999999999TB"},
                     {"storage_limit": 1e300}):
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            code, err, _ = await call("PUT", gw.url(f"/api/admin/users/{BOB_PUB}"), admin, raw)
            self.assertEqual(code, 400, (body, err))
            self.assertIn(err["error"], ("invalid_field", "invalid_json"), body)
        code, err, _ = await call("PUT", gw.url("/api/admin/users/zz"), admin, {"banned": True})
        self.assertEqual((code, err["error"]), (400, "invalid_hash"))
        user = await self.admin_user(gw, admin, BOB_PUB)
        self.assertEqual((user["storage_limit"], user["quota"], user["banned"]),
                         (None, 1_000_000, False))
        code, audit, _ = await call("GET", gw.url("/api/admin/audit"), admin)
        self.assertEqual(audit["entries"], [])
        # an own limit of 10 kB: 6000 bytes used, a 5000-byte upload no longer fits
        code, user, _ = await call("PUT", gw.url(f"/api/admin/users/{BOB_PUB}"), admin,
                                   {"storage_limit": "10kB"})
        self.assertEqual((code, user["storage_limit"], user["quota"]), (200, 10_000, 10_000))
        code, err = await self.upload(gw, os.urandom(5000), bob)
        self.assertEqual((code, err["error"]), (413, "quota_exceeded"))
        code, me, _ = await call("GET", gw.url("/api/users/me/stats"), bob)
        self.assertEqual((me["quota"], me["bytes_remaining"]), (10_000, 4_000))
        code, f2 = await self.upload(gw, os.urandom(3000), bob)
        self.assertEqual(code, 201, f2)
        # null: the default again
        code, user, _ = await call("PUT", gw.url(f"/api/admin/users/{BOB_PUB}"), admin,
                                   {"storage_limit": None})
        self.assertEqual((user["storage_limit"], user["quota"]), (None, 1_000_000))
        code, f3 = await self.upload(gw, os.urandom(5000), bob)
        self.assertEqual(code, 201, f3)
        code, users, _ = await call("GET", gw.url("/api/admin/users"), admin)
        self.assertEqual([(u["pubkey"], u["files"], u["bytes_used"]) for u in users["users"]],
                         [(BOB_PUB, 3, 14_000)])
        code, page, _ = await call("GET", gw.url(f"/api/admin/users?q={BOB_PUB[:6]}&limit=1"),
                                   admin)
        self.assertEqual((page["total"], page["next_offset"]), (1, None))
        code, page, _ = await call("GET", gw.url("/api/admin/users?banned=true"), admin)
        self.assertEqual(page["users"], [])
        code, err, _ = await call("GET", gw.url("/api/admin/users?q=xyz"), admin)
        self.assertEqual((code, err["error"]), (400, "invalid_field"))
        code, audit, _ = await call("GET", gw.url(f"/api/admin/audit?target={BOB_PUB}"), admin)
        self.assertEqual([(e["admin"], e["action"]) for e in audit["entries"]],
                         [(ADMIN_PUB, "user.update")] * 2)

    async def test_a_ban_refuses_sign_in_requests_and_uploads_until_lifted(self) -> None:
        gw = self.start()
        admin = await self.session(gw, ADMIN)
        bob = await self.session(gw, BOB)
        code, err, _ = await call("PUT", gw.url(f"/api/admin/users/{ADMIN_PUB}"), admin,
                                  {"banned": True})
        self.assertEqual((code, err["error"]), (400, "cannot_ban_admin"))
        code, user, _ = await call("PUT", gw.url(f"/api/admin/users/{BOB_PUB}"), admin,
                                   {"banned": True})
        self.assertEqual((code, user["banned"]), (200, True))
        data = os.urandom(4000)
        # the session he had, a new sign-in, NIP-98, a Blossom token: 403 banned
        code, err, _ = await call("GET", gw.url("/api/users/me/stats"), bob)
        self.assertEqual((code, err["error"]), (403, "banned"))
        code, err = await self.login(gw, BOB)
        self.assertEqual((code, err["error"]), (403, "banned"))
        self.assertIn("banned", err["message"])
        url = gw.url("/api/upload")
        code, err, _ = await call("PUT", url, data=data, headers={
            "X-Filename": "x.bin", "Authorization": nip98(url, "PUT", BOB, data)})
        self.assertEqual((code, err["error"]), (403, "banned"))
        code, err, headers = await self.blossom_upload(gw, data, BOB)
        self.assertEqual((code, err["error"]), (403, "banned"))
        self.assertIn(b"banned", headers.getRawHeaders(b"x-reason")[0])
        code, err, _ = await call("GET", gw.url("/api/admin/stats"), admin)
        self.assertEqual(code, 200)
        self.assertEqual(err["users"]["banned"], 1)
        code, page, _ = await call("GET", gw.url("/api/admin/users?banned=true"), admin)
        self.assertEqual([u["pubkey"] for u in page["users"]], [BOB_PUB])
        # lifted: everything works again, the old session too
        code, user, _ = await call("PUT", gw.url(f"/api/admin/users/{BOB_PUB}"), admin,
                                   {"banned": False})
        self.assertEqual((code, user["banned"]), (200, False))
        code, _, _ = await call("GET", gw.url("/api/users/me/stats"), bob)
        self.assertEqual(code, 200)
        await self.session(gw, BOB)
        data = os.urandom(4000)  # another body: another NIP-98 event (ids are used once)
        code, f, _ = await call("PUT", url, data=data, headers={
            "X-Filename": "x.bin", "Authorization": nip98(url, "PUT", BOB, data)})
        self.assertEqual(code, 201, f)
        code, blob, _ = await self.blossom_upload(gw, os.urandom(100), BOB)
        self.assertEqual(code, 201, blob)

    async def test_a_ban_with_delete_files_drops_the_users_references(self) -> None:
        gw = self.start()
        admin = await self.session(gw, ADMIN)
        bob = await self.session(gw, BOB)
        alice = await self.session(gw, ALICE)
        own, shared = os.urandom(1000), os.urandom(1500)
        _, f_own = await self.upload(gw, own, bob)
        _, f_shared = await self.upload(gw, shared, bob)
        await self.upload(gw, shared, alice)
        code, user, _ = await call("PUT", gw.url(f"/api/admin/users/{BOB_PUB}"), admin,
                                   {"banned": True, "delete_files": True})
        self.assertEqual((code, user["references_removed"], user["files_deleted"], user["files"]),
                         (200, 2, 1, 0))
        code, _, _ = await call("GET", gw.url(f"/api/download/{f_own['sha256']}"))
        self.assertEqual(code, 404)
        code, _, _ = await call("GET", gw.url(f"/api/download/{f_shared['sha256']}"))
        self.assertEqual(code, 200)  # Alice still owns it
        # not tombstoned: the content was not judged, anyone may upload it again
        code, again = await self.upload(gw, own, alice)
        self.assertEqual(code, 201, again)

    # ------------------------------------------------------------------ files

    async def test_files_search_and_delete_blocks_every_way_in(self) -> None:
        gw = self.start(media=True)
        admin = await self.session(gw, ADMIN)
        bob = await self.session(gw, BOB)
        data = os.urandom(5000)
        code, f = await self.upload(gw, data, bob, name="holiday-video.mp4")
        _, other = await self.upload(gw, os.urandom(10), None, name="notes.txt")
        sha, ih = f["sha256"], f["info_hash"]
        for q, found in ((sha[:10], [sha]), (ih[:12], [sha]), (BOB_PUB[:8], [sha]),
                         ("IDAY-vid", [sha]), ("notes", [other["sha256"]]),
                         ("", [other["sha256"], sha]), ("%", []), ("_", [])):
            code, page, _ = await call("GET", gw.url(f"/api/admin/files?q={q}"), admin)
            self.assertEqual(code, 200, page)
            self.assertEqual(sorted(x["sha256"] for x in page["files"]), sorted(found), q)
        for bad in ("q=" + "x" * 257, "blocked=maybe", "limit=0", "offset=x"):
            code, err, _ = await call("GET", gw.url(f"/api/admin/files?{bad}"), admin)
            self.assertEqual((code, err["error"]), (400, "invalid_field"), bad)
        code, page, _ = await call("GET", gw.url("/api/admin/files?limit=1"), admin)
        self.assertEqual((len(page["files"]), page["total"], page["next_offset"]), (1, 2, 1))
        [entry] = [x for x in (await call("GET", gw.url(f"/api/admin/files?q={sha}"),
                                          admin))[1]["files"]]
        self.assertEqual([o["pubkey"] for o in entry["owners"]], [BOB_PUB])
        # bad input: nothing changes
        for path, body, status, error in (
                (f"/api/admin/files/{'zz' * 32}", None, 400, "invalid_hash"),
                (f"/api/admin/files/{'00' * 32}", None, 404, "file_not_found"),
                (f"/api/admin/files/{sha}", {"reason": 5}, 400, "invalid_field"),
                (f"/api/admin/files/{sha}", {"why": "x"}, 400, "invalid_field"),
                (f"/api/admin/files/{sha}", b"[", 400, "invalid_json")):
            code, err, _ = await call("DELETE", gw.url(path), admin, body)
            self.assertEqual((code, err["error"]), (status, error), path)
        code, _, _ = await call("GET", gw.url(f"/api/download/{sha}"))
        self.assertEqual(code, 200)
        # deleted and tombstoned
        code, done, _ = await call("DELETE", gw.url(f"/api/admin/files/{sha}"), admin,
                                   {"reason": "copyright"})
        self.assertEqual(code, 200, done)
        self.assertEqual((done["blocked"], done["file_deleted"], done["info_hash"], done["owners"]),
                         (True, True, ih, [BOB_PUB]))
        code, _, _ = await call("GET", gw.url(f"/api/download/{sha}"))
        self.assertEqual(code, 404)
        await self.assert_refused_everywhere(gw, data, bob)
        code, blocked, _ = await call("GET", gw.url("/api/admin/files?blocked=true"), admin)
        self.assertEqual([(b["sha256"], b["info_hash"], b["reason"], b["blocked_by"])
                          for b in blocked["blocked"]], [(sha, ih, "copyright", ADMIN_PUB)])
        # again: still 200 (the tombstone is there), nothing more happens
        code, again, _ = await call("DELETE", gw.url(f"/api/admin/files/{sha}"), admin)
        self.assertEqual((code, again["newly_blocked"], again["file_deleted"]), (200, False, False))
        code, audit, _ = await call("GET", gw.url(f"/api/admin/audit?target={sha}"), admin)
        self.assertEqual([(e["admin"], e["action"], e["detail"]["reason"])
                          for e in audit["entries"]],
                         [(ADMIN_PUB, "file.delete", ""), (ADMIN_PUB, "file.delete", "copyright")])
        # the block list survives a restart
        await gw.stop()
        gw2 = self.start(media=True)
        bob2 = await self.session(gw2, BOB)
        await self.assert_refused_everywhere(gw2, data, bob2)

    async def assert_refused_everywhere(self, gw: RunningGateway, data: bytes, token: str) -> None:
        """The same bytes: the gateway API (signed in and anonymous), Blossom PUT /upload (and
        its HEAD preflight), BUD-05 /media (the original is refused, though its optimised copy
        would be other bytes) and a Blossom mirror of a URL serving them."""
        for who in (token, None):
            code, err = await self.upload(gw, data, who)
            self.assertEqual((code, err["error"]), (403, "file_blocked"))
        code, err, headers = await self.blossom_upload(gw, data, BOB)
        self.assertEqual((code, err["error"]), (403, "file_blocked"))
        self.assertIn(b"removed by the operator", headers.getRawHeaders(b"x-reason")[0])
        sha = hashlib.sha256(data).hexdigest()
        assert gw.blossom_base is not None
        for path, verb in (("/upload", "upload"), ("/media", "media")):
            auth = tokens.encode(tokens.make_event(verb, hashes=(sha,), secret=bytes.fromhex(BOB)))
            code, _, headers = await call("HEAD", gw.blossom_base + path, headers={
                "Authorization": auth, "X-SHA-256": sha, "X-Content-Length": str(len(data)),
                "X-Content-Type": "image/png"})
            self.assertEqual(code, 403, path)
            self.assertIn(b"removed by the operator", headers.getRawHeaders(b"x-reason")[0])
            # the body without X-SHA-256: refused once its hash is known
            code, err, _ = await call("PUT", gw.blossom_base + path, data=data, headers={
                "Authorization": auth, "Content-Type": "image/png"})
            self.assertEqual((code, err["error"]), (403, "file_blocked"), path)
        root = Resource()
        root.putChild(b"same.bin", Data(data, "application/octet-stream"))
        port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        mirror_token = tokens.encode(tokens.make_event("upload", hashes=(sha,),
                                                       secret=bytes.fromhex(BOB)))
        assert gw.blossom_base is not None
        code, err, _ = await call(
            "PUT", gw.blossom_base + "/mirror",
            body={"url": f"http://127.0.0.1:{port.getHost().port}/same.bin"},
            headers={"Authorization": mirror_token})
        self.assertEqual((code, err["error"]), (403, "file_blocked"))
        code, _, _ = await call("GET", gw.url(f"/api/download/{sha}"))
        self.assertEqual(code, 404)

    # ------------------------------------------------------------------ reports

    async def test_reports_dismiss_and_ban_the_uploader(self) -> None:
        gw = self.start()
        admin = await self.session(gw, ADMIN)
        assert gw.blossom_base is not None
        bad, fine = os.urandom(2000), os.urandom(2100)
        code, blob, _ = await self.blossom_upload(gw, bad, BOB)
        self.assertEqual(code, 201, blob)
        code, blob2, _ = await self.blossom_upload(gw, fine, BOB)
        code, r1, _ = await call("PUT", gw.blossom_base + "/report",
                                 data=report_event(ALICE, blob["sha256"]))
        self.assertEqual(code, 200, r1)
        code, r2, _ = await call("PUT", gw.blossom_base + "/report",
                                 data=report_event(ADMIN, blob2["sha256"]))
        code, page, _ = await call("GET", gw.url("/api/admin/reports"), admin)
        self.assertEqual(code, 200, page)
        self.assertEqual(page["total"], 2)
        mine = {r["id"]: r for r in page["reports"]}[r1["id"]]
        self.assertEqual((mine["reporter"], mine["status"], mine["content"]),
                         (public_key_hex(bytes.fromhex(ALICE)), "open", "spam"))
        self.assertEqual(mine["blobs"], [{"sha256": blob["sha256"], "type": "spam",
                                          "stored": True, "blocked": False,
                                          "uploaders": [BOB_PUB]}])
        # bad input: nothing changes
        for rid, body, status, error in (
                (r1["id"], {"action": "burn"}, 400, "invalid_action"),
                (r1["id"], {}, 400, "invalid_action"),
                (r1["id"], {"action": "delete", "delete_files": True}, 400, "invalid_field"),
                (r1["id"], {"action": "ban", "extra": 1}, 400, "invalid_field"),
                ("zz", {"action": "ban"}, 400, "invalid_hash"),
                ("00" * 32, {"action": "ban"}, 404, "report_not_found")):
            code, err, _ = await call("POST", gw.url(f"/api/admin/reports/{rid}"), admin, body)
            self.assertEqual((code, err["error"]), (status, error), body)
        for bad_query in ("status=new", "sha256=xyz", "limit=0"):
            code, err, _ = await call("GET", gw.url(f"/api/admin/reports?{bad_query}"), admin)
            self.assertEqual(code, 400, bad_query)
        code, _, _ = await call("GET", gw.blossom_base + f"/{blob['sha256']}")
        self.assertEqual(code, 200)
        self.assertEqual((await self.admin_user(gw, admin, BOB_PUB))["banned"], False)
        # dismissed: nothing else happens
        code, done, _ = await call("POST", gw.url(f"/api/admin/reports/{r2['id']}"), admin,
                                   {"action": "dismiss"})
        self.assertEqual((code, done["status"]), (200, "dismissed"))
        code, _, _ = await call("GET", gw.blossom_base + f"/{blob2['sha256']}")
        self.assertEqual(code, 200)
        # ban: the blob is deleted (and tombstoned), the uploader banned
        code, done, _ = await call("POST", gw.url(f"/api/admin/reports/{r1['id']}"), admin,
                                   {"action": "ban"})
        self.assertEqual(code, 200, done)
        self.assertEqual((done["status"], done["banned"]), ("actioned", [BOB_PUB]))
        self.assertEqual([(x["sha256"], x["file_deleted"]) for x in done["files"]],
                         [(blob["sha256"], True)])
        code, _, _ = await call("GET", gw.blossom_base + f"/{blob['sha256']}")
        self.assertEqual(code, 404)
        self.assertEqual((await self.admin_user(gw, admin, BOB_PUB))["banned"], True)
        code, err, _ = await self.blossom_upload(gw, os.urandom(50), BOB)
        self.assertEqual((code, err["error"]), (403, "banned"))
        code, err, _ = await self.blossom_upload(gw, bad, ALICE)
        self.assertEqual((code, err["error"]), (403, "file_blocked"))
        code, page, _ = await call("GET", gw.url("/api/admin/reports?status=all"), admin)
        self.assertEqual(sorted(r["status"] for r in page["reports"]), ["actioned", "dismissed"])
        code, page, _ = await call("GET", gw.url("/api/admin/reports"), admin)
        self.assertEqual(page["reports"], [])
        code, audit, _ = await call("GET", gw.url("/api/admin/audit"), admin)
        self.assertEqual([e["action"] for e in audit["entries"]],
                         ["report.ban", "user.update", "report.dismiss"])

    async def test_report_delete_action(self) -> None:
        gw = self.start()
        admin = await self.session(gw, ADMIN)
        assert gw.blossom_base is not None
        code, blob, _ = await self.blossom_upload(gw, os.urandom(900), BOB)
        code, r1, _ = await call("PUT", gw.blossom_base + "/report",
                                 data=report_event(ALICE, blob["sha256"]))
        code, done, _ = await call("POST", gw.url(f"/api/admin/reports/{r1['id']}"), admin,
                                   {"action": "delete"})
        self.assertEqual((code, done["status"], done["banned"]), (200, "actioned", []))
        code, _, _ = await call("GET", gw.blossom_base + f"/{blob['sha256']}")
        self.assertEqual(code, 404)
        self.assertFalse((await self.admin_user(gw, admin, BOB_PUB))["banned"])
