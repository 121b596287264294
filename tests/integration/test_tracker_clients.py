"""The tracker on the real reactor, on loopback, used by real clients.

The tracker runs in the test's reactor: a twisted.web Site around ``tracker.resource`` (as the
gateway mounts it), the UDP protocol on ``listenUDP(0)`` and the dedicated HTTP+WebSocket port on
``tcp:0``. The clients run as subprocesses:

* the ``bittorrent-tracker`` node client announces and scrapes over HTTP, UDP and WebSocket;
* two WebTorrent (node) processes find each other through the WebSocket tracker and one
  downloads from the other over WebRTC;
* a libtorrent seeder (Debian's python3) serves a torrent that lists only this tracker, and
  aria2c (HTTP and UDP tracker) and a libtorrent leecher (HTTP and UDP) download it.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Site

from harness import ports, procs, tools
from tgateway.config import TrackerConfig
from tgateway.tracker.http import TrackerHTTPFactory
from tgateway.tracker.service import Tracker, build_tracker

pytestmark = pytest.mark.integration


class Running:
    def __init__(self, tracker: Tracker, site_port: int, udp_port: int, http_port: int) -> None:
        self.tracker = tracker
        self.site_port = site_port
        self.udp_port = udp_port
        self.http_port = http_port

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.site_port}/announce"

    @property
    def udp_url(self) -> str:
        return f"udp://127.0.0.1:{self.udp_port}/announce"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.site_port}/announce"

    @property
    def dedicated_ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/announce"


@pytest.fixture
def running() -> Iterator[Running]:
    config = TrackerConfig(host="127.0.0.1", udp_port=6969, http_port=0, announce_interval=60,
                           min_interval=5)
    tracker = build_tracker(config, "http://127.0.0.1:1", reactor, random.Random())
    root = Resource()
    root.putChild(b"announce", tracker.resource)
    root.putChild(b"scrape", tracker.resource)
    site = Site(root)
    site.noisy = False
    assert tracker.udp is not None
    udp = reactor.listenUDP(0, tracker.udp, interface="127.0.0.1")
    ports = []
    for factory in (site, TrackerHTTPFactory(tracker.http, reactor, tracker.ws_factory)):
        d = serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
        ports.append(pytest_twisted.blockon(d))
    yield Running(tracker, ports[0].getHost().port, udp.getHost().port, ports[1].getHost().port)
    for p in ports:
        pytest_twisted.blockon(defer.maybeDeferred(p.stopListening))
    pytest_twisted.blockon(defer.maybeDeferred(udp.stopListening))


def node_json(*args: str, timeout: float = 60) -> Any:
    return procs.run_node_deferred(reactor, *args, timeout=timeout).addCallback(procs.last_json_line)


# --------------------------------------------------------------------------- bittorrent-tracker


def check_two_peer_run(result: dict[str, Any], ws: bool) -> None:
    assert result["ok"], result
    assert result["a_first"] == {"complete": 1, "incomplete": 0}
    assert result["b_first"] == {"complete": 1, "incomplete": 1}
    assert result["a_second"] == {"complete": 1, "incomplete": 1}
    assert result["scrape1"] == {"complete": 1, "incomplete": 1, "downloaded": 0}
    assert result["b_completed"] == {"complete": 2, "incomplete": 0}
    assert result["scrape2"] == {"complete": 2, "incomplete": 0, "downloaded": 1}
    assert result["scrape3"] == {"complete": 1, "incomplete": 0, "downloaded": 1}
    assert result["warnings"] == []
    if ws:
        # offers went A <- B and the answer came back: each saw the other as a WebRTC peer
        assert set(result["a_peers"]) == {"webrtc:" + "62" * 20}
        assert set(result["b_peers"]) == {"webrtc:" + "61" * 20}
    else:
        assert set(result["a_peers"]) == {"127.0.0.1:6882"}
        assert set(result["b_peers"]) == {"127.0.0.1:6881"}


@pytest.mark.parametrize("transport", ["http", "udp", "ws", "ws-dedicated"])
@pytest_twisted.ensureDeferred
async def test_bittorrent_tracker_client(running: Running, transport: str) -> None:
    url = {"http": running.http_url, "udp": running.udp_url, "ws": running.ws_url,
           "ws-dedicated": running.dedicated_ws_url}[transport]
    result = await node_json("tracker_client.mjs", url, os.urandom(20).hex())
    check_two_peer_run(result, transport.startswith("ws"))


@pytest_twisted.ensureDeferred
async def test_two_webtorrents_find_each_other(running: Running) -> None:
    seeder = procs.ClientProcess.node("tracker_webtorrent.mjs", "seed", running.ws_url, "400000")
    try:
        seed = await seeder.json_deferred(reactor, timeout=30, key="torrent")
        leech = await node_json("tracker_webtorrent.mjs", "leech", running.ws_url, seed["torrent"], timeout=90)
    finally:
        seeder.stop()
    assert leech["ok"], leech
    assert leech["announce"] == [running.ws_url]
    assert leech["length"] == 400000
    assert leech["sha256"] == seed["sha256"]
    assert leech["wires"] == ["webrtc"]


# --------------------------------------------------------------------------- libtorrent, aria2c

LT_PEER = r'''
import json, os, sys, time
import libtorrent as lt

mode, announce, folder, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torrent_path = os.path.join(folder, "t.torrent")
settings = {
    "listen_interfaces": "127.0.0.1:%d" % port,
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "allow_multiple_connections_per_ip": True, "alert_mask": lt.alert.category_t.all_categories,
    "announce_to_all_trackers": True,
}
ses = lt.session(settings)
if mode == "seed":
    data_dir = os.path.join(folder, "seed")
    os.makedirs(data_dir)
    payload = os.urandom(int(sys.argv[5]))
    with open(os.path.join(data_dir, "data.bin"), "wb") as f:
        f.write(payload)
    fs = lt.file_storage()
    lt.add_files(fs, os.path.join(data_dir, "data.bin"))
    ct = lt.create_torrent(fs, 16384, flags=lt.create_torrent.v1_only)
    ct.add_tracker(announce)
    lt.set_piece_hashes(ct, data_dir)
    with open(torrent_path, "wb") as f:
        f.write(lt.bencode(ct.generate()))
    save = data_dir
else:
    save = os.path.join(folder, "leech")
    os.makedirs(save, exist_ok=True)
info = lt.torrent_info(torrent_path)
h = ses.add_torrent({"ti": info, "save_path": save})
deadline = time.time() + float(os.environ.get("LT_TIMEOUT", "60"))
announced = False
while time.time() < deadline:
    for a in ses.pop_alerts():
        if isinstance(a, lt.tracker_reply_alert) and not announced:
            announced = True
            if mode == "seed":
                print(json.dumps({"torrent": torrent_path, "info_hash": str(info.info_hash()),
                                  "sha256": __import__("hashlib").sha256(payload).hexdigest()}), flush=True)
        elif isinstance(a, lt.tracker_error_alert):
            print("tracker error: " + a.message(), file=sys.stderr, flush=True)
    st = h.status()
    if mode == "leech" and st.is_seeding:
        with open(os.path.join(save, "data.bin"), "rb") as f:
            digest = __import__("hashlib").sha256(f.read()).hexdigest()
        print(json.dumps({"ok": True, "sha256": digest, "peers": st.num_peers, "announced": announced}), flush=True)
        sys.exit(0)
    time.sleep(0.05)
print(json.dumps({"ok": False, "error": "timeout", "state": str(h.status().state)}), flush=True)
sys.exit(3)
'''


@pytest.fixture
def lt_script(tmp_path: Path) -> str:
    path = tmp_path / "lt_peer.py"
    path.write_text(LT_PEER)
    return str(path)


async def start_lt_seeder(lt_script: str, announce: str, folder: Path) -> tuple[procs.ClientProcess, dict[str, Any]]:
    folder.mkdir()
    port = ports.free_tcp_udp_port()
    seeder = procs.ClientProcess(
        [tools.libtorrent_python(), lt_script, "seed", announce, str(folder), str(port), "1500000"],
        env=tools.debian_python_env({"LT_TIMEOUT": "120"}), name="libtorrent seeder")
    try:
        info = await seeder.json_deferred(reactor, timeout=30, key="torrent")
    except BaseException:
        seeder.stop()
        raise
    return seeder, info


@pytest.mark.parametrize("transport", ["http", "udp"])
@pytest_twisted.ensureDeferred
async def test_aria2c_downloads_from_libtorrent(running: Running, transport: str, lt_script: str,
                                                tmp_path: Path) -> None:
    url = running.http_url if transport == "http" else running.udp_url
    seeder, info = await start_lt_seeder(lt_script, url, tmp_path / "seeder")
    try:
        out = tmp_path / "aria2"
        out.mkdir()
        dht_file = tmp_path / "dht.dat"
        dht_file.write_bytes(b"")
        port = ports.free_tcp_udp_port()
        argv = [
            tools.aria2c(), "--dir", str(out), "--seed-time=0", "--bt-enable-lpd=false",
            "--enable-peer-exchange=false", "--listen-port", str(port), "--bt-stop-timeout=60",
            "--file-allocation=none", "--summary-interval=0", "--console-log-level=warn",
            "--bt-tracker-connect-timeout=10", "--bt-tracker-timeout=10",
        ]
        if transport == "udp":
            # aria2 only speaks udp:// trackers with its DHT on: an empty DHT, no entry point.
            argv += ["--enable-dht=true", f"--dht-file-path={dht_file}",
                     f"--dht-listen-port={ports.free_udp_port()}"]
        else:
            argv += ["--enable-dht=false"]
        await procs.run_deferred(reactor, [*argv, info["torrent"]], timeout=90)
    finally:
        seeder.stop()
    got = hashlib.sha256((out / "data.bin").read_bytes()).hexdigest()
    assert got == info["sha256"]
    stats = running.tracker.store.scrape([bytes.fromhex(info["info_hash"])])
    assert stats[0][1] >= 1 or stats[0][0] >= 1  # the swarm was seen by the tracker


@pytest.mark.parametrize("transport", ["http", "udp"])
@pytest_twisted.ensureDeferred
async def test_libtorrent_downloads_from_libtorrent(running: Running, transport: str, lt_script: str,
                                                    tmp_path: Path) -> None:
    url = running.http_url if transport == "http" else running.udp_url
    seeder, info = await start_lt_seeder(lt_script, url, tmp_path / "seeder")
    try:
        leech_dir = tmp_path / "leecher"
        leech_dir.mkdir()
        (leech_dir / "t.torrent").write_bytes(Path(info["torrent"]).read_bytes())
        port = ports.free_tcp_udp_port()
        result = await procs.run_deferred(
            reactor, [tools.libtorrent_python(), lt_script, "leech", url, str(leech_dir), str(port)],
            env=tools.debian_python_env({"LT_TIMEOUT": "60"}), timeout=90)
    finally:
        seeder.stop()
    leech = result.json()
    assert leech["ok"], leech
    assert leech["announced"]
    assert leech["sha256"] == info["sha256"]
