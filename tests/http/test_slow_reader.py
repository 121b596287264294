"""What the server queues for a client that does not read stays bounded (issue 14, defect 2,
HTTP responses).

Real sockets on loopback, through the running plugin: a client asks for responses and never
reads them; the bytes the server holds for that connection (the transport's write buffer) are
measured on the server's own transport objects.

- a large stored file: the file producers wait for the socket (sendfile) or are paused by the
  transport, so a 20 MB download queues no more than a block and a write buffer;
- pipelined requests for generated bodies (JSON, .torrent) on the gateway port: twisted.web reads
  ahead and, unpatched, answered every pipelined request it had read although the client read
  none of the answers; a request is now taken up only once the previous answer has drained;
- pipelined scrapes on the tracker's dedicated HTTP port: it read and answered as long as the
  client sent; it now stops reading while its write buffer is full.
"""

from __future__ import annotations

import os
import random
import socket
import time
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from harness.gateway import RunningGateway, case_data_dir, serving_config, start_gateway
from tgateway.http.site import IO_SIZE
from tgateway.tracker.http import HttpTracker, TrackerHTTPFactory
from tgateway.tracker.memory import MemorySwarmStore

MB = 1 << 20
# A transport pauses its producer once its buffer is over bufferSize (IO_SIZE on the twisted.web
# ports, Twisted's 64 KiB on the tracker port); one more block or answer may land on top.
FILE_BOUND = IO_SIZE + MB  # chunked file, 1 MiB blocks
ANSWERS_BOUND = IO_SIZE + 64 * 1024
TRACKER_BOUND = 64 * 1024 + 4096

http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


def queued(transport: Any) -> int:
    """Bytes a Twisted TCP transport holds that the kernel has not taken yet."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


def record_connections(factory: Any) -> list[Any]:
    protocols: list[Any] = []
    build = factory.buildProtocol

    def recording(addr: Any) -> Any:
        p = build(addr)
        protocols.append(p)
        return p

    factory.buildProtocol = recording
    return protocols


def send_without_reading(port: int, payload: bytes, seconds: float) -> int:
    """(thread) Send ``payload`` (as much as the server takes within ``seconds``), read nothing,
    keep the connection open until the caller's measurement is done; returns bytes sent."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    sent = 0
    deadline = time.monotonic() + seconds
    try:
        while sent < len(payload) and time.monotonic() < deadline:
            try:
                sent += s.send(payload[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(1.0)  # the server works through what it read; the test measures meanwhile
        return sent
    finally:
        s.close()


async def peak_while(work: Any, protocols: list[Any]) -> int:
    """The largest write buffer of any recorded connection while ``work`` (a Deferred) runs."""
    peak = 0
    while not work.called:
        for p in protocols:
            if p.transport is not None and hasattr(p.transport, "dataBuffer"):
                peak = max(peak, queued(p.transport))
        await deferLater(reactor, 0.02, lambda: None)
    await work
    return peak


async def put(g: RunningGateway, data: bytes, name: str) -> dict[str, Any]:
    r = await http.put(g.url("/api/upload"), data=data, headers={"X-Filename": name})
    body = await treq.json_content(r)
    assert r.code == 201, body
    return dict(body)


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


class GatewaySlowReaderTests(TestCase):
    """The running plugin, files over 8 MiB chunked in 1 MiB blocks."""

    def setUp(self) -> None:
        config = serving_config(case_data_dir(self), storage={"blob_threshold": 8 * MB, "chunk_size": MB})
        self.gw = start_gateway(self, config)

    async def test_file_download_to_a_reader_that_stops(self) -> None:
        f = await put(self.gw, os.urandom(20 * MB), "big.bin")  # chunked, 1 MiB blocks
        protocols = record_connections(self.gw.gateway.sites["gateway"])
        request = f"GET /api/download/{f['sha256']} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        work = deferToThread(send_without_reading, self.gw.port, request, 1.0)
        peak = await peak_while(work, protocols)
        assert peak <= FILE_BOUND, f"{peak} bytes queued for a client that reads nothing"

    async def test_pipelined_answers_wait_for_the_reader(self) -> None:
        f = await put(self.gw, os.urandom(3 * MB), "pieces.bin")
        for base, path in ((self.gw.base, f"/api/torrent/{f['sha256']}"),
                           (self.gw.base, f"/api/files/{f['sha256']}"),
                           (self.gw.blossom_base, "/list/" + "ab" * 32)):
            assert base is not None
            site = self.gw.gateway.sites["gateway" if base == self.gw.base else "blossom"]
            protocols = record_connections(site)
            request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            work = deferToThread(send_without_reading, port_of(base), request * 20_000, 2.0)
            peak = await peak_while(work, protocols)
            assert peak <= ANSWERS_BOUND, f"{path}: {peak} bytes queued for a client that reads nothing"


class TrackerSlowReaderTests(TestCase):
    """The tracker's dedicated HTTP port."""

    async def test_tracker_port_stops_reading_a_client_that_does_not_read(self) -> None:
        tracker = HttpTracker(MemorySwarmStore(random.Random(1)), reactor, interval=1800, min_interval=900,
                              default_numwant=50, max_numwant=100)
        factory = TrackerHTTPFactory(tracker, reactor)
        protocols = record_connections(factory)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        try:
            scrape = b"GET /scrape?info_hash=" + b"%41" * 20 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
            work = deferToThread(send_without_reading, port.getHost().port, scrape * 200_000, 3.0)
            peak = await peak_while(work, protocols)
            assert peak <= TRACKER_BOUND, f"{peak} bytes queued for a client that reads nothing"
        finally:
            await port.stopListening()
