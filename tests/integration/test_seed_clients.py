"""The seed's client list, each client for real: qBittorrent, Transmission, Deluge and WebTorrent
(node and Chromium) download a chunked file from the real gateway, byte for byte.

The seed promises compatibility with qBittorrent, Transmission, WebTorrent, Deluge and uTorrent.
uTorrent has no Linux build and is not tested (README, "Client compatibility").

Everything runs in a network namespace this module creates (``NetworkNamespace``), where the only
links go nowhere: the gateway (``twistd tgateway``) on 10.99.0.1 with its HTTP, UDP and WebSocket
tracker, its BitTorrent peer and its web seed; the clients on 10.99.0.2. Transmission drops
loopback peers as "martian", hence the addresses; Chromium's WebRTC needs a non-loopback
interface, hence the veth pair they sit on. The file is 9 MB: five 2 MiB pieces, stored as 2 MiB
chunks (``blob_threshold`` 2 MiB).

qbittorrent-nox (Web API), transmission-daemon (RPC) and deluged (deluge-console), each:

- the torrent as the gateway serves it (HTTP, UDP and WebSocket trackers, url-list), the client's
  own settings: complete;
- tracker + peer: the torrent without url-list (``?webseed=0``): the client finds the gateway's
  peer through the gateway's trackers, and every byte comes from it (the peer's ``bytes_sent``
  grows by at least the file's size);
- web seed: the gateway's torrent with its announce list taken out: every byte from the web seed,
  none from the peer;
- magnet: the gateway's magnet link as it is (``tr=`` HTTP, UDP and WebSocket trackers, ``ws=`` web
  seed): the info dict can only come from the gateway's peer (BEP 9), pieces from either;
- seeding: what the client downloaded, it serves to a libtorrent leecher that knows no other peer.

The gateway's peer speaks TCP only (no uTP). libtorrent (qBittorrent, Deluge) tries uTP first and
falls back to TCP within seconds. Transmission 3.00 tries uTP first with peers from trackers and
never falls back for a peer that does not answer uTP: its handshake gives up after 30 s, the
peer is retried 15 minutes later, over uTP again. (Tried by hand: answering its uTP SYN with a
reset makes it reconnect over TCP, but its handshake's error path then drops that connection
too.) So for the downloads that need the gateway's peer (tracker + peer, magnet) Transmission's
uTP is switched off; with its defaults it downloads the torrent as served from the web seed.

WebTorrent in node: the same three downloads (uTP off: with it, WebTorrent reaches the gateway's
peer over TCP only once its uTP attempts have timed out, about 40 s). WebTorrent in Chromium (the
``webtorrent`` browser bundle in a page, Playwright driving Debian's chromium): the gateway's
``.torrent`` and its
WebSocket tracker; a browser speaks to WebRTC peers and web seeds only, so the bytes come from the
web seed, and the WebSocket tracker must have the browser in its swarm.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import daemons, netns, ports, procs, servers, tools
from harness.twistd import GatewayProcess, gateway_config, random_file
from tgateway import bencode

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GATEWAY_IP = "10.99.0.1"
CLIENT_IP = "10.99.0.2"
SIZE = 9_000_000
NAME = "clip.bin"
LT_CLIENT = Path(__file__).resolve().parent.parent / "peer" / "lt_client.py"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        data: bytes = r.read()
        return data


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@dataclass
class Site:
    """The namespace, the gateway in it and the file it serves (call the methods inside)."""

    ns: netns.NetworkNamespace
    gateway: GatewayProcess
    meta: dict[str, Any]
    torrent: bytes  # as the gateway serves it: trackers and url-list
    peer_only: bytes  # ?webseed=0: trackers, no url-list
    webseed_only: bytes  # url-list, no trackers

    @property
    def info_hash(self) -> str:
        return str(self.meta["info_hash"])

    @property
    def ws_tracker(self) -> str:
        return f"ws://{GATEWAY_IP}:{self.gateway.port}/announce"

    def peer_bytes_sent(self) -> int:
        return int(json.loads(_get(self.gateway.url("/api/health")))["peer"]["bytes_sent"])

    def scrape(self) -> dict[bytes, int]:
        escaped = "".join(f"%{self.info_hash[i:i + 2]}" for i in range(0, 40, 2))
        files = bencode.decode(_get(self.gateway.url(f"/scrape?info_hash={escaped}")))[b"files"]
        entry: dict[bytes, int] = files[bytes.fromhex(self.info_hash)]
        return entry

    def check(self, path: Path) -> None:
        assert path.stat().st_size == SIZE, path
        assert _sha256(path) == self.meta["sha256"], f"{path} differs from the upload"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("seed-clients")
    ns = netns.NetworkNamespace([GATEWAY_IP, CLIENT_IP], device="tgw0")
    try:
        with ns.inside():
            cfg = gateway_config(
                work / "data",
                gateway={"port": ports.free_tcp_port(GATEWAY_IP), "host": GATEWAY_IP},
                tracker={"enabled": True, "host": GATEWAY_IP,
                         "udp_port": ports.free_udp_port(GATEWAY_IP)},
                peer={"port": ports.free_tcp_port(GATEWAY_IP), "host": GATEWAY_IP,
                      "external_ip": GATEWAY_IP},
                storage={"blob_threshold": "2MiB"},
                nostr={"auto_publish": False},
            )
            gateway = GatewayProcess(cfg, work / "gw").start()
        try:
            with ns.inside():
                src = random_file(work / NAME, SIZE)
                request = urllib.request.Request(
                    gateway.url("/api/upload"), data=src.read_bytes(), method="PUT",
                    headers={"X-Filename": NAME})
                with urllib.request.urlopen(request, timeout=60) as r:
                    meta = json.load(r)
                assert meta["storage"] == "chunked" and meta["chunks"] == 5, meta
                assert meta["sha256"] == _sha256(src)
                torrent = _get(meta["urls"]["torrent"])
                peer_only = _get(meta["urls"]["torrent"] + "?webseed=0")
            decoded = bencode.decode(torrent)
            assert decoded[b"announce-list"] == [[u.encode()] for u in meta["trackers"]]
            assert {u.split(":")[0] for u in meta["trackers"]} == {"http", "udp", "ws"}
            assert decoded[b"url-list"] == [
                f"http://{GATEWAY_IP}:{gateway.port}/api/webseed/{meta['info_hash']}/".encode()]
            assert b"url-list" not in bencode.decode(peer_only)
            # BEP 19 alone: the same info dict (so the same info-hash), no trackers.
            webseed_only = bencode.encode({k: v for k, v in decoded.items()
                                           if k not in (b"announce", b"announce-list")})
            assert hashlib.sha1(bencode.encode(decoded[b"info"])).hexdigest() == meta["info_hash"]
            yield Site(ns, gateway, meta, torrent, peer_only, webseed_only)
        finally:
            with ns.inside():
                gateway.stop()
    finally:
        ns.close()


# --- qbittorrent-nox, transmission-daemon, deluged ----------------------------------------------

DAEMONS = {
    "qbittorrent": daemons.start_qbittorrent,
    "transmission": daemons.start_transmission,
    "deluge": daemons.start_deluge,
}


@pytest.fixture(scope="module", params=sorted(DAEMONS))
def daemon(request: pytest.FixtureRequest, site: Site,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[daemons.TorrentDaemon]:
    work = tmp_path_factory.mktemp(request.param)
    with site.ns.inside():
        client = DAEMONS[request.param](work, host=CLIENT_IP)
    print(f"{client.name} {client.version}")
    try:
        yield client
    finally:
        with site.ns.inside():
            client.stop()


def _download(site: Site, daemon: daemons.TorrentDaemon, save: Path, *,
              torrent: bytes | None = None, magnet: str | None = None) -> int:
    """Add the torrent or magnet link, wait until complete, check the bytes, remove it (and its
    data); returns the bytes the gateway's peer sent meanwhile."""
    save.mkdir()
    before = site.peer_bytes_sent()
    if torrent is not None:
        daemon.add_torrent(torrent, save)
    else:
        assert magnet is not None
        daemon.add_magnet(magnet, save)
    try:
        daemon.wait_done(site.info_hash, timeout=60)
        site.check(save / NAME)
        return site.peer_bytes_sent() - before
    finally:
        daemon.remove(site.info_hash)


