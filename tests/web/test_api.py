"""The file API through the real plugin on a loopback port: uploads, downloads, errors."""

from __future__ import annotations

import hashlib
import os
import socket
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from harness.gateway import RunningGateway, case_data_dir, small_config, start_gateway
from tgateway import bencode

CS = 16384

# No persistent connections: idle keep-alive sockets would outlive a test (trial's dirty reactor).
http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


def multipart(fields: dict[str, str], file_name: str, data: bytes, ctype: str = "application/octet-stream") -> tuple[bytes, str]:
    boundary = "----tgwtest" + os.urandom(8).hex()
    parts = []
    for k, v in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


async def upload(g: RunningGateway, data: bytes, name: str = "f.bin", **fields: str) -> Any:
    body, ctype = multipart(fields, name, data)
    r = await http.post(g.url("/api/upload"), data=body, headers={"Content-Type": ctype})
    return r, await treq.json_content(r)


async def raw_request(port: int, payload: bytes, read: bool = True) -> bytes:
    """Send raw bytes over TCP (for malformed requests and cut-off bodies) in a thread."""
    from twisted.internet.threads import deferToThread

    def go() -> bytes:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(payload)
            if not read:
                return b""
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    return out
                if not chunk:
                    return out
                out += chunk
        finally:
            s.close()

    return await deferToThread(go)


async def settle() -> None:
    await deferLater(reactor, 0.05, lambda: None)


async def assert_nothing_stored(g: RunningGateway) -> None:
    """No temporary file left (once the aborted upload has cleaned up), no file row, still serving."""
    for _ in range(100):
        await settle()
        if not os.listdir(g.store.layout.chunk_tmp) and not os.listdir(g.store.layout.blob_tmp):
            break
    assert os.listdir(g.store.layout.chunk_tmp) == [] and os.listdir(g.store.layout.blob_tmp) == []
    assert (await g.store.stats())["files"] == 0
    r = await http.get(g.url("/api/health"))
    assert r.code == 200


