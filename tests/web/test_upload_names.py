"""An upload's name is cleaned once (bidirectional overrides and isolates, marks, zero-width and
other format characters dropped, C0/C1 controls replaced) and every output shows the clean
name: Content-Disposition, the torrent's ``name``, the magnet's ``dn``, the JSON description
and the per-owner name of ``/api/users/me/files``."""

from __future__ import annotations

import json
import os
import time
from urllib.parse import parse_qs, unquote, urlsplit

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from harness.gateway import case_data_dir, small_config, start_gateway
from tests.web.test_api import multipart
from tgateway import bencode

http = treq.client.HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

HOSTILE = "invoice\u202eFDP\u2066\u200f\u200b\x85.exe"  # shows as "invoiceexe.PDF" unfiltered
CLEAN = "invoiceFDP_.exe"
FORMAT_CHARS = ("\u202e", "\u2066", "\u200f", "\u200b", "\x85")


def no_format_chars(text: str) -> bool:
    return not any(c in text for c in FORMAT_CHARS)


class CleanNameTests(TestCase):
    async def _every_output_shows_the_cleaned_name(self, how: str) -> None:
        g = start_gateway(self, small_config(case_data_dir(self)))
        token, _ = await g.gateway.components.gateway.users.sessions.create("a1" * 32, "test", time.time())
        auth = {"Authorization": f"Bearer {token}"}
        data = os.urandom(5000)
        if how == "multipart":
            body, ctype = multipart({}, HOSTILE, data)
            r = await http.post(g.url("/api/upload"), data=body, headers={**auth, "Content-Type": ctype})
        else:
            from urllib.parse import quote

            r = await http.put(g.url("/api/upload"), data=data, headers={
                **auth, "X-Filename": quote(HOSTILE), "Content-Type": "application/octet-stream"})
        meta = json.loads(await r.text())
        assert r.code == 201, meta
        sha = meta["sha256"]

        assert meta["name"] == CLEAN
        dn = parse_qs(urlsplit(meta["magnet"]).query)["dn"][0]
        assert dn == CLEAN
        assert unquote(meta["urls"]["webseed"].rsplit("/", 1)[1]) == CLEAN

        r = await http.get(g.url(f"/api/download/{sha}"))
        disposition = r.headers.getRawHeaders("content-disposition")[0]
        await r.content()
        assert no_format_chars(unquote(disposition)) and "invoiceFDP_.exe" in unquote(disposition)

        r = await http.get(g.url(f"/api/torrent/{sha}"))
        torrent = bencode.decode(await r.content())
        assert torrent[b"info"][b"name"].decode("utf-8") == CLEAN
        assert "invoiceFDP_.exe.torrent" in unquote(r.headers.getRawHeaders("content-disposition")[0])

        r = await http.get(g.url(f"/api/files/{sha}"))
        assert (await r.json())["name"] == CLEAN

        r = await http.get(g.url("/api/users/me/files"), headers=auth)
        [listed] = (await r.json())["files"]
        assert listed["name"] == CLEAN  # the owner's own name for the file: cleaned too

    async def test_every_output_shows_the_cleaned_name_multipart(self) -> None:
        await self._every_output_shows_the_cleaned_name("multipart")

    async def test_every_output_shows_the_cleaned_name_raw(self) -> None:
        await self._every_output_shows_the_cleaned_name("raw")