@contextlib.contextmanager
def tcp_to_the_gateway_peer(daemon: daemons.TorrentDaemon) -> Iterator[None]:
    """Transmission without uTP for the block (see the module's docstring); others as they are."""
    if not isinstance(daemon, daemons.Transmission):
        yield
        return
    daemon.rpc("session-set", {"utp-enabled": False})
    try:
        yield
    finally:
        daemon.rpc("session-set", {"utp-enabled": True})


def test_daemon_downloads_the_torrent_as_served(
        site: Site, daemon: daemons.TorrentDaemon, tmp_path: Path) -> None:
    with site.ns.inside():
        _download(site, daemon, tmp_path / "dl", torrent=site.torrent)


def test_daemon_downloads_through_the_tracker_from_the_gateway_peer(
        site: Site, daemon: daemons.TorrentDaemon, tmp_path: Path) -> None:
    with site.ns.inside(), tcp_to_the_gateway_peer(daemon):
        sent = _download(site, daemon, tmp_path / "dl", torrent=site.peer_only)
    assert sent >= SIZE, f"the gateway's peer sent {sent} bytes"


def test_daemon_downloads_from_the_webseed(
        site: Site, daemon: daemons.TorrentDaemon, tmp_path: Path) -> None:
    with site.ns.inside():
        sent = _download(site, daemon, tmp_path / "dl", torrent=site.webseed_only)
    assert sent == 0, "a torrent without trackers was served by the gateway's peer"


