"""Peer-to-peer in the page, in Chromium (issue 19, point 3).

The vendored WebTorrent bundle downloads a file through the gateway's WebSocket tracker and its
webseed: the first viewer gets every byte from the webseed (no other peer yet) and checks the
SHA-256 against the file's address. A second viewer, in another browser context that gets the
torrent without its webseed (the gateway's ``?webseed=0``), gets every byte from the first one
over WebRTC (host candidates only, no STUN server) and says so in the page. The swarm numbers on
the file page come from the tracker: the first viewer is in the swarm and has completed.

Everything runs in a network namespace of the test's own (``NetworkNamespace``): the gateway on
all of its addresses, the pages at ``http://127.0.0.1`` (a secure context: the page checks the
SHA-256 with ``crypto.subtle``), and a veth pair (both ends inside) with 10.99.19.1 and the
default route: Chromium gathers WebRTC host candidates only on the default route's interface, and
with loopback alone it gathers none. Nothing leaves the namespace.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness.netns import NetworkNamespace
from harness.tools import chromium_browser
from harness.twistd import GatewayProcess
from tests.webui import open_page, web_config

pytestmark = pytest.mark.integration

STATS = "() => ({ ...document.getElementById('p2p-stats').dataset })"


def test_webtorrent_in_the_page_from_the_webseed_then_from_a_peer(tmp_path: Path) -> None:
    with NetworkNamespace(["10.99.19.1"], device="tgw19", default_route=True) as ns, ns.inside():
        _download_twice(tmp_path)


def _swarm(gw: GatewayProcess, sha256: str) -> dict[str, int]:
    with urllib.request.urlopen(gw.url(f"/api/files/{sha256}/swarm"), timeout=30) as r:
        return {k: int(v) for k, v in json.loads(r.read()).items() if k in ("seeders", "leechers", "completed")}


def _wait_for_swarm(gw: GatewayProcess, sha256: str, members: int, completed: int) -> dict[str, int]:
    """The tracker's numbers once it has ``members`` peers (seeders + leechers) and ``completed``
    downloads: WebTorrent announces "completed" after the page has seen "done"."""
    deadline = time.monotonic() + 30
    while True:
        swarm = _swarm(gw, sha256)
        if swarm["seeders"] + swarm["leechers"] == members and swarm["completed"] == completed:
            return swarm
        assert time.monotonic() < deadline, swarm
        time.sleep(0.1)


def _download_twice(tmp_path: Path) -> None:
    data = os.urandom(1_500_000)
    # 256 KiB pieces: six of them, so each side shows its share piece by piece
    cfg = web_config(tmp_path / "data", storage={"chunk_size": 262144}, gateway={"host": "0.0.0.0"},
                     tracker={"host": "0.0.0.0"}, blossom_server={"host": "0.0.0.0"})
    with GatewayProcess(cfg, tmp_path / "gw") as gw, chromium_browser() as browser:
        request = urllib.request.Request(gw.url("/api/upload"), data=data, method="PUT",
                                         headers={"X-Filename": "shared.bin"})
        with urllib.request.urlopen(request, timeout=30) as r:
            f = json.loads(r.read())
        page_url = gw.url(f"/f/{f['sha256']}")

        _, first, watched_first = open_page(browser, page_url)
        before = {k: int(first.locator(f'[data-stat="{k}"]').inner_text()) for k in ("seeders", "leechers")}
        first.get_by_role("button", name="Download with WebTorrent").click()
        first.wait_for_selector('#p2p-stats[data-done="true"]')
        stats = first.evaluate(STATS)
        assert int(stats["webseedBytes"]) == len(data) and int(stats["peersBytes"]) == 0, stats
        # the SHA-256 check runs once the copy is in a Blob: wait for its verdict
        assert first.wait_for_selector(".p2p-check[data-verified]").get_attribute("data-verified") == "true"
        assert first.get_by_role("link", name="Save the downloaded copy").get_attribute("href").startswith("blob:")

        # The first page is in the swarm and completed it. (Seeder or leecher: WebTorrent sends
        # its "started" announce, delayed by making WebRTC offers, after "completed" when the
        # webseed was that fast; its next announce says left=0 again.)
        members = before["seeders"] + before["leechers"] + 1
        expected = _wait_for_swarm(gw, f["sha256"], members, completed=1)

        context, second, watched_second = open_page(browser, "")
        rewritten: list[str] = []

        def without_webseed(route: Any) -> None:
            # the gateway's own torrent without its url-list (?webseed=0): peers only
            rewritten.append(route.request.url)
            route.continue_(url=route.request.url + "?webseed=0")

        second.route("**/api/torrent/*", without_webseed)
        webseed_requests: list[str] = []
        second.on("request", lambda r: "/api/webseed/" in r.url and webseed_requests.append(r.url))
        second.goto(page_url)
        # the page shows the tracker's numbers
        swarm = {k: int(second.locator(f'[data-stat="{k}"]').inner_text())
                 for k in ("seeders", "leechers", "completed")}
        assert swarm["seeders"] + swarm["leechers"] == members and swarm["completed"] == 1, (swarm, expected)
        second.get_by_role("button", name="Download with WebTorrent").click()
        second.wait_for_selector('#p2p-stats[data-done="true"]', timeout=60_000)
        stats = second.evaluate(STATS)
        assert int(stats["peersBytes"]) == len(data) and int(stats["webseedBytes"]) == 0, stats
        assert int(stats["peers"]) >= 1
        assert rewritten and not webseed_requests, (rewritten, webseed_requests)
        assert second.wait_for_selector(".p2p-check[data-verified]").get_attribute("data-verified") == "true"
        split = second.locator(".p2p-split").inner_text()
        assert split.startswith("From peers: 1.5 MB (100 %)"), split
        watched_first.check()
        watched_second.check()
