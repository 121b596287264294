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
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from harness import ports, procs, tools
from harness.gateway import case_data_dir
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


async def start_running(case: TestCase) -> Running:
    """The tracker on loopback (Site, UDP, dedicated HTTP+WebSocket port), stopped when ``case``
    ends."""
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
    case.addCleanup(udp.stopListening)
    ports = []
    for factory in (site, TrackerHTTPFactory(tracker.http, reactor, tracker.ws_factory)):
        port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
        case.addCleanup(port.stopListening)
        ports.append(port)
    return Running(tracker, ports[0].getHost().port, udp.getHost().port, ports[1].getHost().port)


def node_json(*args: str, timeout: float = 60) -> Any:
    return procs.run_node_deferred(reactor, *args, timeout=timeout).addCallback(procs.last_json_line)


# --------------------------------------------------------------------------- bittorrent-tracker


def check_two_peer_run(case: TestCase, result: dict[str, Any], ws: bool) -> None:
    case.assertTrue(result["ok"], result)
    case.assertEqual(result["a_first"], {"complete": 1, "incomplete": 0})
    case.assertEqual(result["b_first"], {"complete": 1, "incomplete": 1})
    case.assertEqual(result["a_second"], {"complete": 1, "incomplete": 1})
    case.assertEqual(result["scrape1"], {"complete": 1, "incomplete": 1, "downloaded": 0})
    case.assertEqual(result["b_completed"], {"complete": 2, "incomplete": 0})
    case.assertEqual(result["scrape2"], {"complete": 2, "incomplete": 0, "downloaded": 1})
    case.assertEqual(result["scrape3"], {"complete": 1, "incomplete": 0, "downloaded": 1})
    case.assertEqual(result["warnings"], [])
    if ws:
        # offers went A <- B and the answer came back: each saw the other as a WebRTC peer
        case.assertEqual(set(result["a_peers"]), {"webrtc:" + "62" * 20})
        case.assertEqual(set(result["b_peers"]), {"webrtc:" + "61" * 20})
    else:
        case.assertEqual(set(result["a_peers"]), {"127.0.0.1:6882"})
        case.assertEqual(set(result["b_peers"]), {"127.0.0.1:6881"})


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


class TrackerClientTests(TestCase):
    timeout = 180

    async def setUp(self) -> None:
        self.running = await start_running(self)
        self.tmp = Path(case_data_dir(self))

    # ----------------------------------------------------------------------- bittorrent-tracker

    async def bittorrent_tracker_client(self, url: str, ws: bool) -> None:
        result = await node_json("tracker_client.mjs", url, os.urandom(20).hex())
        check_two_peer_run(self, result, ws)

    async def test_bittorrent_tracker_client_http(self) -> None:
        await self.bittorrent_tracker_client(self.running.http_url, ws=False)

    async def test_bittorrent_tracker_client_udp(self) -> None:
        await self.bittorrent_tracker_client(self.running.udp_url, ws=False)

    async def test_bittorrent_tracker_client_ws(self) -> None:
        await self.bittorrent_tracker_client(self.running.ws_url, ws=True)

    async def test_bittorrent_tracker_client_ws_dedicated(self) -> None:
        await self.bittorrent_tracker_client(self.running.dedicated_ws_url, ws=True)

    async def test_two_webtorrents_find_each_other(self) -> None:
        running = self.running
        seeder = procs.ClientProcess.node("tracker_webtorrent.mjs", "seed", running.ws_url, "400000")
        try:
            seed = await seeder.json_deferred(reactor, timeout=30, key="torrent")
            leech = await node_json("tracker_webtorrent.mjs", "leech", running.ws_url,
                                    seed["torrent"], timeout=90)
        finally:
            seeder.stop()
        self.assertTrue(leech["ok"], leech)
        self.assertEqual(leech["announce"], [running.ws_url])
        self.assertEqual(leech["length"], 400000)
        self.assertEqual(leech["sha256"], seed["sha256"])
        self.assertEqual(leech["wires"], ["webrtc"])

    # ----------------------------------------------------------------------- libtorrent, aria2c

    def lt_script(self) -> str:
        path = self.tmp / "lt_peer.py"
        path.write_text(LT_PEER)
        return str(path)

    async def aria2c_downloads_from_libtorrent(self, url: str, udp: bool) -> None:
        tmp = self.tmp
        seeder, info = await start_lt_seeder(self.lt_script(), url, tmp / "seeder")
        try:
            out = tmp / "aria2"
            out.mkdir()
            dht_file = tmp / "dht.dat"
            dht_file.write_bytes(b"")
            port = ports.free_tcp_udp_port()
            argv = [
                tools.aria2c(), "--dir", str(out), "--seed-time=0", "--bt-enable-lpd=false",
                "--enable-peer-exchange=false", "--listen-port", str(port), "--bt-stop-timeout=60",
                "--file-allocation=none", "--summary-interval=0", "--console-log-level=warn",
                "--bt-tracker-connect-timeout=10", "--bt-tracker-timeout=10",
            ]
            if udp:
                # aria2 only speaks udp:// trackers with its DHT on: an empty DHT, no entry point.
                argv += ["--enable-dht=true", f"--dht-file-path={dht_file}",
                         f"--dht-listen-port={ports.free_udp_port()}"]
            else:
                argv += ["--enable-dht=false"]
            await procs.run_deferred(reactor, [*argv, info["torrent"]], timeout=90)
        finally:
            seeder.stop()
        got = hashlib.sha256((out / "data.bin").read_bytes()).hexdigest()
        self.assertEqual(got, info["sha256"])
        stats = self.running.tracker.store.scrape([bytes.fromhex(info["info_hash"])])
        # the swarm was seen by the tracker
        self.assertTrue(stats[0][1] >= 1 or stats[0][0] >= 1, stats)

    async def test_aria2c_downloads_from_libtorrent_http(self) -> None:
        await self.aria2c_downloads_from_libtorrent(self.running.http_url, udp=False)

    async def test_aria2c_downloads_from_libtorrent_udp(self) -> None:
        await self.aria2c_downloads_from_libtorrent(self.running.udp_url, udp=True)

    async def libtorrent_downloads_from_libtorrent(self, url: str) -> None:
        lt_script = self.lt_script()
        seeder, info = await start_lt_seeder(lt_script, url, self.tmp / "seeder")
        try:
            leech_dir = self.tmp / "leecher"
            leech_dir.mkdir()
            (leech_dir / "t.torrent").write_bytes(Path(info["torrent"]).read_bytes())
            port = ports.free_tcp_udp_port()
            result = await procs.run_deferred(
                reactor, [tools.libtorrent_python(), lt_script, "leech", url, str(leech_dir),
                          str(port)],
                env=tools.debian_python_env({"LT_TIMEOUT": "60"}), timeout=90)
        finally:
            seeder.stop()
        leech = result.json()
        self.assertTrue(leech["ok"], leech)
        self.assertTrue(leech["announced"])
        self.assertEqual(leech["sha256"], info["sha256"])

    async def test_libtorrent_downloads_from_libtorrent_http(self) -> None:
        await self.libtorrent_downloads_from_libtorrent(self.running.http_url)

    async def test_libtorrent_downloads_from_libtorrent_udp(self) -> None:
        await self.libtorrent_downloads_from_libtorrent(self.running.udp_url)
