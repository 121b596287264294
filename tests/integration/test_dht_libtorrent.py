"""The gateway's DHT node on the real reactor, on loopback, used by a libtorrent 2.0 session.

libtorrent (Debian's python3, a subprocess) has the gateway as its only DHT node, with the settings
a loopback DHT needs (TESTING.md). It is given with ``add_dht_node`` rather than as
``dht_bootstrap_nodes``: libtorrent never takes bootstrap ("router") nodes into its routing table,
while a plain node is probed (libtorrent 2.0 probes liveness with a get_peers query, it sends no
``ping``) and added once it answers. Then libtorrent queries the gateway directly (BEP 51
``sample_infohashes``, which names the gateway's torrents), finds the peer the gateway announced
with ``dht_get_peers``, and announces a torrent of its own, which the gateway then finds. The
gateway pings libtorrent back (a real ``ping``) before taking it into its own table.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from harness import procs, tools
from harness.gateway import case_data_dir
from tgateway.config import DhtConfig
from tgateway.dht.service import build_dht

pytestmark = pytest.mark.integration

PEER_PORT = 6881

LIBTORRENT_NODE = r"""
import json, sys, time
import libtorrent as lt

gw_port, ours_hex, theirs_hex, save_path = sys.argv[1:5]
ours, theirs = lt.sha1_hash(bytes.fromhex(ours_hex)), lt.sha1_hash(bytes.fromhex(theirs_hex))
cat = lt.alert.category_t
s = lt.session({
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": True, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "dht_bootstrap_nodes": "",
    "dht_ignore_dark_internet": False, "dht_restrict_routing_ips": False,
    "dht_restrict_search_ips": False, "dht_prefer_verified_node_ids": False,
    "dht_enforce_node_id": False,
    "alert_mask": cat.dht_notification | cat.status_notification | cat.error_notification
        | cat.dht_operation_notification | cat.dht_log_notification,
})
out = {"ok": False}

log = []

def wait_for(kind, pred=lambda a: True, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        s.wait_for_alert(200)
        for a in s.pop_alerts():
            if isinstance(a, lt.dht_log_alert):
                log.append(a.message())
            if isinstance(a, kind) and pred(a):
                return a
    return None

try:
    # The gateway is the only node libtorrent knows. (Given as dht_bootstrap_nodes it would be a
    # "router" node, which libtorrent uses but never takes into its routing table.) libtorrent
    # probes a new node (libtorrent 2.0 probes with get_peers) and adds it once it answers.
    s.add_dht_node(("127.0.0.1", int(gw_port)))
    end = time.time() + 15
    out["joined"] = False
    while time.time() < end and not out["joined"]:
        s.post_dht_stats()
        a = wait_for(lt.dht_stats_alert, timeout=1)
        out["joined"] = a is not None and sum(b["num_nodes"] for b in a.routing_table) >= 1
    # A query straight to the gateway: BEP 51 sample_infohashes.
    s.dht_sample_infohashes(("127.0.0.1", int(gw_port)), ours)
    a = wait_for(lt.dht_sample_infohashes_alert)
    out["sample"] = None if a is None else {
        "endpoint": list(a.endpoint), "num": a.num_infohashes,
        "samples": [str(h) for h in a.samples],
    }
    # The peer the gateway announced.
    found = set()
    end = time.time() + 20
    s.dht_get_peers(ours)
    while time.time() < end and not found:
        a = wait_for(lt.dht_get_peers_reply_alert, lambda a: a.info_hash == ours, timeout=2)
        if a is not None:
            found.update("%s:%d" % (ip, port) for ip, port in a.peers())
        elif not found:
            s.dht_get_peers(ours)
    out["peers"] = sorted(found)
    # Announce an info-hash of our own: a magnet-style torrent (the Python binding does not expose
    # dht_announce's flags type), announced to the DHT with the session's listen port.
    p = lt.add_torrent_params()
    p.info_hashes = lt.info_hash_t(theirs)
    p.save_path = save_path
    p.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    h = s.add_torrent(p)
    h.force_dht_announce()
    out["listen_port"] = s.listen_port()
    time.sleep(2)
    s.post_dht_stats()
    a = wait_for(lt.dht_stats_alert, timeout=5)
    out["routing_nodes"] = None if a is None else sum(b["num_nodes"] for b in a.routing_table)
    wait_for(lt.dht_stats_alert, timeout=0.5)
    out["announced"] = any("invoking announce_peer -> 127.0.0.1:%s" % gw_port in m for m in log)
    out["ok"] = True
finally:
    print(json.dumps(out), flush=True)
time.sleep(60)
"""


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


class LibtorrentDhtTests(TestCase):
    timeout = 180

    async def test_libtorrent_session(self) -> None:
        tmp = Path(case_data_dir(self))
        config = DhtConfig(host="127.0.0.1", port=0, bootstrap_nodes=())
        gateway = build_dht(config, str(tmp / "dht"), reactor, random.Random(), PEER_PORT)
        gateway.startService()
        self.addCleanup(gateway.stopService)
        python = tools.libtorrent_python()
        script = tmp / "lt_dht_node.py"
        script.write_text(LIBTORRENT_NODE)
        ours, theirs = os.urandom(20), os.urandom(20)
        gateway.set_known_info_hashes([ours])
        gateway.announce(ours)
        proc = procs.ClientProcess(
            [python, str(script), str(gateway.ports[0]), ours.hex(), theirs.hex(), str(tmp)],
            env=tools.debian_python_env(),
            name="libtorrent",
        )
        self.addCleanup(proc.stop)
        result = await proc.json_deferred(reactor, timeout=90)
        self.assertTrue(result["ok"], proc.describe())
        self.assertTrue(result["joined"], proc.describe())
        sample = result["sample"]
        self.assertIsNotNone(sample, proc.describe())
        self.assertEqual(sample["endpoint"], ["127.0.0.1", gateway.ports[0]])
        self.assertEqual(sample["num"], 1, proc.describe())
        self.assertEqual(sample["samples"], [ours.hex()], proc.describe())
        self.assertEqual(result["peers"], [f"127.0.0.1:{PEER_PORT}"], proc.describe())
        # libtorrent took the gateway into its routing table, and announced to it.
        self.assertGreaterEqual(result["routing_nodes"], 1, proc.describe())
        self.assertTrue(result["announced"], proc.describe())
        # libtorrent's announce_peer reached the gateway, token and all.
        theirs_peer = ("127.0.0.1", result["listen_port"])
        for _ in range(50):
            peers = await gateway.get_peers(theirs)
            if theirs_peer in peers:
                break
            await sleep(0.2)
        self.assertIn(theirs_peer, peers, proc.describe())
        status = gateway.status()
        # the gateway pinged libtorrent back
        self.assertGreaterEqual(status["routing_table_size"], 1)
        self.assertEqual(status["families"][0]["malformed"], 0)
