"""Every way a blob comes into Blossom (:mod:`tgateway.blossom.intake`): uploads and their
checks (hashes, tokens, sizes, quota, rate limits, answers before the body) and mirrors, on a
loopback site over a real content store (trial, real reactor)."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from .helpers import BlossomRoutes, d, sha
from .tokens import bad_signature, encode, header, make_event


class UploadChecks(BlossomRoutes):
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
