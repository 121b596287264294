"""Every way a file response ends gives back what it took (issue 14, defect 1).

Clients that send ``GET`` and close after reading a little (or nothing) of a stored file, on each
route that serves stored bytes (``/api/download``, ``/api/stream``, ``/api/webseed``, Blossom
``GET /<sha256>``), for a blob and for a chunked file, through the whole plugin on loopback: the
process's open descriptors (``/proc/self/fd``) come back to where they were, and nothing logs a
critical event (twisted.web's "Producer was not unregistered" is one).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from harness.gateway import RunningGateway, case_data_dir, serving_config, start_gateway

MB = 1 << 20
ABORTS = 50
# Big enough that the kernel cannot take a whole response at once (send buffers reach 4 MiB):
# a client that stops reading leaves the server in the middle of sending.
BLOB_SIZE = 6 * MB
CHUNKED_SIZE = 10 * MB

http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def abort_gets(base: str, path: str, count: int) -> None:
    """(thread) ``count`` concurrent GETs of ``path`` that read nothing, a few bytes or a bit of
    the body, stall for 0.2 s (the server's socket is full by then), then close with bytes
    unread (the server sees a reset)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    sockets = []
    try:
        for i in range(count):
            s = socket.socket()
            sockets.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(10)
            s.connect((host, int(port)))
            s.sendall(request)
            want = (0, 1, 300, 70_000)[i % 4]
            got = 0
            while got < want:
                data = s.recv(65536)
                if not data:
                    break
                got += len(data)
        time.sleep(0.2)
    finally:
        for s in sockets:
            s.close()


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await deferLater(reactor, 0.05, lambda: None)
    return predicate()


async def put(g: RunningGateway, data: bytes, name: str) -> dict[str, Any]:
    r = await http.put(g.url("/api/upload"), data=data,
                       headers={"X-Filename": name, "Content-Type": "video/mp4"})
    body = await treq.json_content(r)
    assert r.code == 201, body
    return dict(body)


class SendLifecycleTests(TestCase):
    """The running plugin, files over 8 MiB chunked in 1 MiB blocks."""

    def setUp(self) -> None:
        config = serving_config(case_data_dir(self), storage={"blob_threshold": 8 * MB, "chunk_size": MB})
        self.gw = start_gateway(self, config)

    async def test_aborted_downloads_give_back_their_descriptors(self) -> None:
        criticals: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") in (LogLevel.critical, LogLevel.error):
                criticals.append(event)

        globalLogPublisher.addObserver(observe)
        try:
            files = [await put(self.gw, os.urandom(BLOB_SIZE), "blob.mp4"),
                     await put(self.gw, os.urandom(CHUNKED_SIZE), "chunked.mp4")]
            assert [f["storage"] for f in files] == ["blob", "chunked"]
            assert self.gw.blossom_base is not None
            targets = []
            for f in files:
                sha, ih = f["sha256"], f["info_hash"]
                targets += [(self.gw.base, f"/api/download/{sha}"), (self.gw.base, f"/api/stream/{sha}"),
                            (self.gw.base, f"/api/webseed/{ih}/{f['name']}"), (self.gw.blossom_base, f"/{sha}")]
            # One complete download per route first: thread pools, cached connections and the like
            # exist before the count is taken.
            for base, path in targets:
                r = await http.get(base + path)
                assert r.code == 200, (path, r.code)
                await treq.content(r)
            await deferLater(reactor, 0.2, lambda: None)
            before = open_fds()
            for base, path in targets:
                await deferToThread(abort_gets, base, path, ABORTS)
            back = await wait_for(lambda: open_fds() <= before)
            leaked = open_fds() - before
            assert back, f"{leaked} descriptors still open after {ABORTS * len(targets)} aborted GETs"
            assert not criticals, [e.get("log_format") or e.get("log_failure") for e in criticals]
            # and the gateway still serves
            r = await http.get(self.gw.url(f"/api/download/{files[0]['sha256']}"))
            assert r.code == 200 and len(await treq.content(r)) == BLOB_SIZE
        finally:
            globalLogPublisher.removeObserver(observe)
