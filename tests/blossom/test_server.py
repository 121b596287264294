"""Blossom routes on a loopback site over a real content store (trial, real reactor)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import treq.client
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from tgateway.nostr.event import EventTemplate, public_key_hex, sign
from tgateway.ratelimit import KeyedLimiter
from tgateway.storage.blossom_reports import ReportLimits

from .helpers import Loopback, sha
from .tokens import SECRET, bad_signature, encode, header, make_event

PUB = public_key_hex(SECRET)


def client() -> treq.client.HTTPClient:
    return treq.client.HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


def d(coro: Any) -> Deferred[Any]:
    return ensureDeferred(coro)


class BlossomRoutes(TestCase):
    blossom: dict[str, Any] = {}
    sections: dict[str, Any] = {}

    def setUp(self) -> Deferred[None]:
        self.http = client()
        tmp = tempfile.mkdtemp(prefix="tgw-blossom-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.lb = Loopback(Path(tmp), dict(self.blossom), **dict(self.sections))

        async def go() -> None:
            await self.lb.start()
            self.addCleanup(lambda: d(self.lb.stop()))

        return d(go())

    async def put(self, path: str, data: bytes, headers: dict[str, str] | None = None) -> Any:
        return await self.http.put(self.lb.url + path, data=data, headers=headers or {})

    async def upload(self, data: bytes, **hdrs: str) -> Any:
        h = {"X-SHA-256": sha(data), "Authorization": header("upload", hashes=(sha(data),))}
        h.update(hdrs)
        return await self.put("/upload", data, h)

    async def stored(self) -> dict[str, int]:
        return await self.lb.store.stats()


class UploadGetList(BlossomRoutes):
    def test_upload_get_head_range_list_delete(self) -> Deferred[None]:
        async def go() -> None:
            data = b"%PDF-1.4 hello blossom" * 100
            r = await self.upload(data, **{"Content-Type": "application/pdf"})
            self.assertEqual(r.code, 201)
            self.assertEqual(r.headers.getRawHeaders("access-control-allow-origin"), ["*"])
            desc = await r.json()
            self.assertEqual(desc["sha256"], sha(data))
            self.assertEqual(desc["size"], len(data))
            self.assertEqual(desc["type"], "application/pdf")
            self.assertTrue(desc["url"].endswith(sha(data) + ".pdf"))
            self.assertTrue(desc["magnet"].startswith("magnet:?xt=urn:btih:" + desc["infohash"]))
            tags = dict((t[0], t[1]) for t in desc["nip94"])
            self.assertEqual(tags["x"], sha(data))
            self.assertEqual(tags["i"], desc["infohash"])
            self.assertEqual(tags["m"], "application/pdf")
            # again: 200, same descriptor
            r2 = await self.upload(data)
            self.assertEqual(r2.code, 200)
            self.assertEqual((await r2.json())["uploaded"], desc["uploaded"])

            r = await self.http.get(desc["url"])
            self.assertEqual(r.code, 200)
            self.assertEqual(await r.content(), data)
            self.assertEqual(r.headers.getRawHeaders("content-type"), ["application/pdf"])
            r = await self.http.head(f"{self.lb.url}/{sha(data)}")
            self.assertEqual(r.code, 200)
            self.assertEqual(r.headers.getRawHeaders("content-length"), [str(len(data))])
            r = await self.http.get(f"{self.lb.url}/{sha(data)}.bin", headers={"Range": "bytes=5-9"})
            self.assertEqual(r.code, 206)
            self.assertEqual(await r.content(), data[5:10])

            r = await self.http.get(f"{self.lb.url}/list/{PUB}")
            listed = await r.json()
            self.assertEqual([b["sha256"] for b in listed], [sha(data)])
            r = await self.http.get(f"{self.lb.url}/list/{PUB}?since={desc['uploaded'] + 10}")
            self.assertEqual(await r.json(), [])
            r = await self.http.get(f"{self.lb.url}/list/{PUB}?until={desc['uploaded'] - 10}")
            self.assertEqual(await r.json(), [])

            # delete needs a token with this x
            r = await self.http.delete(f"{self.lb.url}/{sha(data)}")
            self.assertEqual(r.code, 401)
            self.assertTrue(r.headers.getRawHeaders("x-reason"))
            r = await self.http.delete(f"{self.lb.url}/{sha(data)}",
                                       headers={"Authorization": header("delete",
                                                                        hashes=("00" * 32,))})
            self.assertEqual(r.code, 401)
            r = await self.http.delete(f"{self.lb.url}/{sha(data)}",
                                       headers={"Authorization": header("delete",
                                                                        hashes=(sha(data),))})
            self.assertEqual(r.code, 200)
            r = await self.http.get(desc["url"])
            self.assertEqual(r.code, 404)
            self.assertTrue(r.headers.getRawHeaders("x-reason"))
            self.assertEqual(r.headers.getRawHeaders("access-control-allow-origin"), ["*"])
            self.assertEqual((await self.stored())["files"], 0)

        return d(go())

    def test_list_paging(self) -> Deferred[None]:
        async def go() -> None:
            blobs = [f"blob {i}".encode() * 10 for i in range(5)]
            for b in blobs:
                self.assertEqual((await self.upload(b)).code, 201)
            got: list[str] = []
            cursor = ""
            for _ in range(5):
                q = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
                page = await (await self.http.get(f"{self.lb.url}/list/{PUB}{q}")).json()
                if not page:
                    break
                got += [b["sha256"] for b in page]
                cursor = page[-1]["sha256"]
            self.assertEqual(sorted(got), sorted(sha(b) for b in blobs))
            self.assertEqual(len(got), 5)

        return d(go())

    def test_hash_mismatch_stores_nothing(self) -> Deferred[None]:
        async def go() -> None:
            data = b"some bytes" * 50
            wrong = "00" * 32
            r = await self.put("/upload", data, {
                "X-SHA-256": wrong, "Authorization": header("upload", hashes=(wrong,))})
            self.assertEqual(r.code, 409)
            self.assertTrue(r.headers.getRawHeaders("x-reason"))
            self.assertEqual((await self.stored())["files"], 0)
            # no X-SHA-256, token for another blob: 401 after hashing, nothing stored
            r = await self.put("/upload", data, {"Authorization": header("upload", hashes=(wrong,))})
            self.assertEqual(r.code, 401)
            self.assertEqual((await self.stored())["files"], 0)
            leftovers = [p for p in (self.lb.tmp / "blobs").rglob("*") if p.is_file()]
            self.assertEqual(leftovers, [])

        return d(go())

    def test_bad_tokens_are_401_with_reason(self) -> Deferred[None]:
        async def go() -> None:
            data = b"token test" * 20
            h = sha(data)
            cases = {
                "expired": header("upload", hashes=(h,), expiration=1),
                "wrong t": header("delete", hashes=(h,)),
                "wrong x": header("upload", hashes=("11" * 32,)),
                "other server": header("upload", hashes=(h,), servers=("blossom.example.org",)),
                "bad signature": encode(bad_signature(make_event("upload", hashes=(h,)))),
                "malformed base64": "Nostr ###",
                "missing": None,
            }
            for name, value in cases.items():
                hdrs = {"X-SHA-256": h}
                if value is not None:
                    hdrs["Authorization"] = value
                r = await self.put("/upload", data, hdrs)
                self.assertEqual(r.code, 401, name)
                self.assertTrue(r.headers.getRawHeaders("x-reason"), name)
                body = await r.json()
                self.assertIn("message", body)
            self.assertEqual((await self.stored())["files"], 0)
            # this server's own domain in a server tag is fine; base64url unpadded too
            r = await self.put("/upload", data, {"X-SHA-256": h, "Authorization": encode(
                make_event("upload", hashes=(h,), servers=("127.0.0.1",)), urlsafe=True,
                pad=False)})
            self.assertEqual(r.code, 201)

        return d(go())

    def test_size_limit_before_reading_and_preflight(self) -> Deferred[None]:
        async def go() -> None:
            big = 1000 + self.lb.server.max_blob
            r = await self.http.head(self.lb.url + "/upload", headers={
                "X-Content-Length": str(big), "X-SHA-256": "ab" * 32,
                "Authorization": header("upload", hashes=("ab" * 32,))})
            self.assertEqual(r.code, 413)
            self.assertTrue(r.headers.getRawHeaders("x-reason"))
            r = await self.http.head(self.lb.url + "/upload", headers={"X-Content-Length": "10"})
            self.assertEqual(r.code, 401)
            r = await self.http.head(self.lb.url + "/upload", headers={
                "X-SHA-256": "ab" * 32, "Authorization": header("upload", hashes=("ab" * 32,))})
            self.assertEqual(r.code, 411)
            r = await self.http.head(self.lb.url + "/upload", headers={
                "X-Content-Length": "10", "X-SHA-256": "ab" * 32,
                "Authorization": header("upload", hashes=("ab" * 32,))})
            self.assertEqual(r.code, 200)
            r = await self.http.request("OPTIONS", self.lb.url + "/upload")
            self.assertEqual(r.code, 204)
            self.assertEqual(r.headers.getRawHeaders("access-control-allow-origin"), ["*"])
            self.assertIn("Authorization", r.headers.getRawHeaders("access-control-allow-headers")[0])
            self.assertIn("PUT", r.headers.getRawHeaders("access-control-allow-methods")[0])

        return d(go())


class SmallLimits(BlossomRoutes):
    blossom = {"max_blob_size": 1000, "rate_limit": {"requests_per_minute": 60, "burst_size": 4}}
    sections = {"admin": {"default_user_storage_limit": 1500}}

    def test_413_before_body_and_quota(self) -> Deferred[None]:
        async def go() -> None:
            r = await self.upload(b"x" * 2000)
            self.assertEqual(r.code, 413)
            self.assertTrue(r.headers.getRawHeaders("x-reason"))
            r = await self.upload(b"y" * 900)
            self.assertEqual(r.code, 201)
            r = await self.upload(b"z" * 900)  # 1800 > quota 1500
            self.assertEqual(r.code, 413)
            self.assertIn("quota", (await r.json())["message"])
            # without Content-Length the body is cut off at the quota, nothing stored
            import io

            from twisted.web.client import FileBodyProducer
            from twisted.web.iweb import UNKNOWN_LENGTH

            data = b"w" * 900
            producer = FileBodyProducer(io.BytesIO(data))
            producer.length = UNKNOWN_LENGTH
            r = await self.http.put(self.lb.url + "/upload", data=producer, headers={
                "Authorization": header("upload", hashes=(sha(data),))})
            self.assertEqual(r.code, 413)
            self.assertEqual((await self.stored())["files"], 1)
            # four uploads: the burst of blossom_server.rate_limit is spent
            r = await self.upload(b"v" * 10)
            self.assertEqual(r.code, 429)
            self.assertTrue(r.headers.getRawHeaders("retry-after"))
            self.assertTrue(r.headers.getRawHeaders("x-reason"))
            # reads count in the download class, not in the class of costly requests
            for path in ("/", "/" + sha(b"y" * 900), "/" + sha(b"y" * 900) + ".bin"):
                r = await self.http.get(self.lb.url + path)
                self.assertEqual(r.code, 200, path)

        return d(go())


class OneStore(BlossomRoutes):
    sections = {"storage": {"blob_threshold": 32768, "chunk_size": 16384}}

    def test_gateway_upload_served_by_blossom_and_back(self) -> Deferred[None]:
        async def go() -> None:
            data = bytes(range(256)) * 400  # 102,400 bytes: chunked (threshold 32 KiB)
            r = await self.http.post(self.lb.api_url + "/api/upload", data=data,
                                     headers={"X-Filename": "data.bin"})
            self.assertEqual(r.code, 201, await r.text())
            self.assertEqual((await r.json())["storage"], "chunked")
            r = await self.http.get(f"{self.lb.url}/{sha(data)}")
            self.assertEqual(await r.content(), data)
            r = await self.http.get(f"{self.lb.url}/{sha(data)}",
                                    headers={"Range": "bytes=40000-50000"})
            self.assertEqual(r.code, 206)
            self.assertEqual(await r.content(), data[40000:50001])
            # a Blossom upload is a gateway download and a torrent
            blob = b"blossom side" * 10
            r = await self.upload(blob)
            self.assertEqual(r.code, 201)
            r = await self.http.get(f"{self.lb.api_url}/api/download/{sha(blob)}")
            self.assertEqual(await r.content(), blob)
            r = await self.http.get(f"{self.lb.api_url}/api/torrent/{sha(blob)}")
            self.assertEqual(r.code, 200)
            self.assertTrue((await r.content()).startswith(b"d"))

        return d(go())


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


class _CountingSite(Site):
    connections = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        return super().buildProtocol(addr)


class _Origin:
    async def start(self, data: bytes, interface: str = "127.0.0.1") -> str:
        root = Resource()
        root.putChild(b"blob.png", Data(data, "image/png"))
        self.site = _CountingSite(root)
        if ":" in interface:
            from twisted.internet.endpoints import TCP6ServerEndpoint

            self.port = await TCP6ServerEndpoint(reactor, 0, interface=interface).listen(self.site)
            return f"http://[{interface}]:{self.port.getHost().port}/blob.png"
        self.port = await TCP4ServerEndpoint(reactor, 0, interface=interface).listen(self.site)
        return f"http://127.0.0.1:{self.port.getHost().port}/blob.png"


class MirrorPrivateAllowed(BlossomRoutes):
    blossom = {"mirror_allow_private": True}

    def test_mirror(self) -> Deferred[None]:
        async def go() -> None:
            data = b"\x89PNG\r\n\x1a\n" + b"pixels" * 500
            origin = _Origin()
            url = await origin.start(data)
            self.addCleanup(origin.port.stopListening)
            body = json.dumps({"url": url}).encode()
            r = await self.put("/mirror", body, {"Authorization": header("upload", hashes=("00" * 32,))})
            self.assertEqual(r.code, 409)  # downloaded hash not in the token
            self.assertEqual((await self.stored())["files"], 0)
            r = await self.put("/mirror", body, {"Authorization": header("upload", hashes=(sha(data),))})
            self.assertEqual(r.code, 201, await r.text())
            desc = await r.json()
            self.assertEqual(desc["sha256"], sha(data))
            self.assertEqual(desc["type"], "image/png")
            r = await self.http.get(desc["url"])
            self.assertEqual(await r.content(), data)

        return d(go())

    def test_mirror_from_an_ipv6_literal_url(self) -> Deferred[None]:
        async def go() -> None:
            data = b"\x89PNG\r\n\x1a\n" + b"six" * 700
            origin = _Origin()
            url = await origin.start(data, interface="::1")
            self.addCleanup(origin.port.stopListening)
            r = await self.put("/mirror", json.dumps({"url": url}).encode(),
                               {"Authorization": header("upload", hashes=(sha(data),))})
            self.assertEqual(r.code, 201, await r.text())
            self.assertEqual((await r.json())["sha256"], sha(data))
            self.assertEqual(origin.site.connections, 1)

        return d(go())


class MirrorPrivateRefused(BlossomRoutes):
    def test_loopback_refused(self) -> Deferred[None]:
        async def go() -> None:
            data = b"secret" * 10
            origin = _Origin()
            url = await origin.start(data)
            self.addCleanup(origin.port.stopListening)
            auth = {"Authorization": header("upload", hashes=(sha(data),))}
            forms = ("127.0.0.1", "localhost", "2130706433", "0x7f000001", "127.1",
                     "017700000001", "[::ffff:127.0.0.1]")
            for target in (url.replace("127.0.0.1", form) for form in forms):
                r = await self.put("/mirror", json.dumps({"url": target}).encode(), auth)
                self.assertEqual(r.code, 403, target)
                self.assertEqual((await r.json())["error"], "mirror_forbidden")
                self.assertTrue(r.headers.getRawHeaders("x-reason"))
            self.assertEqual(origin.site.connections, 0)
            r = await self.put("/mirror", json.dumps({"url": "file:///etc/passwd"}).encode(), auth)
            self.assertEqual(r.code, 400)
            self.assertEqual((await self.stored())["files"], 0)

        return d(go())


class EarlyAnswers(BlossomRoutes):
    """413 and 401 are sent before the body is read (a huge declared body, few bytes sent)."""

    blossom = {"max_blob_size": 1000}

    def _raw(self, headers: str, body_bytes: int = 1000) -> Deferred[bytes]:
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from twisted.internet.protocol import Protocol

        done: Deferred[bytes] = Deferred()

        class P(Protocol):
            buf = b""

            def connectionMade(self) -> None:
                self.transport.write(headers.encode() + b"x" * body_bytes)  # type: ignore[union-attr]

            def dataReceived(self, data: bytes) -> None:
                self.buf += data
                if b"\r\n\r\n" in self.buf:
                    self.transport.loseConnection()  # type: ignore[union-attr]

            def connectionLost(self, reason: object = None) -> None:
                if not done.called:
                    done.callback(self.buf)

        from twisted.internet.protocol import Factory

        port = int(self.lb.url.rsplit(":", 1)[1])
        TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(P))
        return done

    def test_413_and_401_without_the_body(self) -> Deferred[None]:
        async def go() -> None:
            h = "ab" * 32
            big = await self._raw(
                "PUT /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n"
                f"X-SHA-256: {h}\r\nAuthorization: {header('upload', hashes=(h,))}\r\n\r\n")
            self.assertTrue(big.startswith(b"HTTP/1.1 413"), big[:200])
            self.assertIn(b"X-Reason", big)
            self.assertIn(b"Access-Control-Allow-Origin: *", big)
            noauth = await self._raw(
                "PUT /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 900\r\n\r\n", 900)
            self.assertTrue(noauth.startswith(b"HTTP/1.1 401"), noauth[:200])
            self.assertEqual((await self.stored())["files"], 0)

        return d(go())