def test_daemon_downloads_from_the_magnet_link(
        site: Site, daemon: daemons.TorrentDaemon, tmp_path: Path) -> None:
    with site.ns.inside(), tcp_to_the_gateway_peer(daemon):
        sent = _download(site, daemon, tmp_path / "dl", magnet=site.meta["magnet"])
    # The info dict only exists at the gateway's peer (BEP 9); pieces from peer and web seed.
    assert sent > 0


def test_daemon_seeds_what_it_downloaded(
        site: Site, daemon: daemons.TorrentDaemon, tmp_path: Path) -> None:
    save = tmp_path / "dl"
    save.mkdir()
    with site.ns.inside():
        before = site.peer_bytes_sent()
        daemon.add_torrent(site.webseed_only, save)
        try:
            daemon.wait_done(site.info_hash, timeout=60)
            out = tmp_path / "libtorrent"
            out.mkdir()
            # A bare magnet link and the daemon as the only peer: metadata and pieces from it.
            result = procs.run_libtorrent(
                LT_CLIENT, "leech", f"magnet:?xt=urn:btih:{site.info_hash}", str(out),
                f"{daemon.host}:{daemon.port}", "60", timeout=90)
            assert result.json()["ok"], result.stdout
            site.check(out / NAME)
            assert site.peer_bytes_sent() == before
        finally:
            daemon.remove(site.info_hash)


# --- WebTorrent ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["tracker+peer", "webseed", "magnet"])
def test_webtorrent_node_downloads(site: Site, source: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    if source == "magnet":
        what, webseeds = site.meta["magnet"], "webseeds"
    else:
        path = tmp_path / "file.torrent"
        path.write_bytes(site.peer_only if source == "tracker+peer" else site.webseed_only)
        what, webseeds = str(path), "webseeds" if source == "webseed" else "no-webseeds"
    with site.ns.inside():
        before = site.peer_bytes_sent()
        report = procs.run_node_json("webtorrent_download.mjs", what, str(out), webseeds,
                                           "50", timeout=60)
        sent = site.peer_bytes_sent() - before
    assert report["ok"], report
    assert report["length"] == SIZE and report["sha256"] == site.meta["sha256"]
    site.check(out / report["path"])
    assert report["announced"] >= (0 if source == "webseed" else 1)
    sources = report["sources"]
    if source == "tracker+peer":
        assert sources.get("tcpOutgoing", 0) >= SIZE and "webSeed" not in sources, sources
        assert sent >= SIZE
    elif source == "webseed":
        assert sources == {"webSeed": SIZE} and sent == 0, (sources, sent)
    else:
        assert sent > 0  # the info dict, over BEP 9


def test_webtorrent_in_chromium_downloads_through_the_websocket_tracker_and_the_webseed(
        site: Site) -> None:
    files = {
        "webtorrent.html": servers.BROWSER_DIR / "webtorrent.html",
        "webtorrent.min.js": tools.node_modules() / "webtorrent" / "dist" / "webtorrent.min.js",
    }
    with site.ns.inside():
        seeders_before = site.scrape()[b"complete"]
        before = site.peer_bytes_sent()
        # Served from 127.0.0.1, a secure context (crypto.subtle), inside the namespace.
        with servers.StaticFiles(files) as pages, \
                tools.chromium_browser() as browser:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.goto(pages.url("webtorrent.html"))
            page.wait_for_function("window.ready === true", timeout=20_000)
            report = page.evaluate("args => download(args)", {
                "torrentUrl": site.meta["urls"]["torrent"], "announce": [site.ws_tracker],
                "timeoutMs": 40_000})
            assert report["ok"], (report, console[-20:])
            # On 'done' WebTorrent announces "completed" over the WebSocket: the tracker now
            # counts the browser as a seeder (the page is still open).
            deadline = time.monotonic() + 10
            while site.scrape()[b"complete"] != seeders_before + 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            seeders_after = site.scrape()[b"complete"]
            page.close()
        sent = site.peer_bytes_sent() - before
    assert report["webrtc"] is True
    assert report["length"] == SIZE and report["sha256"] == site.meta["sha256"]
    assert report["sources"] == {"webSeed": SIZE}, report
    assert report["announced"] >= 1, report
    # The browser's WebTorrent skips the HTTP and UDP trackers, and has nothing to say about ws://.
    assert all(w.startswith("Unsupported tracker protocol: ") and "ws://" not in w
               for w in report["warnings"]), report["warnings"]
    assert seeders_after == seeders_before + 1
    assert sent == 0
