"""Upload bodies consumed on their own thread (``BodyStream.consume(threaded=True)``).

A plain-TCP body with a Content-Length is read from the socket by that thread, then the
connection goes back to twisted.web; other bodies (chunked transfer encoding) are read by the
reactor and queued to the thread. Each test checks which path ran, so neither can silently
stop being exercised.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from harness.gateway import RunningGateway, case_data_dir, small_config, start_gateway
from tests.web.test_api import assert_nothing_stored, http, multipart
from tgateway.http import body as body_mod
from tgateway.http import body_thread as thread_mod


def exchange(port: int, payload: bytes, *, pause_after: int | None = None, pause: float = 0.0,
             responses: int = 1, close_after_send: bool = False) -> bytes:
    """Send ``payload`` (optionally pausing after ``pause_after`` bytes) and read until
    ``responses`` HTTP responses have arrived or the server closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        if pause_after is not None:
            s.sendall(payload[:pause_after])
            time.sleep(pause)
            payload = payload[pause_after:]
        if payload:
            s.sendall(payload)
        if close_after_send:
            return b""
        out = b""
        while out.count(b"HTTP/1.1 ") < responses or not out.endswith(b"}") and b'"status"' not in out[-300:]:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def put_request(data: bytes, *, extra: bytes = b"") -> bytes:
    return (b"PUT /api/upload HTTP/1.1\r\nHost: x\r\nX-Filename: big.bin\r\n"
            b"Content-Length: %d\r\n%s\r\n" % (len(data), extra)) + data


async def download(g: RunningGateway, sha: str) -> bytes:
    r = await http.get(g.url(f"/api/download/{sha}"))
    return await r.content()


class BodyThreadTests(TestCase):
    """A gateway-only configuration taking uploads of up to 20 MB."""

    def setUp(self) -> None:
        self.paths = self.record_paths()
        config = small_config(case_data_dir(self), gateway={"max_upload_size": 20_000_000})
        self.gw = start_gateway(self, config)

    def record_paths(self) -> list[str]:
        """Records which way each threaded body was read: 'socket' or 'queue' (until the test ends)."""
        seen: list[str] = []
        real_socket, real_queue = thread_mod.BodyThread._read_socket, thread_mod.BodyThread._read_queue

        def read_socket(self: Any, buffered: list[bytes]) -> None:
            seen.append("socket")
            real_socket(self, buffered)

        def read_queue(self: Any) -> None:
            seen.append("queue")
            real_queue(self)

        self.patch(thread_mod.BodyThread, "_read_socket", read_socket)
        self.patch(thread_mod.BodyThread, "_read_queue", read_queue)
        return seen

    def record_ingests(self) -> list[Any]:
        """Every Ingest the store begins (to see how many bytes were copied into chunk buffers)."""
        from tgateway.storage.store import LocalContentStore

        made: list[Any] = []
        real = LocalContentStore.begin_upload

        def begin_upload(self: Any, *args: Any, **kwargs: Any) -> Any:
            made.append(real(self, *args, **kwargs))
            return made[-1]

        self.patch(LocalContentStore, "begin_upload", begin_upload)
        return made

    async def test_socket_read_then_the_connection_goes_back_to_twisted(self) -> None:
        """A 6 MB raw PUT (more than the 1 MiB the reactor holds before the handler runs) read on
        the body thread, straight into the chunk buffers (only what the reactor had read before is
        copied), then a pipelined GET on the same connection is answered as usual."""
        ingests = self.record_ingests()
        data = os.urandom(6_000_000)
        health = b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        out = await deferToThread(exchange, self.gw.port, put_request(data) + health,
                                  pause_after=200, pause=0.2, responses=2)
        assert out.startswith(b"HTTP/1.1 201"), out[:300]
        assert out.count(b"HTTP/1.1 200 OK") == 1, out[-400:]
        assert self.paths == ["socket"]
        assert len(ingests) == 1 and ingests[0].copied <= body_mod.PREBUFFER + 65536
        sha = hashlib.sha256(data).hexdigest()
        assert sha.encode() in out
        assert await download(self.gw, sha) == data

    async def test_multipart_read_on_the_socket_thread(self) -> None:
        """The file part's bytes after the first reads land in the chunk buffers as received."""
        ingests = self.record_ingests()
        data = os.urandom(3_500_000)
        body, ctype = multipart({"title": "a title"}, "m.bin", data)
        r = await http.post(self.gw.url("/api/upload"), data=body, headers={"Content-Type": ctype})
        j = await r.json()
        assert r.code == 201, j
        assert j["sha256"] == hashlib.sha256(data).hexdigest() and j["title"] == "a title"
        assert self.paths == ["socket"]
        assert len(ingests) == 1 and ingests[0].copied <= body_mod.PREBUFFER + thread_mod.THREAD_READ
        assert await download(self.gw, j["sha256"]) == data

    async def test_chunked_transfer_encoding_is_queued_to_the_thread(self) -> None:
        data = os.urandom(3_000_000)
        step = 100_000
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + step]), data[i:i + step])
                          for i in range(0, len(data), step)) + b"0\r\n\r\n"
        req = (b"PUT /api/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n") + chunks
        out = await deferToThread(exchange, self.gw.port, req)
        assert out.startswith(b"HTTP/1.1 201"), out[:300]
        assert self.paths == ["queue"]
        assert await download(self.gw, hashlib.sha256(data).hexdigest()) == data

    async def test_client_gone_while_the_thread_reads(self) -> None:
        req = put_request(os.urandom(10_000_000))[:4_000_000]
        await deferToThread(exchange, self.gw.port, req, pause_after=200, pause=0.2, close_after_send=True)
        await assert_nothing_stored(self.gw)
        assert self.paths == ["socket"]

    async def test_idle_client_gets_408(self) -> None:
        self.patch(thread_mod, "IDLE_TIMEOUT", 0.5)
        req = put_request(os.urandom(5_000_000))[:3_000_000]  # then nothing more
        out = await deferToThread(exchange, self.gw.port, req, pause_after=200, pause=0.2)
        assert out.startswith(b"HTTP/1.1 408"), out[:300]
        assert b'"error": "timeout"' in out
        assert self.paths == ["socket"]
        await assert_nothing_stored(self.gw)

    async def test_limit_crossed_on_the_thread_is_413_and_closes(self) -> None:
        """A multipart body within max_upload_size + form slack whose file is over the limit: the
        thread stops at the limit, the answer is 413, nothing is stored, the rest of the body is
        never parsed as a request."""
        data = os.urandom(20_000_010)
        body, ctype = multipart({}, "x.bin", data)
        req = (b"POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
               % (ctype.encode(), len(body))) + body
        out = await deferToThread(exchange, self.gw.port, req, pause_after=300, pause=0.2)
        assert out.startswith(b"HTTP/1.1 413"), out[:300]
        assert out.count(b"HTTP/1.1 ") == 1
        assert self.paths == ["socket"]
        await assert_nothing_stored(self.gw)