class FileApiTests(TestCase):
    """A gateway-only configuration with small chunks (``CS``)."""

    def setUp(self) -> None:
        self.gw = start_gateway(self, small_config(case_data_dir(self)))

    async def test_multipart_upload_and_download(self) -> None:
        data = os.urandom(100_000)  # > blob threshold (64 KiB) in the test config: chunked
        r, j = await upload(self.gw, data, "movie.mp4", title="A title", description="Words", announce_dht="false")
        assert r.code == 201
        sha = hashlib.sha256(data).hexdigest()
        assert j["sha256"] == sha and j["size"] == len(data) and j["storage"] == "chunked"
        assert j["name"] == "movie.mp4" and j["mime_type"] == "application/octet-stream" or j["mime_type"] == "video/mp4"
        assert j["title"] == "A title" and j["description"] == "Words" and j["new"] is True
        assert j["magnet"].startswith(f"magnet:?xt=urn:btih:{j['info_hash']}")
        r = await http.get(self.gw.url(f"/api/download/{sha}"))
        assert r.code == 200
        assert await treq.content(r) == data
        assert r.headers.getRawHeaders("etag") == [f'"{sha}"']
        assert r.headers.getRawHeaders("access-control-allow-origin") == ["*"]
        assert "movie.mp4" in r.headers.getRawHeaders("content-disposition")[0]
        r2, j2 = await upload(self.gw, data, "again.bin")
        assert r2.code == 200 and j2["new"] is False and j2["sha256"] == sha

    async def test_raw_put_upload(self) -> None:
        data = os.urandom(5000)
        r = await http.put(self.gw.url("/api/upload"), data=data,
                           headers={"X-Filename": "caf%C3%A9.txt", "Content-Type": "text/plain"})
        j = await treq.json_content(r)
        assert r.code == 201, j
        assert j["name"] == "café.txt" and j["mime_type"] == "text/plain" and j["storage"] == "blob"
        r = await http.get(self.gw.url(f"/api/files/{j['sha256']}"))
        meta = await treq.json_content(r)
        assert meta["info_hash"] == j["info_hash"]
        assert "ws=" in meta["magnet"] and "xl=5000" in meta["magnet"] and "dn=caf%C3%A9.txt" in meta["magnet"]

    async def test_ranges_and_validators(self) -> None:
        data = os.urandom(5 * CS + 123)
        _, j = await upload(self.gw, data)
        url = self.gw.url(f"/api/download/{j['sha256']}")
        for start, end in [(0, 0), (CS - 1, CS), (CS - 5, 3 * CS + 5), (5 * CS, 5 * CS + 122)]:
            r = await http.get(url, headers={"Range": f"bytes={start}-{end}"})
            assert r.code == 206
            assert await treq.content(r) == data[start : end + 1]
            assert r.headers.getRawHeaders("content-range") == [f"bytes {start}-{end}/{len(data)}"]
        r = await http.get(url, headers={"Range": "bytes=-100"})
        assert r.code == 206 and await treq.content(r) == data[-100:]
        r = await http.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert r.code == 416
        assert (await treq.json_content(r))["error"] == "range_not_satisfiable"
        assert r.headers.getRawHeaders("content-range") == [f"bytes */{len(data)}"]
        r = await http.get(url, headers={"Range": "bytes=9-2"})
        assert r.code == 200 and await treq.content(r) == data
        r = await http.head(url)
        assert r.code == 200 and r.headers.getRawHeaders("content-length") == [str(len(data))]
        assert await treq.content(r) == b""
        r = await http.get(url, headers={"If-None-Match": f'"{j["sha256"]}"'})
        assert r.code == 304
        r = await http.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
        assert r.code == 200

    async def test_torrent_and_webseed(self) -> None:
        data = os.urandom(7 * CS + 3)
        _, j = await upload(self.gw, data, "data.bin")
        r = await http.get(self.gw.url(f"/api/torrent/{j['sha256']}"))
        assert r.code == 200
        assert r.headers.getRawHeaders("content-type") == ["application/x-bittorrent"]
        t = bencode.decode(await treq.content(r))
        info = t[b"info"]
        assert hashlib.sha1(bencode.encode(info)).hexdigest() == j["info_hash"]
        assert info[b"length"] == len(data) and info[b"piece length"] == CS and info[b"name"] == b"data.bin"
        pieces = info[b"pieces"]
        for i in range(0, len(data), CS):
            assert pieces[i // CS * 20 : i // CS * 20 + 20] == hashlib.sha1(data[i : i + CS]).digest()
        assert t[b"url-list"] == [self.gw.url(f"/api/webseed/{j['info_hash']}/").encode()]
        assert t[b"created by"].startswith(b"tgateway") and isinstance(t[b"creation date"], int)
        base = self.gw.url(f"/api/webseed/{j['info_hash']}")
        for path in ("/data.bin", "", "/whatever%20name"):
            r = await http.get(base + path, headers={"Range": f"bytes={CS - 10}-{2 * CS + 9}"})
            assert r.code == 206 and await treq.content(r) == data[CS - 10 : 2 * CS + 10]
        r = await http.request("OPTIONS", base + "/data.bin")
        assert r.code == 204
        assert "Range" in r.headers.getRawHeaders("access-control-allow-headers")[0]

    async def test_webseed_as_webtorrent_requests_it(self) -> None:
        """WebTorrent (node and browser) fetches a single-file torrent's web seed at the url-list URL
        as it is, trailing slash included, and a browser's WebTorrent sends Cache-Control with each
        range request, so the CORS preflight must allow it."""
        data = os.urandom(3 * CS + 5)
        _, j = await upload(self.gw, data, "data.bin")
        t = bencode.decode(await treq.content(await http.get(self.gw.url(f"/api/torrent/{j['sha256']}"))))
        url = t[b"url-list"][0].decode()
        assert url.endswith(f"/api/webseed/{j['info_hash']}/")
        r = await http.request("OPTIONS", url, headers={
            "Origin": "http://127.0.0.1:1", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "cache-control,range"})
        assert r.code == 204
        allowed = {h.strip().lower() for h in r.headers.getRawHeaders("access-control-allow-headers")[0].split(",")}
        assert {"cache-control", "range"} <= allowed
        r = await http.get(url, headers={"Range": f"bytes={CS}-{2 * CS + 2}", "Cache-Control": "no-store",
                                         "Origin": "http://127.0.0.1:1"})
        assert r.code == 206 and await treq.content(r) == data[CS : 2 * CS + 3]
        assert r.headers.getRawHeaders("access-control-allow-origin") == ["*"]
        r = await http.get(url.rstrip("/"), headers={"Range": "bytes=0-9"})
        assert r.code == 206 and await treq.content(r) == data[:10]

    async def test_errors_have_one_shape(self) -> None:
        cases = [
            ("GET", "/api/download/xyz", 400, "invalid_hash"),
            ("GET", "/api/download/" + "a" * 64, 404, "file_not_found"),
            ("GET", "/api/torrent/" + "A" * 64, 404, "file_not_found"),
            ("GET", "/api/files/zz", 400, "invalid_hash"),
            ("GET", "/api/webseed/" + "b" * 39 + "/x", 400, "invalid_hash"),
            ("GET", "/api/webseed/" + "b" * 40 + "/x", 404, "torrent_not_found"),
            ("GET", "/api/nothing", 404, "not_found"),
            ("DELETE", "/api/download/" + "a" * 64, 405, "method_not_allowed"),
        ]
        for method, path, status, code in cases:
            r = await http.request(method, self.gw.url(path))
            body = await treq.json_content(r)
            assert (r.code, body["error"]) == (status, code), (path, body)
            assert set(body) == {"error", "message"}
            assert r.headers.getRawHeaders("content-type") == ["application/json"]

    async def test_bad_uploads_change_nothing(self) -> None:
        async def files() -> int:
            return (await self.gw.store.stats())["files"]

        r = await http.put(self.gw.url("/api/upload"), data=b"")
        assert r.code == 400 and (await treq.json_content(r))["error"] == "empty_upload"
        body, ctype = multipart({"title": "t"}, "x", b"")
        r = await http.post(self.gw.url("/api/upload"), data=body.replace(b'name="file"', b'name="other"'),
                            headers={"Content-Type": ctype})
        assert r.code == 400 and (await treq.json_content(r))["error"] == "missing_file"
        r = await http.post(self.gw.url("/api/upload"), data=b"garbage without boundary",
                            headers={"Content-Type": "multipart/form-data; boundary=zzz"})
        assert r.code == 400 and (await treq.json_content(r))["error"] in ("missing_file", "invalid_multipart")
        r = await http.post(self.gw.url("/api/upload"), data=b"x", headers={"Content-Type": "multipart/form-data"})
        assert r.code == 400
        body, ctype = multipart({"announce_dht": "maybe"}, "x", b"data")
        r = await http.post(self.gw.url("/api/upload"), data=body, headers={"Content-Type": ctype})
        assert r.code == 400 and (await treq.json_content(r))["error"] == "invalid_field"
        body, ctype = multipart({}, "x", b"data")
        body = body.replace(b"--\r\n", b"\r\n")  # no closing boundary
        r = await http.post(self.gw.url("/api/upload"), data=body, headers={"Content-Type": ctype})
        assert r.code == 400
        assert await files() == 0
        await settle()
        assert os.listdir(self.gw.store.layout.blob_tmp) == [] and os.listdir(self.gw.store.layout.chunk_tmp) == []
        r = await http.get(self.gw.url("/api/health"))
        assert r.code == 200

    async def test_client_disconnect_mid_upload_leaves_nothing(self) -> None:
        head = b"PUT /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
        await raw_request(self.gw.port, head + os.urandom(3_000_000), read=False)
        await assert_nothing_stored(self.gw)

    async def test_disk_full_before_reading(self) -> None:
        self.gw.store.free_space = lambda: 10  # type: ignore[method-assign]
        r = await http.put(self.gw.url("/api/upload"), data=b"x" * 1000)
        assert r.code == 507 and (await treq.json_content(r))["error"] == "insufficient_storage"
        assert (await self.gw.store.stats())["files"] == 0

    async def test_pipelined_requests_still_work(self) -> None:
        _, j = await upload(self.gw, b"pipelined content")
        req = f"GET /api/files/{j['sha256']} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        out = await raw_request(self.gw.port, req * 2 + b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.count(b"HTTP/1.1 200 OK") == 3

    async def test_garbage_requests_do_not_hurt(self) -> None:
        for junk in [b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"PUT /api/upload HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                     b"PUT /api/upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]:
            await raw_request(self.gw.port, junk)
        r = await http.get(self.gw.url("/api/health"))
        assert r.code == 200
        assert (await self.gw.store.stats())["files"] == 0

    async def test_web_page(self) -> None:
        r = await http.get(self.gw.url("/"))
        assert r.code == 200
        assert r.headers.getRawHeaders("content-type") == ["text/html; charset=utf-8"]
        body = await treq.content(r)
        assert b"/api/upload" in body and b"<form" in body


class FileApiLimitTests(TestCase):
    """A gateway-only configuration with its own limits in each test."""

    async def test_size_limits(self) -> None:
        g = start_gateway(self, small_config(case_data_dir(self), gateway={"max_upload_size": 50_000}))
        # Content-Length over the limit: 413 before the body is read.
        head = (b"PUT /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n"
                b"Expect: 100-continue\r\n\r\n")
        out = await raw_request(g.port, head)
        assert out.startswith(b"HTTP/1.1 413"), out[:200]
        assert b"payload_too_large" in out and b"100 Continue" not in out.split(b"\r\n\r\n")[0]
        # Chunked transfer encoding: caught while streaming.
        chunks = b"".join(b"%x\r\n%s\r\n" % (10000, b"a" * 10000) for _ in range(8)) + b"0\r\n\r\n"
        out = await raw_request(g.port, b"PUT /api/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
        assert out.startswith(b"HTTP/1.1 413"), out[:300]
        # Under the limit with chunked encoding works.
        small = b"".join(b"%x\r\n%s\r\n" % (1000, b"b" * 1000) for _ in range(3)) + b"0\r\n\r\n"
        out = await raw_request(g.port, b"PUT /api/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n" + small)
        assert out.startswith(b"HTTP/1.1 201"), out[:300]
        await settle()
        assert (await g.store.stats())["files"] == 1
        assert os.listdir(g.store.layout.blob_tmp) == [] and os.listdir(g.store.layout.chunk_tmp) == []
        # A large JSON/non-upload body is refused too.
        out = await raw_request(g.port, b"POST /api/health HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
        assert b" 413 " in out.split(b"\r\n")[0]

    async def test_a_form_cannot_stream_more_than_the_limit_in_dropped_fields(self) -> None:
        """A chunked form (no Content-Length for the Site to check) is cut off once the body goes
        beyond the upload limit plus the form's envelope, whatever part the bytes are in."""
        g = start_gateway(self, small_config(case_data_dir(self), gateway={"max_upload_size": 50_000}))
        body, ctype = multipart({"junk": "j" * 200_000}, "small.bin", b"tiny file")
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 8192]), body[i:i + 8192])
                          for i in range(0, len(body), 8192)) + b"0\r\n\r\n"
        head = (b"POST /api/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n")
        out = await raw_request(g.port, head + chunks)
        assert out.startswith(b"HTTP/1.1 413"), out[:300]
        assert b"payload_too_large" in out
        await assert_nothing_stored(g)
        # the same form with a field that fits is stored
        body, ctype = multipart({"junk": "j" * 1000}, "small.bin", b"tiny file")
        r = await http.post(g.url("/api/upload"), data=body, headers={"Content-Type": ctype})
        assert r.code == 201, await r.text()

    async def test_upload_rate_limit(self) -> None:
        g = start_gateway(self, small_config(case_data_dir(self), rate_limiting={
            "upload": {"requests_per_second": 0.01, "burst_size": 2}}))
        codes = []
        for i in range(3):
            r = await http.put(g.url("/api/upload"), data=b"abc%d" % i)
            codes.append(r.code)
            last = r
        assert codes == [201, 201, 429]
        assert int(last.headers.getRawHeaders("retry-after")[0]) >= 1
        assert (await treq.json_content(last))["error"] == "rate_limited"
