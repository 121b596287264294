"""Real BitTorrent clients download a 300 MB chunked file from the gateway's own peer.

The gateway runs as ``twistd tgateway`` (gateway-only mode, DHT off) with its tracker and peer on
loopback. The torrent has no web seed (``/api/torrent/<sha256>?webseed=0``) and the magnet link no
``ws=``, so every byte comes over the peer wire from the gateway:

- aria2c from the ``.torrent`` (it finds the gateway through the gateway's HTTP tracker, which
  lists the gateway's peer via ``add_local_peer``);
- aria2c from a magnet link alone (metadata through BEP 9 ``ut_metadata``);
- libtorrent (Debian's python3) from the magnet link, given the gateway as a peer, with its
  default protocol encryption (MSE handshake) and with RC4 streams forced;
- node ``webtorrent`` given the torrent and the gateway as a TCP peer (``addPeer``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import ports, procs, tools
from harness.twistd import GatewayProcess, gateway_config, random_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZE = 300 * 1000 * 1000
LT_CLIENT = Path(__file__).resolve().parent.parent / "peer" / "lt_client.py"


@dataclass
class Seeded:
    gateway: GatewayProcess
    peer_port: int
    sha256: str
    info_hash: str
    name: str
    torrent: Path
    workdir: Path

    @property
    def tracker(self) -> str:
        return self.gateway.url("/announce")

    def magnet(self, *, tracker: bool = True) -> str:
        m = f"magnet:?xt=urn:btih:{self.info_hash}&dn={self.name}"
        if tracker:
            m += "&tr=" + urllib.request.quote(self.tracker, safe="")
        return m

    def check(self, path: Path) -> None:
        assert path.stat().st_size == SIZE
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(8 << 20):
                h.update(block)
        assert h.hexdigest() == self.sha256, f"{path} differs from the upload"

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.gateway.url("/api/health")) as r:
            return json.load(r)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    work = tmp_path_factory.mktemp("peer")
    peer_port = ports.free_tcp_port()
    cfg = gateway_config(
        work / "data",
        tracker={"enabled": True, "udp_port": 0, "host": "127.0.0.1"},
        peer={"port": peer_port, "host": "127.0.0.1"},
        nostr={"auto_publish": False},
    )
    gw = GatewayProcess(cfg, work / "gw").start()
    try:
        src = random_file(work / "source.bin", SIZE)
        digest = _sha256(src)
        with open(src, "rb") as body:
            req = urllib.request.Request(
                gw.url("/api/upload"), data=body, method="PUT",
                headers={"X-Filename": "source.bin", "Content-Length": str(SIZE)})
            with urllib.request.urlopen(req, timeout=300) as r:
                info = json.load(r)
        src.unlink()
        assert info["sha256"] == digest and info["storage"] == "chunked"
        with urllib.request.urlopen(gw.url(f"/api/torrent/{digest}?webseed=0")) as r:
            data = r.read()
        assert b"url-list" not in data
        torrent = work / "file.torrent"
        torrent.write_bytes(data)
        yield Seeded(gw, peer_port, digest, info["info_hash"], info["name"], torrent, work)
    finally:
        gw.stop()


def _aria2c(seeded: Seeded, out: Path, source: str, *extra: str) -> procs.Result:
    return procs.run(
        [
            tools.aria2c(),
            "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
            "--enable-peer-exchange=false", "--seed-time=0", "--summary-interval=0",
            "--file-allocation=none", "--console-log-level=warn",
            f"--listen-port={ports.free_tcp_port()}",
            f"--dir={out}", *extra, source,
        ],
        timeout=180,
    )


def test_aria2c_downloads_from_the_torrent(seeded: Seeded) -> None:
    out = seeded.workdir / "aria2-torrent"
    _aria2c(seeded, out, str(seeded.torrent))
    seeded.check(out / seeded.name)
    shutil.rmtree(out)


def test_aria2c_downloads_from_the_magnet_link_alone(seeded: Seeded) -> None:
    out = seeded.workdir / "aria2-magnet"
    # No tr= and no ws=: the gateway is given as the tracker on the command line.
    # The info dict can only have come from the gateway's peer (BEP 9): nothing else serves it.
    _aria2c(seeded, out, seeded.magnet(tracker=False), f"--bt-tracker={seeded.tracker}")
    seeded.check(out / seeded.name)
    shutil.rmtree(out)


@pytest.mark.parametrize("encryption", ["on", "forced"])
def test_libtorrent_downloads_from_the_magnet_link(seeded: Seeded, encryption: str) -> None:
    # "on" is libtorrent's default (an MSE handshake first; the gateway selects a plaintext
    # stream), "forced" allows only RC4 streams.
    out = seeded.workdir / f"libtorrent-{encryption}"
    out.mkdir()
    result = procs.run_libtorrent(
        LT_CLIENT, "leech", seeded.magnet(), str(out), f"127.0.0.1:{seeded.peer_port}", "150",
        timeout=180, env={"LT_ENCRYPTION": encryption})
    report = result.json()
    assert report["ok"], report
    seeded.check(out / seeded.name)
    shutil.rmtree(out)


def test_webtorrent_downloads_with_the_gateway_as_peer(seeded: Seeded) -> None:
    out = seeded.workdir / "webtorrent"
    out.mkdir()
    report = procs.run_node_json(
        "peer_webtorrent.mjs", str(seeded.torrent), f"127.0.0.1:{seeded.peer_port}", str(out),
        "150", timeout=180)
    assert report["ok"], report
    assert report["length"] == SIZE
    seeded.check(out / seeded.name)
    shutil.rmtree(out)
