"""The headers user content is served with (issue 14, defect 4), route by route.

Through the running plugin on loopback: every response of the gateway and Blossom ports says
``X-Content-Type-Options: nosniff``; a stored file of an active type (HTML, XHTML, SVG, XML,
JavaScript, PDF) goes out as an attachment with a sandboxing Content-Security-Policy from
``/api/stream``, ``/api/download``, ``/api/webseed`` and Blossom ``GET /<sha256>`` (also for HEAD
and 304); passive media (PNG, MP4, MP3) and plain text stay inline, without a CSP. What a real
browser makes of it is tests/integration/test_browser_user_content.py.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from harness.gateway import RunningGateway, case_data_dir, serving_config, start_gateway
from tgateway.http.send import is_passive_type

http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

ACTIVE = ["text/html", "text/html; charset=utf-8", "application/xhtml+xml", "image/svg+xml",
          "text/xml", "application/xml", "text/javascript", "application/javascript",
          "application/pdf", "text/css", "application/octet-stream", "application/x-unknown",
          "multipart/x-mixed-replace", "TEXT/HTML", "image/svg", "video/x-thing+xml", "image/"]
PASSIVE = ["image/png", "image/jpeg", "image/webp", "video/mp4", "video/webm", "audio/mpeg",
           "audio/ogg", "text/plain", "text/plain; charset=utf-8", "IMAGE/GIF"]


@pytest.mark.parametrize("ctype", ACTIVE)
def test_active_types(ctype: str) -> None:
    assert not is_passive_type(ctype)


@pytest.mark.parametrize("ctype", PASSIVE)
def test_passive_types(ctype: str) -> None:
    assert is_passive_type(ctype)


async def put(g: RunningGateway, data: bytes, name: str, ctype: str) -> dict[str, Any]:
    r = await http.put(g.url("/api/upload"), data=data,
                       headers={"X-Filename": name, "Content-Type": ctype})
    body = await treq.json_content(r)
    assert r.code == 201, body
    return dict(body)


def header(r: Any, name: str) -> str | None:
    values = r.headers.getRawHeaders(name)
    return values[0] if values else None


def routes(g: RunningGateway, f: dict[str, Any]) -> dict[str, str]:
    assert g.blossom_base is not None
    return {
        "stream": g.url(f"/api/stream/{f['sha256']}"),
        "download": g.url(f"/api/download/{f['sha256']}"),
        "webseed": g.url(f"/api/webseed/{f['info_hash']}/{f['name']}"),
        "blossom": f"{g.blossom_base}/{f['sha256']}",
    }


UPLOADS = {
    "page.html": ("text/html", b"<!doctype html><script>document.title='x'</script>"),
    "page.xhtml": ("application/xhtml+xml",
                   b'<html xmlns="http://www.w3.org/1999/xhtml"><script>1</script></html>'),
    "pic.svg": ("image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>'),
    "data.xml": ("text/xml", b"<?xml version='1.0'?><a/>"),
    "code.js": ("text/javascript", b"alert(1)"),
}
MEDIA = {
    "pic.png": ("image/png", b"\x89PNG\r\n\x1a\n" + os.urandom(100)),
    "clip.mp4": ("video/mp4", b"\x00\x00\x00\x18ftypmp42" + os.urandom(100)),
    "song.mp3": ("audio/mpeg", b"ID3" + os.urandom(100)),
    "notes.txt": ("text/plain", b"<script>plain text is shown, never run</script>"),
}


class UserContentHeaderTests(TestCase):
    """The gateway's and Blossom's ports serving what the test uploads."""

    def setUp(self) -> None:
        self.gw = start_gateway(self, serving_config(case_data_dir(self)))

    async def test_active_types_are_attachments_in_a_sandbox(self) -> None:
        for name, (ctype, data) in UPLOADS.items():
            f = await put(self.gw, data, name, ctype)
            assert f["mime_type"] == ctype
            for route, url in routes(self.gw, f).items():
                for method in ("GET", "HEAD"):
                    r = await http.request(method, url)
                    await treq.content(r)
                    where = (name, route, method)
                    assert r.code == 200, where
                    assert header(r, "x-content-type-options") == "nosniff", where
                    csp = header(r, "content-security-policy") or ""
                    assert "sandbox" in csp and "default-src 'none'" in csp, where
                    assert (header(r, "content-disposition") or "").startswith("attachment;"), where
                r = await http.get(url, headers={"If-None-Match": f'"{f["sha256"]}"'})
                await treq.content(r)
                assert r.code == 304, (name, route)
                assert header(r, "x-content-type-options") == "nosniff"
                assert "sandbox" in (header(r, "content-security-policy") or "")

    async def test_media_and_plain_text_stay_inline(self) -> None:
        for name, (ctype, data) in MEDIA.items():
            f = await put(self.gw, data, name, ctype)
            urls = routes(self.gw, f)
            for route, url in urls.items():
                r = await http.get(url)
                assert await treq.content(r) == data
                assert header(r, "x-content-type-options") == "nosniff", (name, route)
                if route == "webseed":
                    continue  # application/octet-stream for BitTorrent clients, an attachment
                assert header(r, "content-type") == ctype, (name, route)
                assert header(r, "content-security-policy") is None, (name, route)
            r = await http.get(urls["stream"])
            await treq.content(r)
            assert (header(r, "content-disposition") or "").startswith("inline;"), name
            r = await http.get(urls["blossom"])
            await treq.content(r)
            assert header(r, "content-disposition") is None, name

    async def test_every_response_says_nosniff(self) -> None:
        assert self.gw.blossom_base is not None
        for url in (self.gw.url("/"), self.gw.url("/api/health"), self.gw.url("/api/nothing-here"),
                    self.gw.url("/api/files/" + "0" * 64), self.gw.url("/api/download/xyz"),
                    self.gw.url("/api/auth/challenge"), self.gw.blossom_base + "/",
                    self.gw.blossom_base + "/" + "0" * 64, self.gw.blossom_base + "/list/zz"):
            r = await http.get(url)
            await treq.content(r)
            assert header(r, "x-content-type-options") == "nosniff", (url, r.code)
