"""Small HTTP semantics (issue 14, defect 12), through the running plugin on loopback.

- ``Expect: 100-continue``: the interim 100 is sent only once the handler has decided to read the
  body; an upload it refuses first (Blossom 413 for a too-large Content-Length, gateway 401 for a
  sign-in it needs) gets its final answer with no 100 before it. An accepted upload still gets
  the 100, then its 201.
- ``If-None-Match`` uses the weak comparison (RFC 9110 13.1.2): ``W/"<sha256>"`` gets 304, on
  the gateway's file routes and on Blossom.
- ``HEAD /api/auth/challenge`` answers the headers of a GET and issues no challenge (RFC 9110
  9.3.2: HEAD has no side effects); GET still issues one.
"""

from __future__ import annotations

import hashlib
import os
import socket
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from harness.gateway import case_data_dir, serving_config, start_gateway

http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
MAX_BLOB = 10_000


def expect_continue(port: int, head: bytes, body: bytes) -> tuple[bytes, bytes]:
    """(thread) Send a head with ``Expect: 100-continue`` and wait for the first answer; if it is
    the 100, send ``body`` and read the final answer. Returns (first answer, everything)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(head)
        first = b""
        while b"\r\n\r\n" not in first:
            chunk = s.recv(65536)
            if not chunk:
                break
            first += chunk
        out = first
        if first.startswith(b"HTTP/1.1 100"):
            s.sendall(body)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except TimeoutError:
            pass
        return first, out
    finally:
        s.close()


def put_head(path: str, length: int, extra: str = "") -> bytes:
    return (f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
            f"Content-Type: application/octet-stream\r\n{extra}Connection: close\r\n"
            f"Expect: 100-continue\r\n\r\n").encode()


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


class HttpSemanticsTests(TestCase):
    """Blossom with a small blob limit; the gateway refusing anonymous uploads."""

    def setUp(self) -> None:
        self.gw = start_gateway(self, serving_config(
            case_data_dir(self),
            blossom_server={"max_blob_size": MAX_BLOB, "require_auth": ["delete"]},
            gateway={"allow_anonymous_uploads": False},
        ))

    async def test_refused_uploads_get_no_100_continue(self) -> None:
        assert self.gw.blossom_base is not None
        blossom = port_of(self.gw.blossom_base)
        big = MAX_BLOB + 1
        first, out = await deferToThread(expect_continue, blossom, put_head("/upload", big), b"x" * big)
        assert first.startswith(b"HTTP/1.1 413"), out[:300]
        assert b"100 Continue" not in out
        # the gateway: this one needs a sign-in
        first, out = await deferToThread(expect_continue, self.gw.port, put_head("/api/upload", 100),
                                         b"x" * 100)
        assert first.startswith(b"HTTP/1.1 401"), out[:300]
        assert b"100 Continue" not in out
        # an upload that is taken still gets its 100, then the answer
        data = os.urandom(5000)
        first, out = await deferToThread(expect_continue, blossom, put_head("/upload", len(data)), data)
        assert first.startswith(b"HTTP/1.1 100 Continue"), out[:300]
        assert b"HTTP/1.1 201 " in out and hashlib.sha256(data).hexdigest().encode() in out

    async def test_if_none_match_is_a_weak_comparison(self) -> None:
        assert self.gw.blossom_base is not None
        data = os.urandom(3000)
        sha = hashlib.sha256(data).hexdigest()
        r = await http.put(self.gw.blossom_base + "/upload", data=data)
        assert r.code == 201, await treq.content(r)
        info = await treq.json_content(await http.get(self.gw.url(f"/api/files/{sha}")))
        other = sha[:-1] + ("1" if sha[-1] == "0" else "0")  # another file's tag, one digit off
        for url in (self.gw.url(f"/api/download/{sha}"), self.gw.url(f"/api/stream/{sha}"),
                    self.gw.url(f"/api/webseed/{info['info_hash']}/{info['name']}"),
                    f"{self.gw.blossom_base}/{sha}"):
            for tags, code in ((f'W/"{sha}"', 304), (f'"{sha}"', 304), (f'"x", W/"{sha}"', 304),
                               (f'W/"{sha}" , "y"', 304), ("*", 304), (f'W/"{other}"', 200),
                               (f'"{sha}x"', 200), (f"{sha}", 200)):
                r = await http.get(url, headers={"If-None-Match": tags})
                await treq.content(r)
                assert r.code == code, (url, tags, r.code)

    async def test_head_of_the_challenge_issues_none(self) -> None:
        challenges = self.gw.gateway.components.gateway.users.auth_api.challenges
        before = len(challenges)
        for _ in range(3):
            r = await http.head(self.gw.url("/api/auth/challenge"))
            assert r.code == 200
            assert r.headers.getRawHeaders("content-type") == ["application/json"]
            assert r.headers.getRawHeaders("cache-control") == ["no-store"]
        assert len(challenges) == before
        r = await http.get(self.gw.url("/api/auth/challenge"))
        body: dict[str, Any] = await treq.json_content(r)
        assert len(challenges) == before + 1 and challenges.is_valid(body["challenge"], 0)
