"""A request head must be complete within a deadline of its first byte (issue 14, defect 10).

Real sockets on loopback against the running plugin's gateway and Blossom ports (twisted.web,
``StreamingSite``) and the tracker's dedicated HTTP port, with the deadline shortened on the
listening objects: a client dripping one header byte every 0.2 s is answered 408 and closed soon
after the deadline, although every byte resets the idle timeout. A keep-alive connection that
sits idle longer than the deadline between requests is not cut (the deadline starts at the first
byte of a head), and a head that arrives in pieces within the deadline is served.
"""

from __future__ import annotations

import random
import socket
import time

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from harness.gateway import case_data_dir, serving_config, start_gateway
from tgateway.deadlines import HEAD_TIMEOUT
from tgateway.tracker.http import HttpTracker, TrackerHTTPFactory
from tgateway.tracker.memory import MemorySwarmStore

DEADLINE = 0.5
PATIENCE = 6.0  # how long the dripping client keeps going before it gives up


def drip(port: int, head: bytes = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ",
         every: float = 0.2) -> tuple[float | None, bytes]:
    """(thread) Send the start of a request head, then one byte every ``every`` seconds.
    Returns (seconds until the server closed, what it sent), or (None, ...) if it never closed."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    start = time.monotonic()
    got = b""
    try:
        s.sendall(head)
        while time.monotonic() - start < PATIENCE:
            time.sleep(every)
            try:
                while True:
                    data = s.recv(65536)
                    if not data:
                        return time.monotonic() - start, got
                    got += data
            except BlockingIOError:
                pass
            except OSError:
                return time.monotonic() - start, got
            try:
                s.send(b"a")
            except OSError:
                return time.monotonic() - start, got
        return None, got
    finally:
        s.close()


def keep_alive_then_slow_start(port: int, path: bytes) -> list[bytes]:
    """(thread) Two requests on one connection with a pause longer than the deadline between
    them, the second head sent in three pieces over less than the deadline."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    answers = []
    try:
        head = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        s.sendall(head)
        answers.append(_read_response(s))
        time.sleep(DEADLINE * 2.5)
        for piece in (head[:5], head[5:20], head[20:]):
            s.sendall(piece)
            time.sleep(DEADLINE / 5)
        answers.append(_read_response(s))
    finally:
        s.close()
    return answers


def _read_response(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        body += s.recv(65536)
    return head


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


class GatewayHeadDeadlineTests(TestCase):
    """The running plugin's gateway and Blossom ports."""

    def setUp(self) -> None:
        self.gw = start_gateway(self, serving_config(case_data_dir(self)))

    async def test_gateway_and_blossom_ports_close_a_dripping_head(self) -> None:
        assert self.gw.blossom_base is not None
        for name, base in (("gateway", self.gw.base), ("blossom", self.gw.blossom_base)):
            site = self.gw.gateway.sites[name]
            default = getattr(site, "head_timeout", None)
            site.head_timeout = DEADLINE
            closed_after, answer = await deferToThread(drip, port_of(base))
            assert closed_after is not None, f"{name}: a head dripping for {PATIENCE} s was not closed"
            assert DEADLINE <= closed_after < DEADLINE + 2.0, (name, closed_after)
            assert answer.startswith(b"HTTP/1.1 408 "), (name, answer)
            assert b'"error": "request_timeout"' in answer
            assert default == HEAD_TIMEOUT  # what the plugin runs with

    async def test_idle_keep_alive_and_a_head_in_pieces_are_served(self) -> None:
        assert self.gw.blossom_base is not None
        for name, base, path in (("gateway", self.gw.base, b"/api/health"),
                                 ("blossom", self.gw.blossom_base, b"/")):
            self.gw.gateway.sites[name].head_timeout = DEADLINE
            answers = await deferToThread(keep_alive_then_slow_start, port_of(base), path)
            assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 2, (name, answers)


class TrackerHeadDeadlineTests(TestCase):
    """The tracker's dedicated HTTP port."""

    async def test_tracker_port_closes_a_dripping_head(self) -> None:
        tracker = HttpTracker(MemorySwarmStore(random.Random(1)), reactor, interval=1800, min_interval=900,
                              default_numwant=50, max_numwant=100)
        factory = TrackerHTTPFactory(tracker, reactor)
        default = getattr(factory, "head_timeout", None)
        factory.head_timeout = DEADLINE
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        try:
            closed_after, answer = await deferToThread(
                drip, port.getHost().port, b"GET /announce?info_hash=x HTTP/1.1\r\nX-Slow: ")
            assert closed_after is not None, f"a head dripping for {PATIENCE} s was not closed"
            assert DEADLINE <= closed_after < DEADLINE + 2.0, closed_after
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert default == HEAD_TIMEOUT
            answers = await deferToThread(keep_alive_then_slow_start, port.getHost().port,
                                          b"/scrape?info_hash=aaaaaaaaaaaaaaaaaaaa")
            assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 2, answers
        finally:
            await port.stopListening()
