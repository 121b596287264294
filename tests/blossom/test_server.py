"""The Blossom server's own routes and what holds for every route (:mod:`tgateway.blossom.server`):
the scope of a token's ``server`` tags, and BUD-09 reports, on a loopback site over a real
content store (trial, real reactor)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from twisted.internet.defer import Deferred

from tgateway.nostr.event import EventTemplate, public_key_hex, sign
from tgateway.ratelimit import KeyedLimiter
from tgateway.storage.blossom_reports import ReportLimits

from .helpers import PUB, BlossomRoutes, d, sha
from .tokens import SECRET, bad_signature, header


class ServerScope(BlossomRoutes):
    """``server`` tags are checked against the configured or listening address, never Host."""

    def test_host_header_does_not_widen_the_scope(self) -> Deferred[None]:
        async def go() -> None:
            data = b"scoped blob " * 50
            h = sha(data)
            self.assertEqual((await self.upload(data)).code, 201)
            for host in ("evil.example", "evil.example:8082", "EVIL.example."):
                token = header("delete", hashes=(h,), servers=("evil.example",))
                r = await self.http.delete(f"{self.lb.url}/{h}",
                                           headers={"Authorization": token, "Host": host})
                self.assertEqual(r.code, 401, host)
                self.assertEqual((await r.json())["error"], "wrong_server")
                self.assertIn("another server", r.headers.getRawHeaders("x-reason")[0])
            self.assertEqual((await self.stored())["files"], 1)
            # the listening address is this server, whatever Host says
            token = header("delete", hashes=(h,), servers=("127.0.0.1",))
            r = await self.http.delete(f"{self.lb.url}/{h}",
                                       headers={"Authorization": token, "Host": "evil.example"})
            self.assertEqual(r.code, 200, await r.text())
            self.assertEqual((await self.stored())["files"], 0)

        return d(go())


class ServerScopePublicUrl(BlossomRoutes):
    blossom = {"public_url": "https://blossom.example.org"}

    def test_configured_public_host_is_the_scope(self) -> Deferred[None]:
        async def go() -> None:
            data = b"public scope " * 50
            h = sha(data)
            for servers, host, code in (
                (("127.0.0.1",), "127.0.0.1", 401),  # the listening address is not the name
                (("evil.example",), "evil.example", 401),
                (("blossom.example.org",), "evil.example", 201),
                (("https://Blossom.Example.org/",), "127.0.0.1", 200),
            ):
                r = await self.put("/upload", data, {
                    "X-SHA-256": h, "Host": host,
                    "Authorization": header("upload", hashes=(h,), servers=servers)})
                self.assertEqual(r.code, code, servers)

        return d(go())


def report_event(blobs: tuple[str, ...], secret: bytes = SECRET, content: str = "bad file",
                 created_at: int = 1700000000) -> dict[str, Any]:
    tags = tuple(("x", b, "malware") for b in blobs) + (("p", PUB),)
    return sign(EventTemplate(kind=1984, created_at=created_at, tags=tags, content=content),
                secret).to_json()


def fresh_key(i: int) -> bytes:
    return hashlib.sha256(b"reporter %d" % i).digest()


class _ReportCalls(BlossomRoutes):
    async def stored_blob(self, data: bytes) -> str:
        r = await self.upload(data)
        self.assertEqual(r.code, 201, await r.text())
        return sha(data)

    async def report(self, ev: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        r = await self.put("/report", json.dumps(ev).encode(), {"Content-Type": "application/json"})
        body = await r.json()
        if r.code != 200:
            self.assertEqual(r.headers.getRawHeaders("x-reason"), [body["message"]])
        return r.code, body

    async def report_rows(self) -> int:
        return int(self.lb.db.run_sync(
            lambda c: c.execute("SELECT count(*) FROM blossom_reports").fetchone()[0]))

    def generous_rate(self) -> None:
        self.lb.server.report_limiter = KeyedLimiter(1000.0, 1000)


class Reports(_ReportCalls):
    """BUD-09 reports need no sign-in: only about stored blobs, bounded in size and count."""

    def test_report_stored_for_admin(self) -> Deferred[None]:
        async def go() -> None:
            target = await self.stored_blob(b"reported blob " * 30)
            ev = report_event((target,))
            code, _ = await self.report(ev)
            self.assertEqual(code, 200)
            reports = await self.lb.bstore.reports()
            self.assertEqual([(x.id, x.blobs) for x in reports], [(ev["id"], ((target, "malware"),))])
            self.assertEqual((await self.report(ev))[0], 200)  # the same report again: fine
            self.assertEqual(await self.report_rows(), 1)
            code, _ = await self.report(bad_signature(ev))
            self.assertEqual(code, 400)
            ev2 = sign(EventTemplate(kind=1, created_at=1700000000, tags=(("x", target),),
                                     content=""), SECRET).to_json()
            self.assertEqual((await self.report(ev2))[0], 400)

        return d(go())

    def test_unknown_blobs_and_large_reports_store_nothing(self) -> Deferred[None]:
        """What grew the database by 36.5 MB (200 reports of 53 KB from fresh keys about blobs
        that do not exist) is refused now, and nothing of it is stored."""

        async def go() -> None:
            self.generous_rate()
            target = await self.stored_blob(b"one stored blob " * 30)
            big = "A" * 53_000
            for i in range(100):
                code, body = await self.report(report_event((f"{i:064x}",), fresh_key(i), big))
                self.assertEqual((code, body["error"]), (413, "report_too_large"))
                code, body = await self.report(report_event((f"{i:064x}",), fresh_key(i)))
                self.assertEqual((code, body["error"]), (404, "blob_not_found"))
            # one unknown blob among known ones: the whole report is refused
            code, body = await self.report(report_event((target, "ab" * 32)))
            self.assertEqual((code, body["error"]), (404, "blob_not_found"))
            self.assertIn("ab" * 32, body["message"])
            code, body = await self.report(report_event((target,), content="x" * 4097))
            self.assertEqual((code, body["error"]), (413, "report_too_large"))
            many = tuple(f"{i:064x}" for i in range(17))
            code, body = await self.report(report_event(many))
            self.assertEqual((code, body["error"]), (400, "invalid_event"))
            self.assertEqual(await self.report_rows(), 0)
            self.assertEqual((await self.report(report_event((target,), content="x" * 4096)))[0],
                             200)

        return d(go())

    def test_open_reports_are_capped_per_reporter_per_blob_and_in_all(self) -> Deferred[None]:
        async def go() -> None:
            self.generous_rate()
            self.lb.server.report_limits = ReportLimits(max_open=6, per_reporter=2, per_blob=3)
            a = await self.stored_blob(b"blob a " * 40)
            b = await self.stored_blob(b"blob b " * 40)
            c = await self.stored_blob(b"blob c " * 40)
            # one reporter: two open reports, the third is refused
            self.assertEqual((await self.report(report_event((a,), fresh_key(1), "1")))[0], 200)
            self.assertEqual((await self.report(report_event((b,), fresh_key(1), "2")))[0], 200)
            code, body = await self.report(report_event((c,), fresh_key(1), "3"))
            self.assertEqual((code, body["error"]), (429, "too_many_reports"))
            # one blob: three open reports, from anyone
            self.assertEqual((await self.report(report_event((a,), fresh_key(2))))[0], 200)
            self.assertEqual((await self.report(report_event((a,), fresh_key(3))))[0], 200)
            code, body = await self.report(report_event((a,), fresh_key(4)))
            self.assertEqual((code, body["error"]), (429, "too_many_reports"))
            self.assertIn(a, body["message"])
            # in all: six open reports, then 507 for anyone about anything
            self.assertEqual((await self.report(report_event((b,), fresh_key(5))))[0], 200)
            self.assertEqual((await self.report(report_event((c,), fresh_key(6))))[0], 200)
            code, body = await self.report(report_event((c,), fresh_key(7)))
            self.assertEqual((code, body["error"]), (507, "reports_full"))
            self.assertEqual(await self.report_rows(), 6)
            # handled reports stop counting
            for r in await self.lb.bstore.reports():
                if r.pubkey == public_key_hex(fresh_key(1)):
                    await self.lb.bstore.set_report_status(r.id, "dismissed")
            self.assertEqual((await self.report(report_event((c,), fresh_key(7))))[0], 200)
            self.assertEqual((await self.report(report_event((c,), fresh_key(1), "4")))[0], 200)

        return d(go())

    def test_reports_per_address_are_rate_limited(self) -> Deferred[None]:
        async def go() -> None:
            target = await self.stored_blob(b"rate limited " * 30)
            self.lb.server.report_limiter = KeyedLimiter(1 / 60, 2)
            for i in range(2):
                self.assertEqual((await self.report(report_event((target,), fresh_key(i))))[0],
                                 200)
            code, body = await self.report(report_event((target,), fresh_key(9)))
            self.assertEqual((code, body["error"]), (429, "rate_limited"))
            self.assertEqual(await self.report_rows(), 2)

        return d(go())


class ReportsConfigured(_ReportCalls):
    blossom = {"max_open_reports": 1}

    def test_max_open_reports_from_the_config(self) -> Deferred[None]:
        async def go() -> None:
            target = await self.stored_blob(b"configured cap " * 30)
            self.assertEqual(self.lb.server.report_limits.max_open, 1)
            self.assertEqual((await self.report(report_event((target,), fresh_key(1))))[0], 200)
            code, body = await self.report(report_event((target,), fresh_key(2)))
            self.assertEqual((code, body["error"]), (507, "reports_full"))

        return d(go())
